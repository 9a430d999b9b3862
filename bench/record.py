"""Benchmark records: every bench/ script ends with `write_record(...)`.

A record is one JSON file, `bench/results/<name>.json`, holding the figures together with the exact command, the git
commit, the host and the date, so every number in BENCHMARKS.md (generated from these files by
`python bench/make_benchmarks_md.py`) can be traced to the run that printed it. Scripts parse their arguments with
`parse_bench_args`, which adds --allow-dirty and refuses to start from a git tree with uncommitted changes without it.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import shlex
import sys
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # a benchmark run from a clone measures that clone's speechdraw

from speechdraw.engine.release import tree_state  # noqa: E402


def load_recipe(recipe: str, script: str):
    """Import recipes/<recipe>/<script>.py as a module (recipes are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"{recipe}_{script}", REPO / "recipes" / recipe / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses in the script look their module up here
    spec.loader.exec_module(module)
    return module


def require_clean_tree(allow_dirty: bool, repo: Path = REPO) -> dict:
    """The record's provenance fields; exits with a one-line reason when the tree is dirty and not `allow_dirty`.

    A figure must be traceable to committed code, so a benchmark refuses to write a record from a tree with
    uncommitted changes (or from outside git) unless the user passes --allow-dirty; such a record then says so
    (git_commit "<sha>-dirty", dirty: true, the changed paths) and BENCHMARKS.md marks it.
    """
    commit, changed = tree_state(repo)
    if changed and not allow_dirty:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        sys.exit(f"bench: refusing to write a record: {repo} has uncommitted changes ({shown}); commit them "
                 f"(or run from a clean clone), or pass --allow-dirty to write a record marked dirty")
    info = {"git_commit": commit + ("-dirty" if changed and commit != "unknown" else ""), "dirty": bool(changed)}
    if changed:
        info["dirty_paths"] = changed[:50]
    return info


def parse_bench_args(ap: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """ap.parse_args with --allow-dirty added; refuses (before any work) to run a benchmark from a dirty tree."""
    ap.add_argument("--allow-dirty", action="store_true",
                    help="write the record even if the git tree has uncommitted changes (it is then marked dirty)")
    args = ap.parse_args(argv)
    require_clean_tree(args.allow_dirty)
    return args


def host_info() -> dict:
    info = {"hostname": platform.node(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def write_record(name: str, figures: dict, *, title: str = "", notes: str = "", allow_dirty: bool = False,
                 results_dir: Path | None = None, repo: Path = REPO) -> Path:
    """Write bench/results/<name>.json and print the figures; returns the path.

    The tree is checked again here (it may have changed during a long run): dirty without `allow_dirty` exits.
    """
    provenance = require_clean_tree(allow_dirty, repo)
    record = {
        "name": name,
        "title": title or name,
        "figures": figures,
        "notes": notes,
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        **provenance,
        "host": host_info(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    out_dir = Path(results_dir) if results_dir else RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    print(json.dumps(figures, indent=2))
    print(f"record written to {path}")
    return path
