"""``lstmlab-export ckpt_path=<run>/checkpoints/best.ckpt [format=onnx|torchscript] [out=<prefix>]``: a trained
model as self-contained graphs (scaling included, recurrent state in and out) and a JSON that describes them.

Writes ``<prefix>.<graph>.onnx`` (or ``.pt``) and ``<prefix>.<format>.json``; the prefix defaults to the
checkpoint's path without its suffix. Graphs: ``step`` and ``chunk`` (stateful and sequence nets), ``classify``
(classifiers), ``forecast`` (encoder-decoder forecasters). docs/deploy.md shows how to serve them.
"""

from __future__ import annotations

import sys

from lstmlab.errors import ConfigError, reported_errors

USAGE = "usage: lstmlab-export ckpt_path=<run>/checkpoints/best.ckpt [format=onnx|torchscript] [out=<prefix>]"
# the file suffix of each format's graphs
FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
OPTIONS = ("ckpt_path", "format", "out")


def parse(argv: list[str]) -> dict[str, str]:
    """``key=value`` arguments (Hydra's spelling, no Hydra: the CLI starts without torch) with ``format`` checked."""
    options = {"format": "onnx", "out": ""}
    for text in argv:
        key, sep, value = text.partition("=")
        if not sep or key not in OPTIONS:
            raise ConfigError(f"{text!r}: unknown option; {USAGE}")
        options[key] = value
    if not options.get("ckpt_path"):
        raise ConfigError(f"ckpt_path is required; {USAGE}")
    if options["format"] not in FORMATS:
        raise ConfigError(f"format={options['format']!r}: unknown; choose one of {list(FORMATS)}")
    return options


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip().replace("``", "") + "\n\n" + USAGE)
        return
    with reported_errors():
        options = parse(argv)
        from lstmlab.exporting import export_checkpoint

        for path in export_checkpoint(options["ckpt_path"], options["format"], options["out"] or None):
            print(path)


if __name__ == "__main__":
    main()
