"""Metrics logging: JSONL always (rank 0), a tqdm bar on interactive runs, TensorBoard on request, a PNG of curves."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from tqdm import tqdm

from speechdraw.engine.plot import plot_curves


class MetricsLogger:
    """Writes `metrics.jsonl` in the run directory. Only the main rank writes anything."""

    def __init__(self, run_dir: str | Path, *, is_main: bool = True, tensorboard: bool = False,
                 resume_step: int | None = None):
        self.run_dir = Path(run_dir)
        self.is_main = is_main
        self.path = self.run_dir / "metrics.jsonl"
        self.records: list[dict] = []
        self.tb = None
        if not is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            old = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
            # After a crash, rows logged past the checkpoint we resume from will be logged again: drop them.
            limit = math.inf if resume_step is None else resume_step
            self.records = [r for r in old if r.get("step", 0) <= limit] if resume_step is not None else []
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.records))
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise RuntimeError("--train.tensorboard needs the tensorboard package: pip install tensorboard") from e
            self.tb = SummaryWriter(str(self.run_dir / "tensorboard"))

    def log(self, step: int, split: str = "train", **metrics) -> None:
        if not self.is_main:
            return
        row = {"step": step, "split": split, "time": round(time.time(), 3)}
        row.update({k: (float(v) if hasattr(v, "item") else v) for k, v in metrics.items()})
        self.records.append(row)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("step", "time"):
                    self.tb.add_scalar(f"{split}/{k}", v, step)

    def plot(self) -> Path | None:
        if not self.is_main or not self.records:
            return None
        return plot_curves(self.records, self.run_dir / "curves.png")

    def progress(self, total: int | None = None, initial: int = 0, desc: str = "train"):
        """A tqdm bar on an interactive terminal on rank 0; a silent stand-in otherwise."""
        enabled = self.is_main and sys.stderr.isatty()
        return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, dynamic_ncols=True)

    def print(self, *args) -> None:
        if self.is_main:
            tqdm.write(" ".join(str(a) for a in args), file=sys.stderr)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
