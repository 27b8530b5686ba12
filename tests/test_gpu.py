"""GPU paths: ``trainer=gpu`` trains on CUDA and its checkpoint serves on CPU; the nets agree across devices.

Skipped where torch sees no CUDA device (CI has none); run them on a GPU machine with ``pytest -m gpu``.
"""

from __future__ import annotations

import pytest
import torch

from helpers import TINY_CLASSIFIER, build_net, read_metrics, run_cli, train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (trainer=gpu)"),
]


@pytest.mark.parametrize("experiment", ["signal_l50", "signal_l1"])
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_gpu_trainer_trains_and_the_checkpoint_loads_on_cpu(tmp_path, experiment, precision):
    from lstmlab.tasks.signal_regression import SignalRegressionTask

    _, run = train(
        tmp_path, f"experiment={experiment}", "trainer=gpu", "trainer.accelerator=gpu", f"trainer.precision={precision}"
    )  # the last accelerator override wins over the tiny cpu one
    metrics = read_metrics(run)
    assert metrics["epochs"] >= 1 and all(torch.isfinite(torch.tensor(v)) for v in metrics["test"].values())
    task = SignalRegressionTask.load_from_checkpoint(run / "checkpoints" / "best.ckpt", map_location="cpu")
    assert next(task.parameters()).device.type == "cpu"


@pytest.mark.parametrize("tbptt_steps", [1, 5])
def test_stateful_fast_path_on_cuda_equals_cpu(tbptt_steps):
    torch.manual_seed(0)
    net = build_net("stateful", hidden_size=16, num_layers=2, tbptt_steps=tbptt_steps, head_hidden=[8])
    x = torch.randn(3, 40, 5)
    cpu_out, _ = net(x)
    cuda_out, _ = net.to("cuda")(x.to("cuda"))
    torch.testing.assert_close(cuda_out.cpu(), cpu_out, atol=1e-4, rtol=1e-4)
    net.reset_state()
    steps = torch.cat([net.step(x[:, t].to("cuda")) for t in range(x.shape[1])], dim=1)
    torch.testing.assert_close(steps.cpu().reshape_as(cpu_out), cpu_out, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("pack", [False, True])
def test_classifier_on_cuda_packed_or_padded_equals_the_cpu(pack):
    """Logits and gradients of the classifier on CUDA, packed (cuDNN's standard kernel) or padded (its persistent
    kernel), equal the CPU's in float32 arithmetic: cuDNN's RNN kernels may use TF32 tensor cores unless told not
    to (``cudnn.allow_tf32``, on by default), and their ~1e-3 relative error is not what this test compares."""
    torch.manual_seed(0)
    net = build_net(
        "bilstm_classifier", input_size=3, num_classes=3, num_layers=2, dropout=0.0, head_dropout=0.0, pack=pack
    )
    x, lengths = torch.randn(6, 30, 3), torch.tensor([30, 7, 19, 30, 1, 12])

    def logits_and_grads(device):
        net.to(device).zero_grad()
        logits = net(x.to(device), lengths.to(device))
        logits.square().sum().backward()
        return logits.detach().cpu().clone(), [p.grad.detach().cpu().clone() for p in net.parameters()]

    cpu_logits, cpu_grads = logits_and_grads("cpu")
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        cuda_logits, cuda_grads = logits_and_grads("cuda")
    torch.testing.assert_close(cuda_logits, cpu_logits, atol=1e-4, rtol=1e-4)
    for grad, cpu_grad in zip(cuda_grads, cpu_grads):
        torch.testing.assert_close(grad, cpu_grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("model", ["bilstm_classifier", "bilstm_classifier/mlstm_fcn"])
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_classifiers_train_on_the_gpu_and_score_the_same_on_cpu(tmp_path, model, precision):
    """The classifier families train on CUDA with their default (padded) batches, in fp32 and bf16; the
    checkpoint scores on CPU as the GPU run did."""
    run = tmp_path / "run"
    tiny = [o for o in TINY_CLASSIFIER if model == "bilstm_classifier" or "attention_size" not in o]
    run_cli(
        "lstmlab.train",
        *tiny,
        f"model={model}",
        "trainer=gpu",
        "trainer.accelerator=gpu",
        f"trainer.precision={precision}",
        "trainer.max_steps=8",
        "trainer.min_steps=0",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    gpu = read_metrics(run)["test"]
    run_cli(
        "lstmlab.evaluate",
        f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
        "trainer.accelerator=cpu",
        "trainer.precision=32-true",
        f"hydra.run.dir={tmp_path / 'eval'}",
        "extras.print_config=false",
        cwd=tmp_path,
    )
    cpu = read_metrics(tmp_path / "eval")["test"]
    # bf16 may move a borderline sequence of the 14 across the threshold, no more
    assert gpu["test/accuracy"] == pytest.approx(cpu["test/accuracy"], abs=0.08)
    assert gpu["test/loss"] == pytest.approx(cpu["test/loss"], rel=0.05)


def test_ddp_with_one_gpu_process_trains_like_the_gpu_trainer(tmp_path):
    """``trainer=ddp trainer.devices=1`` is ``trainer=gpu`` behind DDP's wrapper: same steps, same test metrics."""
    results = {}
    for name, trainer in (("gpu", ["trainer=gpu"]), ("ddp", ["trainer=ddp", "trainer.devices=1"])):
        _, run = train(tmp_path, "experiment=signal_l50", *trainer, "trainer.accelerator=gpu", run_dir=name)
        results[name] = read_metrics(run)
    gpu, ddp = results["gpu"], results["ddp"]
    assert ddp["global_steps"] == gpu["global_steps"]
    for key, value in gpu["test"].items():
        assert ddp["test"][key] == pytest.approx(value, rel=1e-3, abs=1e-4), key


def test_a_diverging_loss_on_the_gpu_stops_with_the_step_it_diverged_at(tmp_path):
    """On a GPU the losses are read back every few steps: the run still stops, naming a step."""
    proc, run = train(
        tmp_path,
        "trainer=gpu",
        "trainer.accelerator=gpu",
        "model.optimizer.lr=1e30",
        "trainer.gradient_clip_val=null",
        "model.scheduler=null",
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = [text for text in proc.stderr.splitlines() if text.startswith("error:")]
    assert line and "training loss became" in line[0] and ", step " in line[0]
    assert not (run / "metrics.json").exists()
