"""The GEMM kernel behind the DRAW glimpses, chosen per CPU by a fixed rule.

torch sends a CPU fp32 matmul to MKL's sgemm. On AMD processors MKL runs an AVX2 code path even where the CPU has
AVX-512, while oneDNN (which torch also ships, and already uses for bf16) runs AVX-512 kernels: measured on an AMD
EPYC with AVX-512 (one thread, bench/results/draw_speed.json: gemm_gflop_per_s_at_step_shapes), the step's fp32 GEMMs
ran at 74-87 GFLOP/s in MKL and 157-182 in oneDNN, while in bf16 the two were within a few percent. On an AMD EPYC
with AVX2 only, MKL was the faster one (the step's shapes took 1.21x longer in oneDNN, one thread), and on an Intel Xeon
with AVX-512 MKL's fp32 was the faster at 10 of the 12 shapes (bench/results/draw_speed_intel.json), on one with AMX at
11 (bench/results/draw_speed_amx.json). So the rule is: fp32 on an AMD CPU with AVX-512 -> oneDNN, everything else ->
torch's own matmul ("blas"). It is a rule, not a timing: a kernel picked by timing can differ from one process to the
next on a busy machine, the two kernels round differently, and a resumed run would then no longer repeat the
uninterrupted one bit for bit (tests/test_draw_recipe.py checks it).

    linear(a, w, bias)   bias + a @ w^T, a (M, K), w (N, K), bias (N,) or (M, N) or None -> (M, N)

Only tensors outside autograd come here (the glimpses' hand-written forward and backward passes in model.py): the
oneDNN op has no autograd formula. SPEECHDRAW_GEMM=blas or =onednn forces one kernel (the tests run both).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from speechdraw.engine.device import cpu_bf16, cpu_flags, cpu_vendor

_ONEDNN = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None
_ONEDNN_BF16 = cpu_bf16() != "none"
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
    """oneDNN's op runs fp32 on any CPU, bf16 only where oneDNN has bf16 kernels (AVX-512 and newer)."""
    if _ONEDNN is None or device.type != "cpu":
        return False
    return dtype == torch.float32 or (dtype == torch.bfloat16 and _ONEDNN_BF16)


def choose(dtype: torch.dtype, device: torch.device, m: int, k: int, n: int) -> str:
    """The kernel for a (M, K) @ (K, N) GEMM of this dtype: forced by SPEECHDRAW_GEMM, else oneDNN for fp32 on an AMD
    CPU with AVX-512 and torch's matmul otherwise (the module docstring says why); remembered per shape for
    choices()."""
    forced = os.environ.get("SPEECHDRAW_GEMM", "auto")
    if forced not in ("auto", "blas", "onednn"):
        raise ValueError(f"SPEECHDRAW_GEMM must be auto, blas or onednn, got {forced!r}")
    if not _usable(dtype, device):
        return "blas"
    if forced != "auto":
        return forced
    key = (dtype, m, k, n)
    if key not in _CHOICE:
        amd512 = cpu_vendor() == "AuthenticAMD" and "avx512f" in cpu_flags()
        _CHOICE[key] = "onednn" if dtype == torch.float32 and amd512 else "blas"
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
