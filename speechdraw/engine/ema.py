"""Exponential moving average of the weights (kept in fp32), used for evaluation and the released model."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow = {k: v.detach().float().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        # Warm-up (as in TF's ExponentialMovingAverage with num_updates): early averages are not dominated by the init.
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].lerp_(v.detach().float(), 1.0 - d)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        if state["shadow"].keys() != self.shadow.keys():
            raise KeyError("EMA state does not match the model's parameters")
        self.decay, self.updates = state["decay"], state["updates"]
        self.shadow = {k: v.float().to(self.shadow[k].device).clone() for k, v in state["shadow"].items()}

    def averaged_state_dict(self, model: nn.Module) -> dict:
        """The model's state dict with averaged floating-point entries (cast back to their dtypes)."""
        return {k: (self.shadow[k].to(v.dtype) if k in self.shadow else v).detach().clone()
                for k, v in model.state_dict().items()}


def checkpoint_weights(state: dict, weights: str = "auto") -> tuple[dict, str]:
    """The model weights of a resume checkpoint (engine/run.py's checkpoint_state): "ema" (its EMA average), "model"
    (the raw weights) or "auto" (EMA when the run kept one). Returns (state dict, which)."""
    if weights not in ("auto", "ema", "model"):
        raise ValueError(f"weights must be auto, ema or model, got {weights!r}")
    ema = state.get("ema")
    if weights == "ema" and ema is None:
        raise ValueError("this checkpoint holds no EMA weights (the run had train.ema_decay 0)")
    if weights == "model" or ema is None:
        return dict(state["model"]), "model"
    shadow = ema["shadow"]
    return {k: (shadow[k].to(v.dtype) if k in shadow else v) for k, v in state["model"].items()}, "ema"
