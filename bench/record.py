"""Benchmark records: every bench/ script ends with `write_record(...)`.

A record is one JSON file, `bench/results/<name>.json`, holding the figures together with the exact command, the git
commit, the host and the date, so every number in BENCHMARKS.md (generated from these files by
`python bench/make_benchmarks_md.py`) can be traced to the run that printed it.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]


def load_recipe(recipe: str, script: str):
    """Import recipes/<recipe>/<script>.py as a module (recipes are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"{recipe}_{script}", REPO / "recipes" / recipe / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses in the script look their module up here
    spec.loader.exec_module(module)
    return module


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=Path(__file__).resolve().parent).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


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


def write_record(name: str, figures: dict, *, title: str = "", notes: str = "",
                 results_dir: Path | None = None) -> Path:
    """Write bench/results/<name>.json and print the figures; returns the path."""
    record = {
        "name": name,
        "title": title or name,
        "figures": figures,
        "notes": notes,
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "git_commit": git_commit(),
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
