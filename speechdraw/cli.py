"""The `speechdraw` command: a thin layer that parses arguments and calls library functions.

Each subcommand lives in the module that owns it and registers itself here through `SUBCOMMANDS`: a tuple of
(name, "module:add_arguments", "module:run", one-line help). Modules are imported only when their command runs, so
`speechdraw --help` stays fast and does not import torch.

Training and data preparation are not subcommands: they run from a checkout as `python recipes/<recipe>/<script>.py`
and `python data_prep/<corpus>.py`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from speechdraw import __version__

SUBCOMMANDS: list[tuple[str, str, str, str]] = [
    # (name, add_arguments, run, help)
    ("evaluate", "speechdraw.asr.evaluate_cmd:add_arguments", "speechdraw.asr.evaluate_cmd:run",
     "score a speech model on a manifest of your own: WER/CER, sub/del/ins, confusions, aligned errors, JSON"),
    ("models", "speechdraw.models_cmd:add_arguments", "speechdraw.models_cmd:run",
     "list, describe, download (pull), locate and remove models by name"),
    ("sample", "speechdraw.draw.sample_cmd:add_arguments", "speechdraw.draw.sample_cmd:run",
     "draw images with a trained DRAW model: PNG grid, GIF of the glimpses, reconstructions"),
    ("serve", "speechdraw.serve_cmd:add_arguments", "speechdraw.serve_cmd:run",
     "a web page on 127.0.0.1: upload or record audio for its transcript and subtitles, draw digits with DRAW"),
    ("transcribe", "speechdraw.asr.transcribe_cmd:add_arguments", "speechdraw.asr.transcribe_cmd:run",
     "transcribe audio with a speech release: text, JSON, SRT, VTT or TSV with word timings and confidences"),
]


def _load(ref: str):
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speechdraw",
        description="Speech recognition and DRAW image generation. Training recipes run from a checkout: "
        "python recipes/<recipe>/train.py --help",
    )
    parser.add_argument("--version", action="version", version=f"speechdraw {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, add_arguments, run, help_text in SUBCOMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        _load(add_arguments)(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(_load(args._run)(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
