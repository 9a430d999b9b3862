"""Learning-rate schedules as LambdaLR multipliers (their state is a plain dict, so checkpoints stay weights-only)."""

from __future__ import annotations

import math

import torch


def warmup_decay(optimizer: torch.optim.Optimizer, *, warmup_steps: int, total_steps: int,
                 decay: str = "cosine", final_ratio: float = 0.05) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the base LR over `warmup_steps`, then cosine, linear or no decay to final_ratio x base."""
    if decay not in ("cosine", "linear", "none"):
        raise ValueError(f"unknown decay {decay!r}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if decay == "none" or total_steps <= warmup_steps:
            return 1.0
        t = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        shape = 0.5 * (1 + math.cos(math.pi * t)) if decay == "cosine" else 1.0 - t
        return final_ratio + (1 - final_ratio) * shape

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
