"""Numbered, idempotent stages for the corpus runners (run_librispeech.py, run_timit.py), in the icefall style.

Each stage names the files it produces. It runs when it lies inside --stage..--stop-stage and is not already done;
"done" means its stamp file <exp>/stamps/<NN>-<name>.done exists (written last, atomically, only after the stage
returned and every output it names exists) and every output still exists. So an interrupted stage reruns from its
start, a finished one is a no-op, and deleting a stage's output (or its stamp) makes it run again. Not a script.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def add_stage_arguments(ap: argparse.ArgumentParser, stages: Sequence[str]) -> None:
    listing = ", ".join(f"{i} {name}" for i, name in enumerate(stages))
    ap.add_argument("--stage", type=int, default=0, help=f"first stage to run (default: 0); stages: {listing}")
    ap.add_argument("--stop-stage", type=int, default=len(stages) - 1,
                    help=f"last stage to run (default: {len(stages) - 1})")


class Stages:
    """`stages.run(n, name, outputs, fn)` runs fn() unless stage n is outside the range or already done."""

    def __init__(self, exp: Path, start: int, stop: int):
        self.exp, self.start, self.stop = exp, start, stop
        self.stamps = exp / "stamps"
        self.ran: list[str] = []  # names of the stages that ran in this invocation (for the tests and the log)

    def stamp(self, n: int, name: str) -> Path:
        return self.stamps / f"{n:02d}-{name}.done"

    def done(self, n: int, name: str, outputs: Sequence[Path]) -> bool:
        return self.stamp(n, name).is_file() and all(Path(p).exists() for p in outputs)

    def run(self, n: int, name: str, outputs: Sequence[Path], fn: Callable[[], None]) -> None:
        if not self.start <= n <= self.stop:
            return
        if self.done(n, name, outputs):
            print(f"stage {n} {name}: done already ({self.stamp(n, name)})", flush=True)
            return
        print(f"stage {n} {name}: running", flush=True)
        t0 = time.time()
        fn()
        missing = [str(p) for p in outputs if not Path(p).exists()]
        if missing:
            raise SystemExit(f"stage {n} {name}: finished without writing {', '.join(missing)}")
        self.stamps.mkdir(parents=True, exist_ok=True)
        tmp = self.stamp(n, name).with_suffix(".tmp")
        tmp.write_text(json.dumps({"stage": n, "name": name, "outputs": [str(p) for p in outputs],
                                   "seconds": round(time.time() - t0, 1)}, indent=1) + "\n")
        os.replace(tmp, self.stamp(n, name))
        self.ran.append(name)
        print(f"stage {n} {name}: done in {time.time() - t0:.1f} s", flush=True)


def sh(cmd: Sequence[str]) -> None:
    """Run one command from the repository root, echoing it; a failure stops the runner with the command's status."""
    cmd = [str(c) for c in cmd]
    print("+ " + shlex.join(cmd), flush=True)
    done = subprocess.run(cmd, cwd=REPO)
    if done.returncode:
        raise SystemExit(f"command failed with exit status {done.returncode}: {shlex.join(cmd)}")


def python(script: str, *args) -> list[str]:
    """A recipe or data_prep script of this repository, run with this interpreter."""
    return [sys.executable, str(REPO / script), *args]


def torchrun(script: str, nproc: int, *args) -> list[str]:
    """`torchrun --standalone --nproc_per_node N script args` (gloo on CPU, nccl on CUDA: speechdraw.engine)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            str(REPO / script), *args]


def default_nproc() -> int:
    """One process per visible GPU, else one."""
    import torch

    return max(torch.cuda.device_count(), 1)
