"""experiment=steel_defect through the real CLI: binary and 3-class runs, eval, TensorBoard figures, bad input."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import TINY_CLASSIFIER, build_datamodule, read_metrics, run_cli, with_value, write_user_file

CLASSIFICATION_METRICS = {"test/auroc", "test/aupr", "test/accuracy", "test/f1", "test/loss"}
PERFORMANCE = {
    "test/latency_p50_ms",
    "test/latency_p99_ms",
    "test/throughput_seq_per_s",
    "test/peak_memory_mb",
    "test/num_parameters",
    "test/model_size_mb",
}


def train_classifier(tmp_path, *overrides, run_dir="run", **kwargs):
    run = tmp_path / run_dir
    proc = run_cli("lstmlab.train", *TINY_CLASSIFIER, *overrides, f"hydra.run.dir={run}", cwd=tmp_path, **kwargs)
    return proc, run


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    """Two epochs of the tiny binary classifier, shared by the read-only tests below."""
    tmp = tmp_path_factory.mktemp("steel")
    _, run = train_classifier(tmp, "trainer.max_epochs=2")
    return run


def test_binary_fast_dev_run_logs_metrics_baseline_and_performance(tmp_path):
    proc, run = train_classifier(tmp_path, "debug=fast")
    test = read_metrics(run)["test"]
    assert CLASSIFICATION_METRICS | PERFORMANCE | {
        "test/threshold",
        "test/baseline_auroc",
        "test/baseline_aupr",
    } <= set(test)
    assert "| auroc |" in proc.stdout and "| latency_p50_ms |" in proc.stdout
    assert "| auroc |" in (run / "performance.md").read_text()


def test_three_classes_from_a_user_file_through_the_cli(tmp_path):
    user = write_user_file(tmp_path / "three.h5", n=60, t_max=15, channels=4, classes=3)
    _, run = train_classifier(
        tmp_path,
        "debug=fast",
        f"data.path={user}",
        "model=bilstm_classifier/deep",
        "model.net.hidden_size=4",
        "model.net.hidden_dims=[4]",
    )
    test = read_metrics(run)["test"]
    assert CLASSIFICATION_METRICS <= set(test) and "test/threshold" not in test  # argmax, no threshold
    assert 0.0 <= test["test/auroc"] <= 1.0 and "test/baseline_auroc" in test


def test_checkpoint_rebuilds_net_sizes_and_normalisation(classifier_run):
    from lstmlab.tasks.classification import SequenceClassificationTask

    task = SequenceClassificationTask.load_from_checkpoint(
        classifier_run / "checkpoints" / "best.ckpt", map_location="cpu"
    )
    assert task.net.input_size == 5 and task.net.num_classes == 2 and task.net.bidirectional
    assert bool(task.normaliser_fitted)
    assert task.input_mean[4] > 100  # cooling water flow in l/min: the raw scale, saved from the train split
    assert task.class_weight.item() > 2  # pos_weight = n_neg / n_pos for ~15% defects
    probs = task.probabilities(task(torch.randn(3, 20, 5) + task.input_mean, torch.tensor([20, 7, 1])))
    assert probs.shape == (3,) and ((probs > 0) & (probs < 1)).all()


def test_the_heads_summary_statistics_are_standardised_on_the_train_split(classifier_run, tmp_path):
    """The default net's summary statistics (model.net.summary_stats) are standardised by their mean and spread
    over the z-scored train split, fitted when training started and saved in the checkpoint."""
    from lstmlab.nets.summary import summary_features
    from lstmlab.tasks.classification import SequenceClassificationTask

    task = SequenceClassificationTask.load_from_checkpoint(
        classifier_run / "checkpoints" / "best.ckpt", map_location="cpu"
    )
    # the run's data, generated again from the same generator values (TINY_CLASSIFIER)
    datamodule = build_datamodule(
        "casting", data_dir=str(tmp_path), generator={"n_sequences": 90, "min_length": 20, "max_length": 60}
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert torch.allclose(task.input_mean, torch.as_tensor(datamodule.channel_mean))
    train = datamodule.splits["train"]
    features = summary_features((train.sequences - task.input_mean) / task.input_std, train.lengths)
    assert torch.allclose(task.net.summary.mean, features.mean(0), atol=1e-4)
    assert torch.allclose(task.net.summary.std, features.std(0, unbiased=False), rtol=1e-4, atol=1e-5)


def test_eval_reproduces_the_test_metrics_and_the_performance_table(classifier_run, tmp_path):
    proc = run_cli(
        "lstmlab.evaluate",
        f"ckpt_path={classifier_run / 'checkpoints' / 'best.ckpt'}",
        "extras.print_config=false",
        f"hydra.run.dir={tmp_path / 'eval'}",
        cwd=classifier_run.parent,
    )
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())["test"]
    original = read_metrics(classifier_run)["test"]
    for key in sorted(CLASSIFICATION_METRICS | {"test/threshold", "test/baseline_auroc"}):
        assert evaluated[key] == pytest.approx(original[key], rel=1e-5, abs=1e-6), key
    assert PERFORMANCE <= set(evaluated) and "| latency_p99_ms |" in proc.stdout


def read_predictions(ckpt, path, run_dir):
    """``lstmlab-eval ckpt_path=<ckpt> predictions=<path>``; the table and the evaluation's test metrics."""
    import pandas as pd

    run_cli(
        "lstmlab.evaluate",
        f"ckpt_path={ckpt}",
        f"predictions={path}",
        "extras.print_config=false",
        f"hydra.run.dir={run_dir}",
        cwd=run_dir.parent,
    )
    return pd.read_csv(path), json.loads((run_dir / "metrics.json").read_text())["test"]


