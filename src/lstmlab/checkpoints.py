"""Reading a task back from a checkpoint, with one error that says which file and what to pass instead."""

from __future__ import annotations

from pathlib import Path

from lstmlab.errors import ConfigError

EXAMPLE = "ckpt_path=outputs/<date>/<time>/checkpoints/best.ckpt"


def check_checkpoint_file(path: str | Path, what: str = "a .ckpt file") -> Path:
    """``path`` as a ``Path``, or a ``ConfigError`` naming ``ckpt_path`` when there is no such file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path={path}: checkpoint not found; pass {what}, e.g. {EXAMPLE}")
    return path


def load_task_checkpoint(task_class: type, path: str | Path, written_by: str):
    """``task_class.load_from_checkpoint(path)`` on the CPU; a foreign or damaged file raises a ``ConfigError``
    that names the file and says it should be a checkpoint ``written_by`` (not how unpickling failed)."""
    try:
        return task_class.load_from_checkpoint(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ConfigError(
            f"ckpt_path={path}: not a readable {task_class.__name__} checkpoint ({type(err).__name__}: {err}); "
            f"pass a checkpoint written by {written_by}"
        ) from None
