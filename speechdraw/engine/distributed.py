"""Distributed data parallel under `torchrun`: rank setup, collectives that degrade to no-ops in one process.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; we use gloo on CPU and nccl on CUDA. Everything here also works in a
plain single process (world size 1) without initialising a process group, so recipes call these unconditionally.
"""

from __future__ import annotations

import datetime
import os
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


def init_distributed(device: torch.device, info: DistInfo | None = None) -> DistInfo:
    """Initialise the default process group when launched by torchrun with more than one process."""
    info = info or dist_info_from_env()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if backend == "nccl" else {}
        dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size,
                                timeout=datetime.timedelta(minutes=30), **kwargs)
    return info


def cleanup() -> None:
    if dist.is_initialized():
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
