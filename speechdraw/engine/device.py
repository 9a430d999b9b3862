"""Device selection and the precision policy.

Precision policy (one place, used by every recipe):
- "fp32": no autocast.
- "bf16": autocast to bfloat16 on CPU or CUDA; no loss scaling needed (bf16 has fp32's exponent range).
- "fp16": autocast to float16 with a GradScaler (meant for CUDA; also runs on CPU for testing).
The model's forward runs inside `precision.autocast()`; losses are computed outside it in fp32 (see step.py).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

PRECISIONS = ("fp32", "bf16", "fp16")


def select_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """Resolve "auto" | "cuda" | "cuda:N" | "mps" | "cpu" to a torch.device; under torchrun CUDA uses LOCAL_RANK."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda was requested but CUDA is not available")
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
        return device
    if name.startswith("cuda:"):
        device = torch.device(name)
        torch.cuda.set_device(device)
        return device
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("--device mps was requested but MPS is not available")
    if name not in ("cpu", "mps"):
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    return torch.device(name)


@dataclass
class Precision:
    """Autocast and loss-scaling policy for one device."""

    name: str
    device: torch.device

    def __post_init__(self):
        if self.name not in PRECISIONS:
            raise ValueError(f"unknown precision {self.name!r}: use one of {PRECISIONS}")
        if self.name == "bf16" and self.device.type == "mps":
            raise ValueError("bf16 autocast is not supported on MPS; use fp32 or fp16")

    @property
    def dtype(self) -> torch.dtype:
        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.name]

    def autocast(self):
        """Context manager for the model's forward pass (a no-op for fp32)."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def make_scaler(self) -> torch.amp.GradScaler | None:
        """A GradScaler for fp16 (dynamic loss scaling against underflow), None otherwise."""
        if self.name != "fp16":
            return None
        return torch.amp.GradScaler(self.device.type)
