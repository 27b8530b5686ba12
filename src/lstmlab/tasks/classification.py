"""Sequence classification: binary (one logit, BCE) or K > 2 classes (K logits, cross-entropy).

The task owns what a checkpoint needs to score new data the way it was trained: the per-channel z-score of the
train split, the class weights and the decision threshold chosen on validation (binary), all as buffers.
``net.input_size`` / ``net.num_classes`` (and an LSTM-FCN's ``net.time_pool``) left null are taken from the data at
set-up and written back into the saved hyperparameters, so ``SequenceClassificationTask.load_from_checkpoint(path)``
rebuilds the same net.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import Tensor, nn
from torch.nn import functional as F
from torchmetrics import CatMetric

from lstmlab.choices import CLASS_WEIGHTINGS
from lstmlab.errors import ConfigError
from lstmlab.metrics import best_f1_threshold, class_report, classification_metrics
from lstmlab.nets.lstm_fcn import pool_factor
from lstmlab.tasks.base import LstmlabTask

# the net's keys that null leaves to the data (time_pool: LSTM-FCN's only)
DATA_SIZED = ("input_size", "num_classes", "time_pool")


class SequenceClassificationTask(LstmlabTask):
    """Metrics per stage: loss, auroc, aupr (average precision), accuracy, f1; ``val/auroc_best`` for sweeps.

    Binary: accuracy and F1 at the threshold that maximises F1 on validation, applied unchanged on test.
    K > 2: macro-averaged one-vs-rest AUROC / AUPR, argmax accuracy, macro F1.
    """

    monitor = "val/auroc"
    monitor_mode = "max"

    # every value comes from the model's YAML (conf/model/), or from a checkpoint's saved hyperparameters
    def __init__(
        self,
        *,
        net: Mapping,
        optimizer: Mapping,
        scheduler: Mapping | None,
        class_weighting: str,
    ) -> None:
        super().__init__()
        if class_weighting not in CLASS_WEIGHTINGS:
            raise ConfigError(f"model.class_weighting={class_weighting!r} must be one of {list(CLASS_WEIGHTINGS)}")
        self.save_hyperparameters(logger=False)
        self.net: nn.Module | None = None
        if all(net.get(key) is not None for key in DATA_SIZED if key in net):
            self._build(dict(net))
        self.outputs = nn.ModuleDict(
            {stage: nn.ModuleDict({"logits": CatMetric(), "y": CatMetric()}) for stage in ("val", "test")}
        )
        self.epoch_outputs: dict[str, dict[str, Tensor]] = {}
        # per stage, its last epoch's per-class precision / recall and confusion matrix (the runner's metrics.json)
        self.stage_reports: dict[str, dict[str, list]] = {}
        # a seed ensemble (lstmlab-eval ckpt_path=[...]): the trained tasks whose mean probabilities this one scores
        self.members: nn.ModuleList | None = None

    def _build(self, net_cfg: dict) -> None:
        self.net = instantiate(net_cfg)
        channels, classes = net_cfg["input_size"], net_cfg["num_classes"]
        self.register_buffer("input_mean", torch.zeros(channels))
        self.register_buffer("input_std", torch.ones(channels))
        self.register_buffer("class_weight", torch.ones(1 if classes == 2 else classes))
        self.register_buffer("decision_threshold", torch.tensor(0.5))
        self.register_buffer("normaliser_fitted", torch.tensor(False))

    def recurrent_lr_scale(self) -> float:
        # no model.recurrent_lr_scale option here: the recurrence learns at the optimizer's rate like the rest
        return 1.0

    @property
    def binary(self) -> bool:
        return self.net.num_classes == 2

    # ---- set-up --------------------------------------------------------------------------------
    def prepare(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        datamodule.setup(stage)
        if self.net is None:
            sizes = {"input_size": datamodule.num_channels, "num_classes": datamodule.num_classes}
            if "time_pool" in self.hparams.net:
                longest = int(datamodule.splits["train"].lengths.max())
                sizes["time_pool"] = pool_factor(longest, self.hparams.net.get("time_pool_target"))
            self._build(self.net_config_from_data(**sizes))
        self._check_data(datamodule)
        if stage == "fit" or not bool(self.normaliser_fitted):
            self.input_mean.copy_(torch.as_tensor(datamodule.channel_mean))
            self.input_std.copy_(torch.as_tensor(datamodule.channel_std))
            summary = getattr(self.net, "summary", None)  # model.net.summary_stats: standardised on the train split
            if summary is not None:
                train = datamodule.splits["train"]
                summary.fit(train.sequences, train.lengths, lambda x: (x - self.input_mean) / self.input_std)
            self.normaliser_fitted.fill_(True)
            self.class_weight.copy_(
                self._class_weights(torch.as_tensor(datamodule.train_class_counts, dtype=torch.float32))
            )

    def _check_data(self, datamodule) -> None:
        where = f"the data file {datamodule.file_path}"
        if self.net.input_size != datamodule.num_channels:
            raise ConfigError(
                f"{where} has {datamodule.num_channels} channels but the model takes {self.net.input_size} "
                "(model.net.input_size, or the checkpoint's net); use a file with the model's channels, or train a "
                "new model with model.net.input_size=null (taken from the data)"
            )
        if self.net.num_classes != datamodule.num_classes:
            raise ConfigError(
                f"{where} has {datamodule.num_classes} classes but the model predicts {self.net.num_classes} "
                "(model.net.num_classes, or the checkpoint's net); "
                "set model.net.num_classes=null to take it from the data"
            )

    def _class_weights(self, counts: Tensor) -> Tensor:
        """Balanced: binary ``pos_weight = n_neg / n_pos``; K classes ``N / (K * n_k)``."""
        if self.hparams.class_weighting == "none":
            return torch.ones_like(self.class_weight)
        counts = counts.clamp(min=1)
        if self.binary:
            return (counts[0] / counts[1]).reshape(1)
        return counts.sum() / (len(counts) * counts)

    def configure_callbacks(self) -> list[pl.Callback]:
        """``lstmlab-eval`` tests without the run's callbacks (no checkpointing): bring the summary-statistics
        baseline and the performance table along, so an evaluation reports them too."""
        if self.trainer.checkpoint_callback is not None:
            return []
        from lstmlab.callbacks.baseline import SummaryStatsBaseline
        from lstmlab.callbacks.performance import PerformanceSummary

        present = {type(callback) for callback in self.trainer.callbacks}
        return [make() for make in (SummaryStatsBaseline, PerformanceSummary) if make not in present]

    # ---- steps ---------------------------------------------------------------------------------
    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Raw sensor values [batch, T, C] -> logits ([batch] binary, [batch, K] otherwise)."""
        if self.members is not None:
            probs = torch.stack([m.probabilities(m(x, lengths)) for m in self.members]).mean(0)
            return torch.logit(probs, eps=1e-7) if self.binary else torch.log(probs.clamp_min(1e-12))
        return self.net((x - self.input_mean) / self.input_std, lengths)

    def ensemble_of(self, members: Sequence[SequenceClassificationTask]) -> None:
        """Score as a seed ensemble: the mean class probabilities of ``members`` (tasks trained on the same data,
        each with its own normalisation), binary decisions at their mean validation threshold."""
        self.members = nn.ModuleList(members)
        self.decision_threshold.fill_(float(torch.stack([m.decision_threshold for m in members]).mean()))

    def ensemble_shared(self) -> dict[str, int]:
        """What the members of a seed ensemble must have in common for their probabilities to be averaged."""
        return {"channels": self.input_mean.numel(), "classes": self.net.num_classes}

    def class_names(self, datamodule) -> list[str]:
        """The data's class names (metrics.json's reports, lstmlab-eval's predictions), ``class_<k>`` where the
        file names none."""
        names = getattr(datamodule, "class_names", None)
        return list(names) if names else [f"class_{k}" for k in range(self.net.num_classes)]

    def probabilities(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits) if self.binary else torch.softmax(logits, dim=-1)

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        if self.binary:
            return F.binary_cross_entropy_with_logits(logits, y.float(), pos_weight=self.class_weight)
        return F.cross_entropy(logits, y, weight=self.class_weight)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss = self.loss(self(batch["x"], batch["lengths"]), batch["y"])
        self.log_train_loss(loss, len(batch["y"]))
        return loss

    def predict_step(self, batch: dict, batch_idx: int) -> Tensor:
        return self.probabilities(self(batch["x"], batch["lengths"]))

    def update_metrics(self, stage: str, batch: dict) -> None:
        self.outputs[stage]["logits"].update(self(batch["x"], batch["lengths"]))
        self.outputs[stage]["y"].update(batch["y"])

    def log_stage(self, stage: str) -> dict[str, Tensor]:
        logits = self.outputs[stage]["logits"].compute()
        y = self.outputs[stage]["y"].compute().long()
        for metric in self.outputs[stage].values():
            metric.reset()
        probs = self.probabilities(logits)
        if self.binary and stage == "val" and not self.trainer.sanity_checking:
            self.decision_threshold.fill_(best_f1_threshold(probs, y))
        values = {
            f"{stage}/loss": self.loss(logits, y),
            **classification_metrics(probs, y, self.net.num_classes, float(self.decision_threshold), stage),
        }
        self.epoch_outputs[stage] = {"probs": probs.detach().cpu(), "y": y.cpu()}
        if not self.trainer.sanity_checking:
            names = self.class_names(self.trainer.datamodule)
            self.stage_reports[stage] = class_report(probs.cpu(), y.cpu(), names, float(self.decision_threshold))
        self.log_dict(values)
        return values
