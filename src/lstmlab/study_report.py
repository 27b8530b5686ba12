"""A study report a person can read: ``report.md`` and the figures Optuna's visualisation module draws.

Written by the lstmlab_optuna sweeper at the end of every sweep (a resumed one too) into the sweep dir, and by
``lstmlab-report <sweep dir | storage URL> [study_name=...]`` for any study, finished or still running. The
figures (matplotlib backend): the optimisation history, the parameter importances (fANOVA), the parallel
coordinates and, when both are searched, the hidden size x number of layers contour; the same figures go to
TensorBoard as images of a run ``study`` in ``<out>``, so ``tensorboard --logdir <sweep dir>`` shows them beside
the trials.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
REPORT_FILE = "report.md"
FIGURES_DIR = "report"
# the two sizes the contour is drawn for when a study searched both (any key ending so: model.hidden_size,
# model.net.hidden_size ...)
CONTOUR_PAIR = ("hidden_size", "num_layers")


def _figures(study) -> dict[str, Any]:
    """name -> matplotlib figure, each only where the study has what it needs."""
    import optuna.visualization.matplotlib as plots
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    params = sorted({k for t in complete for k in t.params})
    figures: dict[str, Any] = {}
    if not complete or len(study.directions) > 1:
        return figures
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the matplotlib backend is marked experimental on every call
        figures["optimization_history"] = plots.plot_optimization_history(study).figure
        varied = [p for p in params if len({repr(t.params.get(p)) for t in complete}) > 1]
        if len(complete) >= 2 and varied:
            figures["param_importances"] = plots.plot_param_importances(study, params=varied).figure
            figures["parallel_coordinate"] = plots.plot_parallel_coordinate(study, params=varied).figure
        pair = [next((p for p in varied if p.endswith(end)), None) for end in CONTOUR_PAIR]
        if all(pair) and len(complete) >= 2:
            axes = plots.plot_contour(study, params=pair)
            figures["contour_hidden_size_num_layers"] = axes.figure
    for figure in figures.values():
        figure.set_size_inches(8, 5)
        figure.tight_layout()
    return figures


def importances(study) -> dict[str, float]:
    """fANOVA importance of each searched parameter that varied among the complete trials (empty if none)."""
    import optuna
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varied = sorted({k for t in complete for k in t.params if len({repr(u.params.get(k)) for u in complete}) > 1})
    if len(complete) < 2 or not varied or len(study.directions) > 1:
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optuna.importance.get_param_importances(study, params=varied)


def _trials_table(study, limit: int = 20) -> list[str]:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    keys = sorted({k for t in trials for k in t.params})
    sign = 1 if study.directions[0].name == "MINIMIZE" else -1
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE and t.values), key=lambda t: sign * t.values[0])
    shown = done[:limit] + [t for t in trials if t.state != TrialState.COMPLETE][: max(0, limit - len(done))]
    lines = ["| # | state | value | " + " | ".join(keys) + " |", "|---" * (3 + len(keys)) + "|"]
    for t in shown:
        value = ", ".join(f"{v:.5g}" for v in t.values) if t.values else ""
        cells = [f"{t.params[k]:.4g}" if isinstance(t.params.get(k), float) else str(t.params.get(k, "")) for k in keys]
        lines.append(f"| {t.number} | {t.state.name.lower()} | {value} | " + " | ".join(cells) + " |")
    return lines


def write_report(study, out_dir: str | Path, storage_label: str = "") -> Path:
    """``out_dir/report.md`` with its figures under ``out_dir/report/`` and in TensorBoard; returns the file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState

    out_dir = Path(out_dir)
    figures_dir = out_dir / FIGURES_DIR
    figures_dir.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    lines = [
        f"# Study `{study.study_name}`",
        "",
        f"Storage: `{storage_label}`" if storage_label else "",
        f"Directions: {', '.join(d.name.lower() for d in study.directions)}; trials: "
        + ", ".join(f"{n} {state}" for state, n in counts.items() if n),
        "",
    ]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete and len(study.directions) == 1:
        best = study.best_trial
        shown = ", ".join(f"`{k}={v}`" for k, v in best.params.items())
        lines += [f"**Best trial {best.number}**: value {best.value:.6g} with {shown}", ""]
    weights = importances(study)
    if weights:
        top = max(weights, key=weights.get)
        lines += [f"**Mattered most**: `{top}` (fANOVA importance {weights[top]:.2f})", ""]
        lines += ["| parameter | importance |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in weights.items()] + [""]
    lines += ["## Trials (best first)", "", *_trials_table(study), ""]
    figures = _figures(study)
    if figures:
        lines += ["## Figures", ""]
    for name, figure in figures.items():
        path = figures_dir / f"{name}.png"
        figure.savefig(path, dpi=100)
        lines += [f"![{name}]({FIGURES_DIR}/{name}.png)", ""]
    _to_tensorboard(figures, out_dir / "study", len(trials))
    for figure in figures.values():
        plt.close(figure)
    report = out_dir / REPORT_FILE
    partial = report.with_name(report.name + ".partial")
    partial.write_text("\n".join(line for line in lines if line is not None) + "\n")
    partial.replace(report)
    return report


def _to_tensorboard(figures: dict[str, Any], logdir: Path, step: int) -> None:
    if not figures:
        return
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(logdir))
    try:
        for name, figure in figures.items():
            writer.add_figure(f"study/{name}", figure, global_step=step, close=False)
    finally:
        writer.close()
