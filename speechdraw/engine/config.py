"""Typed dataclass configs with command-line overrides and named presets.

A recipe's config is a dataclass whose fields may be nested dataclasses (`model`, `train`, ...). Every leaf becomes a
flag with a dotted name: `--train.lr 3e-4`, `--model.hidden 256`, `--train.compile true`. Help text comes from each
field's `metadata={"help": ...}`. A preset is a nested dict of overrides applied before the command line;
`--config run/config.json` starts from a resolved config written by an earlier run.

Order of precedence: dataclass defaults < --preset < --config < explicit flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import types
import typing
from pathlib import Path
from typing import Any


def _leaf_fields(cls, prefix: str = "") -> list[tuple[str, dataclasses.Field, Any]]:
    """(dotted name, field, resolved type) for every non-dataclass field, depth-first."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.extend(_leaf_fields(tp, f"{prefix}{f.name}."))
        else:
            out.append((prefix + f.name, f, tp))
    return out


def _strip_optional(tp):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _parse_bool(s: str) -> bool:
    v = s.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def _converter(tp):
    tp, optional = _strip_optional(tp)
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        (inner,) = set(typing.get_args(tp)) - {Ellipsis} or {str}
        conv = _converter(inner)
        seq = list if origin is list else tuple

        def parse_seq(s: str):
            return seq(conv(x) for x in s.split(",") if x.strip()) if s.strip() else seq()

        base = parse_seq
    elif typing.get_origin(tp) is typing.Literal:
        choices = typing.get_args(tp)

        def base(s: str):
            if s not in choices:
                raise argparse.ArgumentTypeError(f"choose from {choices}, got {s!r}")
            return s
    elif tp is bool:
        base = _parse_bool
    else:
        base = tp
    if not optional:
        return base
    return lambda s: None if s.strip().lower() in ("none", "null", "") else base(s)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls, data: dict, *, strict: bool = True):
    """Build a (nested) dataclass from a plain dict; unknown keys are an error when strict."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown and strict:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        tp, value = hints[f.name], data[f.name]
        if dataclasses.is_dataclass(tp):
            kwargs[f.name] = from_dict(tp, value, strict=strict)
        elif typing.get_origin(_strip_optional(tp)[0]) is tuple and value is not None:
            kwargs[f.name] = tuple(value)
        else:
            kwargs[f.name] = value
    return cls(**kwargs)


def merge(base: dict, overrides: dict) -> dict:
    out = dict(base)
    for k, v in overrides.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _set_dotted(d: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        d = d.setdefault(p, {})
    d[leaf] = value


def parse_config(cls, argv: list[str] | None = None, *, presets: dict[str, dict] | None = None,
                 description: str = "", extra_args=None):
    """Parse the command line into `cls`. Returns (config, argparse namespace of any `extra_args` flags)."""
    presets = presets or {}
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    if presets:
        parser.add_argument("--preset", choices=sorted(presets), default=None,
                            help="named set of overrides applied first (default: none)")
    parser.add_argument("--config", default=None, help="start from a resolved config.json of an earlier run")
    if extra_args:
        extra_args(parser)
    defaults = to_dict(cls())
    leaves = _leaf_fields(cls)
    for dotted, f, tp in leaves:
        default = defaults
        for part in dotted.split("."):
            default = default[part]
        help_text = f.metadata.get("help", "")
        parser.add_argument(f"--{dotted}", dest="cfg__" + dotted, type=_converter(tp), default=None,
                            metavar=dotted.split(".")[-1].upper(), help=f"{help_text} (default: {default})")
    args = parser.parse_args(argv)
    data = defaults
    if presets and args.preset:
        data = merge(data, presets[args.preset])
    if args.config:
        loaded = json.loads(Path(args.config).read_text())
        data = merge(data, loaded.get("config", loaded))
    overrides: dict = {}
    for dotted, _, _ in leaves:
        value = getattr(args, "cfg__" + dotted)
        if value is not None:
            _set_dotted(overrides, dotted, value)
    data = merge(data, overrides)
    cfg = from_dict(cls, data)
    for dotted, _, _ in leaves:
        delattr(args, "cfg__" + dotted)
    return cfg, args


def write_resolved_config(run_dir: str | os.PathLike, cfg, argv: list[str] | None = None, **extra) -> Path:
    """run_dir/config.json: the resolved config plus the command line that produced it (this start's), and the same
    record appended to run_dir/starts.jsonl with the time: one line per start of the run, oldest first, so a run
    continued over many sessions keeps what each of them ran (its code, its changes on resume)."""
    path = Path(run_dir) / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"argv": list(sys.argv if argv is None else argv), "config": to_dict(cfg), **extra}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    with open(path.parent / "starts.jsonl", "a") as f:
        f.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")
    return path