def test_eval_writes_one_prediction_row_per_test_sequence(tmp_path):
    import numpy as np

    user = write_user_file(tmp_path / "three.h5", n=60, t_max=15, channels=4, classes=3)
    _, run = train_classifier(tmp_path, "trainer.max_epochs=2", f"data.path={user}")
    table, evaluated = read_predictions(run / "checkpoints" / "best.ckpt", tmp_path / "pred.csv", tmp_path / "eval")
    trained = read_metrics(run)
    probs = ["p_c0", "p_c1", "p_c2"]
    assert list(table.columns) == ["index", "sequence", "label", "predicted", *probs]
    assert len(table) == sum(trained["test_report"]["support"]) and table["index"].tolist() == list(range(len(table)))
    np.testing.assert_allclose(table[probs].sum(axis=1), 1.0, atol=1e-6)
    assert (table["predicted"] == table[probs].idxmax(axis=1).str[2:]).all()
    labels = np.arange(60) % 3  # write_user_file's labels, by the row of the file
    assert (table["label"] == [f"c{k}" for k in labels[table["sequence"]]]).all()
    accuracy = (table["label"] == table["predicted"]).mean()
    assert accuracy == pytest.approx(trained["test"]["test/accuracy"], abs=1e-6)
    assert accuracy == pytest.approx(evaluated["test/accuracy"], abs=1e-6)


def test_binary_predictions_use_the_validation_threshold(classifier_run, tmp_path):
    table, evaluated = read_predictions(
        classifier_run / "checkpoints" / "best.ckpt", tmp_path / "pred.csv", tmp_path / "eval"
    )
    names = read_metrics(classifier_run)["test_report"]["classes"]
    positive = f"p_{names[1]}"
    assert list(table.columns)[4:] == [f"p_{name}" for name in names]
    expected = [names[int(p >= evaluated["test/threshold"])] for p in table[positive]]
    assert table["predicted"].tolist() == expected
    assert (table["label"] == table["predicted"]).mean() == pytest.approx(evaluated["test/accuracy"], abs=1e-6)


def test_tensorboard_holds_the_figures(classifier_run):
    images, scalars = set(), set()
    for events in (classifier_run / "tensorboard").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"images": 0, "scalars": 0})
        acc.Reload()
        images |= set(acc.Tags()["images"])
        scalars |= set(acc.Tags()["scalars"])
    assert {"test/roc_pr", "test/confusion_matrix", "test/attention"} <= images
    assert {
        "val/auroc",
        "val/auroc_best",
        "val/aupr",
        "~test/auroc",  # one-point end-of-run metrics are filed after the curves (lstmlab.loggers)
        "~test/baseline_auroc",
        "train/loss_epoch",
    } <= scalars


