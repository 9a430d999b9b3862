"""The GEMM kernel behind the DRAW glimpses, chosen per CPU by measurement.

torch sends a CPU fp32 matmul to MKL's sgemm. On AMD processors MKL runs an AVX2 code path even where the CPU has
AVX-512, while oneDNN (which torch also ships, and already uses for bf16) runs AVX-512 kernels: measured on an AMD
EPYC with AVX-512 (one thread), the encoder's (100 x 520) @ (520 x 1024) GEMM ran at ~48 GFLOP/s in MKL and ~185 in
oneDNN. On an Intel CPU MKL is usually the faster one. So neither is hard-wired: the first time a GEMM of a given
(dtype, M, K, N) is asked for, both kernels are timed on operands of that shape and the faster one is kept for the
rest of the process (a few ms per shape; a training step has about six shapes).

    linear(a, w, bias)   bias + a @ w^T, a (M, K), w (N, K), bias (N,) or (M, N) or None -> (M, N)

Only tensors outside autograd come here (the glimpses' hand-written forward and backward passes in model.py): the
oneDNN op has no autograd formula. SPEECHDRAW_GEMM=blas or =onednn forces one kernel (the tests run both).
"""

from __future__ import annotations

import os
import time

import torch
from torch import Tensor

_ONEDNN = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None
_CHOICE: dict[tuple, str] = {}  # (dtype, M, K, N) -> "blas" or "onednn"


def _blas(a: Tensor, w: Tensor, bias: Tensor | None) -> Tensor:
    if bias is None:
        return torch.mm(a, w.t())
    return torch.addmm(bias, a, w.t())


def _onednn(a: Tensor, w: Tensor, bias: Tensor | None) -> Tensor:
    if bias is not None and (bias.dim() != 1 or bias.dtype != a.dtype):
        # The op takes a (N,) bias of the operands' dtype only; a per-image (M, N) bias is added after.
        return _ONEDNN(a, w, None, "none", [], "").to(bias.dtype).add_(bias)
    return _ONEDNN(a, w, bias, "none", [], "")


KERNELS = {"blas": _blas, "onednn": _onednn}


def _usable(dtype: torch.dtype, device: torch.device) -> bool:
    return _ONEDNN is not None and device.type == "cpu" and dtype in (torch.float32, torch.bfloat16)


def _time(fn, a: Tensor, w: Tensor, reps: int = 3) -> float:
    fn(a, w, None)  # first call: oneDNN builds and caches its primitive
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(a, w, None)
        best = min(best, time.perf_counter() - t0)
    return best


def choose(dtype: torch.dtype, device: torch.device, m: int, k: int, n: int) -> str:
    """The kernel for a (M, K) @ (K, N) GEMM of this dtype: forced by SPEECHDRAW_GEMM, else the faster of the two on
    random operands of that shape (best of 3, so a busy machine's stalls do not decide), remembered per shape."""
    forced = os.environ.get("SPEECHDRAW_GEMM", "auto")
    if forced not in ("auto", "blas", "onednn"):
        raise ValueError(f"SPEECHDRAW_GEMM must be auto, blas or onednn, got {forced!r}")
    if not _usable(dtype, device):
        return "blas"
    if forced != "auto":
        return forced
    key = (dtype, m, k, n)
    if key not in _CHOICE:
        with torch.no_grad():
            a = torch.randn(m, k, device=device).to(dtype)
            w = torch.randn(n, k, device=device).to(dtype)
            times = {name: _time(fn, a, w) for name, fn in KERNELS.items()}
        _CHOICE[key] = min(times, key=times.get)
    return _CHOICE[key]


def linear(a: Tensor, w: Tensor, bias: Tensor | None = None) -> Tensor:
    """bias + a @ w^T with the kernel chosen for this shape: a (M, K), w (N, K) (contiguous is fastest), bias (N,) or
    (M, N) or None -> (M, N) in a's dtype, or bias's where they differ (bf16 GEMM, fp32 bias)."""
    kernel = choose(a.dtype, a.device, a.shape[0], a.shape[1], w.shape[0])
    if kernel == "blas" and bias is not None and bias.dtype != a.dtype:
        return torch.mm(a, w.t()).to(bias.dtype).add_(bias)
    return KERNELS[kernel](a, w, bias)


def choices() -> dict[str, str]:
    """What was chosen so far, "dtype MxKxN" -> kernel, for benchmark records."""
    return {f"{str(d).replace('torch.', '')} {m}x{k}x{n}": v for (d, m, k, n), v in sorted(_CHOICE.items(), key=str)}
