"""User-facing errors: one line that names the key, file or value and how to fix it."""

from __future__ import annotations

import contextlib
import os
import sys


class LstmlabError(Exception):
    """A problem with the user's input (config, file, checkpoint). Printed as one line, exit status 2."""


class ConfigError(LstmlabError, ValueError):
    """A config key holds a value that cannot work."""


class DataFileError(LstmlabError, ValueError):
    """A data file is missing or does not follow its documented schema."""


EXIT_BAD_INPUT = 2


@contextlib.contextmanager
def reported_errors():
    """Turn an ``LstmlabError`` into ``error: <message>`` on stderr and exit status 2.

    ``HYDRA_FULL_ERROR=1`` lets the exception through with its traceback, as Hydra does for its own errors,
    and so does a multirun job: its sweeper records the failure and goes on with the other jobs.
    """
    try:
        yield
    except LstmlabError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or in_multirun():
            raise
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
