"""One optimisation step over an accumulation window, the same on one process or many.

The recipe supplies
    forward(model, batch) -> outputs      run inside autocast
    loss_fn(outputs, batch) -> loss_sum   run outside autocast on fp32 outputs: the SUM of the loss over the batch
and, per batch, the number of units the loss is summed over (frames, tokens, images...).

Normalisation: the counts of every batch in the window are all-reduced over ranks first, and each micro-batch's loss
sum is scaled by world_size / total_count. DDP averages gradients over ranks (divides by world_size), so the gradient
that reaches the optimiser is d(sum of all losses on all ranks) / total_count: exactly the gradient of one big batch,
whatever the lengths of the pieces.

Non-finite guard: if the global loss or the gradient norm is not finite, the update is skipped on every rank (both
values are identical across ranks after the all-reduce / DDP's gradient sync), counted, and after
`max_consecutive_skips` in a row NonFiniteError stops training with the step and the batches involved. With fp16 the
GradScaler's own overflow skips (finite loss, inf gradients) are counted separately and never stop training.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from speechdraw.engine.device import Precision
from speechdraw.engine.distributed import all_reduce
from speechdraw.engine.ema import EMA


class NonFiniteError(RuntimeError):
    pass


@dataclass
class StepResult:
    loss: float  # global loss per unit (sum over the window on all ranks / total count); nan if not finite
    count: float  # total units in the window across ranks
    grad_norm: float  # before clipping
    lr: float
    skipped: bool = False  # non-finite loss or gradient: no update
    overflow: bool = False  # fp16 loss-scale overflow: no update, scale reduced


def _to_fp32(x):
    if isinstance(x, torch.Tensor):
        return x.float() if x.is_floating_point() else x
    if isinstance(x, (list, tuple)):
        return type(x)(_to_fp32(v) for v in x)
    if isinstance(x, dict):
        return {k: _to_fp32(v) for k, v in x.items()}
    return x


class TrainStep:
    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, precision: Precision, *,
                 forward: Callable, loss_fn: Callable, scheduler=None, scaler: torch.amp.GradScaler | None = None,
                 clip_norm: float | None = 1.0, max_consecutive_skips: int = 5, ema: EMA | None = None,
                 ema_model: nn.Module | None = None, world_size: int = 1, describe: Callable | None = None):
        self.model, self.optimizer, self.precision = model, optimizer, precision
        self.forward, self.loss_fn = forward, loss_fn
        self.scheduler, self.scaler, self.clip_norm = scheduler, scaler, clip_norm
        self.max_consecutive_skips = max_consecutive_skips
        self.ema = ema
        self.ema_model = ema_model if ema_model is not None else getattr(model, "module", model)
        self.world_size = world_size
        self.describe = describe  # batch -> short id string, for the evidence in NonFiniteError
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.nonfinite_skips = 0
        self.consecutive_skips = 0
        self.overflow_skips = 0

    def __call__(self, window: Sequence, counts: Sequence[float], step: int | None = None) -> StepResult:
        total = float(all_reduce(float(sum(counts))))
        if total <= 0:
            raise ValueError("the accumulation window holds no units to normalise by (all counts are 0)")
        scale = self.world_size / total
        self.model.train()
        loss_sum = torch.zeros((), dtype=torch.float64)
        for i, batch in enumerate(window):
            # Only the last micro-batch synchronises gradients; the others accumulate locally.
            sync = i == len(window) - 1 or not hasattr(self.model, "no_sync")
            with contextlib.nullcontext() if sync else self.model.no_sync():
                with self.precision.autocast():
                    outputs = self.forward(self.model, batch)
                loss = self.loss_fn(_to_fp32(outputs), batch)
                scaled = loss * scale
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            loss_sum += loss.detach().double().cpu()
        global_loss = float(all_reduce(loss_sum)) / total

        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        max_norm = self.clip_norm if self.clip_norm else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))
        lr = self.optimizer.param_groups[0]["lr"]

        loss_ok = math.isfinite(global_loss)
        grad_ok = math.isfinite(grad_norm)
        # Agree on the verdict explicitly; never let one rank step while another skips.
        bad = float(all_reduce([float(not loss_ok), float(not grad_ok)], op="max").sum())
        if bad == 0:
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.ema is not None:
                self.ema.update(self.ema_model)
            self.consecutive_skips = 0
            return StepResult(global_loss, total, grad_norm, lr)

        if self.scaler is not None and loss_ok:
            # Finite loss, inf/nan gradients under fp16: the loss scale overflowed. GradScaler.step skips the
            # update on its own and update() lowers the scale. This is routine, not a failure.
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.overflow_skips += 1
            return StepResult(global_loss, total, grad_norm, lr, overflow=True)

        if self.scaler is not None:
            self.scaler.update()  # unscale_ recorded the infs; keep the scaler's per-step bookkeeping consistent
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite_skips += 1
        self.consecutive_skips += 1
        if self.max_consecutive_skips and self.consecutive_skips >= self.max_consecutive_skips:
            ids = ", ".join(self.describe(b) for b in window) if self.describe else f"{len(window)} batches"
            raise NonFiniteError(
                f"training stopped: {self.consecutive_skips} consecutive steps had a non-finite "
                f"{'loss' if not loss_ok else 'gradient norm'} (loss={global_loss}, grad_norm={grad_norm}) "
                f"at step {step}; last window: {ids}. Lower the learning rate, check the data, or use fp32/bf16.")
        return StepResult(global_loss, total, grad_norm, lr, skipped=True)

    def state_dict(self) -> dict:
        return {"nonfinite_skips": self.nonfinite_skips, "consecutive_skips": self.consecutive_skips,
                "overflow_skips": self.overflow_skips}

    def load_state_dict(self, state: dict) -> None:
        self.nonfinite_skips = state["nonfinite_skips"]
        self.consecutive_skips = state["consecutive_skips"]
        self.overflow_skips = state["overflow_skips"]
