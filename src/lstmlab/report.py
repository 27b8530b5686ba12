"""``lstmlab-report <sweep dir | storage URL> [study_name=...] [out=...]``: the study report of any Optuna study.

A sweep dir (``multirun/<date>/<time>``) names its study and storage in its ``multirun.yaml``; a storage URL
(``sqlite:///studies.db``, ``postgresql://...``) holds one or more studies (``study_name=`` picks one). The
report goes to the sweep dir, or ``out=`` (default for a URL: ``./report-<study name>``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from lstmlab.errors import ConfigError, reported_errors

USAGE = "usage: lstmlab-report <sweep dir | storage URL> [study_name=<name>] [out=<dir>]"
OPTIONS = ("study_name", "out")


def parse(argv: list[str]) -> tuple[str, dict[str, str]]:
    if not argv:
        raise ConfigError(f"name a sweep dir or a storage URL; {USAGE}")
    target, options = argv[0], {}
    for text in argv[1:]:
        key, sep, value = text.partition("=")
        if not sep or key not in OPTIONS:
            raise ConfigError(f"{text!r}: unknown option; {USAGE}")
        options[key] = value
    return target, options


def locate(target: str, options: dict[str, str]) -> tuple[str, str | None, Path]:
    """(storage URL, study name or None, output dir) of ``target``."""
    from omegaconf import OmegaConf

    path = Path(target)
    if "://" in target:
        name = options.get("study_name")
        return target, name, Path(options.get("out") or f"report-{name or 'study'}")
    if not path.is_dir():
        raise ConfigError(f"{target}: neither a sweep dir nor a storage URL (sqlite:///..., postgresql://...)")
    saved = path / "multirun.yaml"
    if not saved.is_file():
        raise ConfigError(
            f"{target}: no multirun.yaml here; pass the dir of an lstmlab-train -m sweep, or its storage URL"
        )
    sweeper = OmegaConf.load(saved).hydra.sweeper
    storage = sweeper.get("storage") or f"sqlite:///{(path / 'optuna.db').resolve()}"
    return storage, options.get("study_name") or sweeper.get("study_name"), Path(options.get("out") or path)


def load(storage: str, name: str | None):
    import optuna

    from hydra_plugins.lstmlab_optuna_sweeper._study import mask_password, resolve_url

    url = resolve_url(storage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = [s.study_name for s in optuna.get_all_study_summaries(url, include_best_trial=False)]
    if name is None:
        if len(names) != 1:
            raise ConfigError(f"{mask_password(storage)} holds studies {names}; pick one with study_name=<name>")
        name = names[0]
    if name not in names:
        raise ConfigError(f"study_name={name!r}: not in {mask_password(storage)}; it holds {names}")
    return optuna.load_study(study_name=name, storage=url), mask_password(storage)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.split("\n\n")[0].strip("`") + "\n\n" + USAGE)
        return
    with reported_errors():
        target, options = parse(argv)
        storage, name, out = locate(target, options)
        study, label = load(storage, name)
        from lstmlab.study_report import write_report

        print(write_report(study, out, label))


if __name__ == "__main__":
    main()
