"""Distributed data parallel under `torchrun`: rank setup, collectives that degrade to no-ops in one process.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; we use gloo on CPU and nccl on CUDA. Everything here also works in a
plain single process (world size 1) without initialising a process group, so recipes call these unconditionally.

A rank that dies or hangs must not leave the others waiting forever: a rank that dies closes its connections, and the
others' next collective fails at once (gloo: "Connection closed by peer"); torchrun then stops the whole job. A rank
that hangs is caught by the process group's timeout (`--train.dist_timeout` minutes): the others' collective raises,
and torchrun stops the job. `fault_point` lets tests kill or freeze one rank at a chosen step
(SPEECHDRAW_FAULT=crash:RANK:STEP or hang:RANK:STEP).
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs and writes files."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def dist_info_from_env() -> DistInfo:
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
    )


def init_distributed(device: torch.device, info: DistInfo | None = None, *,
                     timeout_minutes: float = 10.0) -> DistInfo:
    """Initialise the default process group when launched by torchrun with more than one process; every collective
    raises after waiting `timeout_minutes` for a rank that does not arrive."""
    info = info or dist_info_from_env()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if backend == "nccl" else {}
        dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size,
                                timeout=datetime.timedelta(minutes=timeout_minutes), **kwargs)
    return info


def fault_point(step: int) -> None:
    """For tests: SPEECHDRAW_FAULT=crash:RANK:STEP ends rank RANK abruptly after optimiser step STEP (no clean-up, as
    an out-of-memory kill would); hang:RANK:STEP freezes it there. Does nothing otherwise."""
    kind, _, where = os.environ.get("SPEECHDRAW_FAULT", "").partition(":")
    if kind not in ("crash", "hang") or where != f"{dist_info_from_env().rank}:{step}":
        return
    verb = {"crash": "crashes", "hang": "hangs"}[kind]
    print(f"SPEECHDRAW_FAULT: rank {where.split(':')[0]} {verb} after step {step}", file=sys.stderr, flush=True)
    if kind == "crash":
        os._exit(3)
    while True:
        time.sleep(60)


def cleanup() -> None:
    """End the process group at the end of a run. Every rank first waits at a barrier, so that no rank tears its
    group down while rank 0 is still writing the release after the last collective (synchronising before
    destroy_process_group, as torch's shutdown notes advise). Once in CI a rank 1 that got there first aborted at
    its exit ("terminate called without an active exception"); 12 stressed repeats here did not reproduce it."""
    if dist.is_initialized():
        if _active():
            dist.barrier()
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _comm_device() -> torch.device:
    # nccl reduces CUDA tensors only; gloo reduces CPU tensors.
    if _active() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce(values: torch.Tensor | list[float] | float, op: str = "sum") -> torch.Tensor:
    """All-reduce a tensor or list of numbers (float64 on the communication device); returns it on the input device."""
    t = torch.as_tensor(values, dtype=torch.float64)
    src_device = t.device
    if not _active():
        return t.clone()
    t = t.to(_comm_device())
    dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op])
    return t.to(src_device)


def all_gather_object(obj) -> list:
    """Every rank's `obj`, in rank order (a one-element list in a single process)."""
    if not _active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, src: int = 0):
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if _active():
        dist.barrier()
