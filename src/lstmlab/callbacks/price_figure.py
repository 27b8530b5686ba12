"""TensorBoard figure of the test period: the actual target, the model's forecast and both baselines."""

from __future__ import annotations

import pytorch_lightning as pl

from lstmlab.callbacks.figure_writer import FigureCallback, figure_writers, publish_figures, subplots

LABELS = {
    "actual": "actual",
    "model": "model",
    "persistence": "persistence (last value)",
    "moving_average": "moving average",
}
COLORS = {"actual": "black", "model": "tab:orange", "persistence": "tab:blue", "moving_average": "tab:green"}


class PriceForecastFigure(FigureCallback):
    """After testing: the last ``max_points`` test examples, every forecaster against the actual value."""

    def __init__(self, max_points: int = 300, tag: str = "test/forecast") -> None:
        self.max_points = max_points
        self.tag = tag

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module) -> None:
        if not figure_writers(trainer):
            return
        series = pl_module.forecast_split(trainer.datamodule.splits["test"])
        series = {k: v[-self.max_points :].numpy().copy() for k, v in series.items()}
        horizon, target = pl_module.pipeline.horizon, pl_module.pipeline.target
        publish_figures(trainer, lambda: {self.tag: draw_forecast(series, horizon, f"{target} {horizon} ticks ahead")})


def draw_forecast(series: dict, horizon: int, ylabel: str):
    fig, ax = subplots(figsize=(10, 4))
    target_tick = series["tick"] + horizon  # each forecast drawn at the tick it forecasts
    for name in ("actual", "persistence", "moving_average", "model"):
        ax.plot(
            target_tick,
            series[name],
            label=LABELS[name],
            color=COLORS[name],
            linewidth=1.4 if name in ("actual", "model") else 0.9,
        )
    ax.set_xlabel("tick of the forecast target")
    ax.set_ylabel(ylabel)
    ax.set_title("test period: forecasts vs actual")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return fig