# (id, entry point, overrides, bad file edits or None, what stderr must name)
def test_eval_of_several_checkpoints_scores_their_mean_probabilities(classifier_run, tmp_path):
    """``ckpt_path=[a,b]``: a seed ensemble whose probabilities are the members' mean, scored as one model."""
    import numpy as np

    _, other = train_classifier(tmp_path, "trainer.max_epochs=2", "seed=1", run_dir="seed1")
    ckpts = [classifier_run / "checkpoints" / "best.ckpt", other / "checkpoints" / "best.ckpt"]
    members = [read_predictions(c, tmp_path / f"m{k}.csv", tmp_path / f"eval{k}") for k, c in enumerate(ckpts)]
    table, evaluated = read_predictions(f"[{ckpts[0]},{ckpts[1]}]", tmp_path / "ens.csv", tmp_path / "ens")
    probs = [c for c in table.columns if c.startswith("p_")]
    mean = (members[0][0][probs] + members[1][0][probs]) / 2
    assert not np.allclose(members[0][0][probs], members[1][0][probs])  # two different models
    np.testing.assert_allclose(table[probs], mean, atol=1e-5)
    thresholds = [m[1]["test/threshold"] for m in members]
    assert evaluated["test/threshold"] == pytest.approx(sum(thresholds) / 2, abs=1e-6)
    assert (table["label"] == table["predicted"]).mean() == pytest.approx(evaluated["test/accuracy"], abs=1e-6)
    assert json.loads((tmp_path / "ens" / "metrics.json").read_text())["checkpoint"] == [str(c) for c in ckpts]


def test_a_multirun_of_seeds_scores_its_runs_as_one_seed_ensemble(tmp_path):
    """``-m seed=1,2 ensemble_splits=[val,test]``: after the runs, their best checkpoints scored as one ensemble."""
    sweep = tmp_path / "sweep"
    overrides = ("trainer.max_epochs=2", "seed=1,2", "ensemble_splits=[val,test]", f"hydra.sweep.dir={sweep}")
    proc = run_cli("lstmlab.train", "-m", *TINY_CLASSIFIER, *overrides, cwd=tmp_path)
    members = [str(sweep / job / "checkpoints" / "best.ckpt") for job in ("0", "1")]
    for split in ("val", "test"):
        scored = json.loads((sweep / "ensemble" / split / "metrics.json").read_text())
        assert scored["checkpoint"] == members
        assert 0.0 <= scored[split][f"{split}/auroc"] <= 1.0
        assert f"seed ensemble of 2 runs, {split}: accuracy " in proc.stdout


def test_a_wrong_ensemble_split_stops_the_multirun_before_its_first_run(tmp_path):
    sweep = tmp_path / "sweep"
    overrides = ("seed=1,2", "ensemble_splits=[train]", f"hydra.sweep.dir={sweep}")
    proc = run_cli("lstmlab.train", "-m", *TINY_CLASSIFIER, *overrides, cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "error: ensemble_splits=['train']: 'train' is not a split" in proc.stderr
    assert not (sweep / "0").exists()


BAD = [
    ("labels_out_of_range", "lstmlab.train", dict(labels=lambda a: with_value(a, 4, 7)), "(first: labels[4] = 7)"),
    ("channel_mismatch_vs_checkpoint", "lstmlab.evaluate", dict(), "has 3 channels but the model takes 5"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_exits_with_one_clear_line(tmp_path, classifier_run, case):
    _, module, edits, expected = case
    user = write_user_file(tmp_path / "user.h5", classes=2, **edits)
    before = hashlib.sha256(user.read_bytes()).hexdigest()
    if module == "lstmlab.train":
        args = [*TINY_CLASSIFIER, f"data.path={user}"]
    else:
        args = [f"ckpt_path={classifier_run / 'checkpoints' / 'best.ckpt'}", f"data_path={user}"]
    proc = run_cli(module, *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert expected in proc.stderr and str(user) in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert hashlib.sha256(user.read_bytes()).hexdigest() == before
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_weight_averaging_tests_and_checkpoints_the_averaged_weights(tmp_path):
    _, run = train_classifier(tmp_path, "callbacks=[classification,ema]", "callbacks.ema.decay=0.5")
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", weights_only=False)
    averaged, raw = ckpt["state_dict"], ckpt["current_model_state"]
    assert set(averaged) == set(raw)
    weights = [key for key in averaged if key.startswith("net.lstm.") or key.startswith("net.head.")]
    assert weights and all(not torch.equal(averaged[key], raw[key]) for key in weights), weights
    # the normalisation fitted on the train split before the average was taken, and kept by it
    assert torch.allclose(averaged["input_mean"], raw["input_mean"]) and bool(averaged["normaliser_fitted"])
    # lstmlab-eval scores best.ckpt's state_dict: the same figures as the run's test, so that tested the average
    run_cli(
        "lstmlab.evaluate",
        f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
        "extras.print_config=false",
        f"hydra.run.dir={tmp_path / 'eval'}",
        cwd=tmp_path,
    )
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())["test"]
    original = read_metrics(run)["test"]
    for key in ("test/loss", "test/auroc", "test/threshold"):
        assert evaluated[key] == pytest.approx(original[key], rel=1e-5, abs=1e-6), key
