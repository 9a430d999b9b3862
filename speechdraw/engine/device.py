"""Device selection and the precision policy.

Precision policy (one place, used by every recipe):
- "auto": bf16 where bfloat16 is measured faster than fp32 (a CUDA GPU that has it; on x86 a CPU with AMX-BF16, or an
  AMD CPU with AVX512-BF16; BF16 on Arm), fp16 on an older CUDA GPU, fp32 everywhere else. The presets use it: bf16 is
  not faster everywhere, and the rule (see cpu_bf16_is_faster) follows what was measured, not the flags alone:
  - AVX2-only AMD EPYC: DRAW's paper step took 3.9 s in bf16 against 0.87 s in fp32, and oneDNN's LSTM has no bf16
    kernel there at all ("could not create a primitive descriptor for the LSTM forward propagation primitive").
  - AMD EPYC with AVX512-BF16: bf16 GEMMs at the DRAW step's shapes ran at 71-373 GFLOP/s against 51-180 in fp32
    (the faster kernel of each, one thread), and the step took 0.61x the fp32 time (bench/results/draw_speed.json).
  - Intel Xeon with AVX512-BF16 and AVX512-FP16 but no AMX: bf16 GEMMs ran at 25-73 GFLOP/s against 62-120 in fp32,
    and the step took 1.34x the fp32 time (bench/results/draw_speed_intel.json).
  - Intel Xeon with AMX-BF16 (and AVX512-BF16/FP16): bf16 GEMMs ran at 59-882 GFLOP/s against 73-159 in fp32, and the
    step took 0.77x the fp32 time (bench/results/draw_speed_amx.json): the rule named AMX before a host with it was
    measured, and the measurement agrees.
- "fp32": no autocast.
- "bf16": autocast to bfloat16 on CPU or CUDA; no loss scaling needed (bf16 has fp32's exponent range).
- "fp16": autocast to float16 with a GradScaler (meant for CUDA; also runs on CPU for testing).
The model's forward runs inside `precision.autocast()`; losses are computed outside it in fp32 (see step.py).
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass

import torch

PRECISIONS = ("fp32", "bf16", "fp16")


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """/proc/cpuinfo's fields of the first CPU listed (empty where there is no such file), read once."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep:
                    fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo ("flags" on x86, "Features" on Arm); empty where there is none."""
    info = _cpuinfo()
    return frozenset((info.get("flags") or info.get("Features") or "").split())


def cpu_vendor() -> str:
    """The CPU's vendor_id from /proc/cpuinfo ("AuthenticAMD", "GenuineIntel", ...; "" where it cannot be read)."""
    return _cpuinfo().get("vendor_id", "")


def cpu_bf16() -> str:
    """How this CPU runs bfloat16: "native" (AVX512-BF16 or AMX-BF16 on x86, BF16 on Arm), "emulated" (oneDNN's bf16
    kernels on AVX-512 without them), or "none" (oneDNN has no bf16 kernels: AVX2 and older)."""
    if cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16"}:
        return "native"
    return "emulated" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "none"


def cpu_bf16_is_faster() -> bool:
    """Whether "auto" means bf16 on this CPU. A rule from measurements (the module docstring lists them), not a timing:
    a precision picked by timing could differ between two runs on one machine. bf16 needs native kernels, and on an
    Intel CPU also AMX: AVX512-BF16 alone made the GEMMs slower than fp32 there, while AMD's ran them twice as fast."""
    if cpu_bf16() != "native":
        return False
    return cpu_vendor() != "GenuineIntel" or "amx_bf16" in cpu_flags()


def resolve_precision(name: str, device: torch.device) -> str:
    """The precision "auto" stands for on `device` (see the module docstring); any other name is returned as it is."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_bf16_is_faster():
        return "bf16"
    return "fp32"


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


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """select_device for the inference commands (transcribe, sample, evaluate: one default, "auto", everywhere), with
    ValueError (a bad argument, exit status 2) instead of RuntimeError for a device this machine does not have."""
    if isinstance(name, torch.device):
        name = str(name)
    try:
        return select_device(name)
    except RuntimeError as e:
        raise ValueError(str(e)) from None


def default_threads() -> int:
    """Intra-op threads when none are asked for: the CPUs this process may run on that are idle (its affinity mask
    minus the 1-minute load average, rounded), at least 1. Threads beyond the idle CPUs wait for a core while the others
    wait for them: on a 2-core machine under a load of 8, one thread ran the speech model's forward pass 3.9x faster
    than two (/tmp measurement in the issue 17 report). On an idle machine this is every CPU the process may use, which
    unlike torch's own default respects taskset/cgroup affinity."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return max(1, min(cpus, round(cpus - load)))


def set_threads(n: int = 0) -> int:
    """torch.set_num_threads(n), or default_threads() for n = 0; returns the number set."""
    if n < 0:
        raise ValueError(f"--threads must be >= 0 (0: the default), got {n}")
    n = n or default_threads()
    torch.set_num_threads(n)
    return n


def inference_precision(name: str, device: torch.device) -> Precision:
    """The Precision to run inference in on `device`; ValueError for one the device cannot run: fp16 needs CUDA (CPU
    float16 kernels are slow or missing), bf16 needs a GPU that has it (Ampere or later) or a CPU."""
    p = Precision(name, device)
    if name == "fp16" and device.type != "cuda":
        raise ValueError(f"--precision fp16 needs a CUDA device, not {device.type} (use bf16 or fp32)")
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16 (use fp16 or fp32)")
    return p


@dataclass
class Precision:
    """Autocast and loss-scaling policy for one device. `name` may be "auto": it is resolved here, and `name` holds
    what it stands for on this device."""

    name: str
    device: torch.device

    def __post_init__(self):
        if self.name not in PRECISIONS + ("auto",):
            raise ValueError(f"unknown precision {self.name!r}: use auto or one of {PRECISIONS}")
        self.name = resolve_precision(self.name, self.device)
        if self.name == "bf16" and self.device.type == "mps":
            raise ValueError("bf16 autocast is not supported on MPS; use fp32 or fp16")
        if self.name == "bf16" and self.device.type == "cpu" and cpu_bf16() == "none":
            raise ValueError("bf16 on this CPU: oneDNN has no bfloat16 kernels for it (no AVX-512), so bf16 would be "
                             "emulated, several times slower than fp32, and the LSTM refuses it; use auto or fp32")

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
