"""Seeds and determinism.

Each rank seeds with `seed + rank`, while the data order comes from the sampler, which is a pure function of
(seed, epoch, rank) and never touches these generators. A training batch's own randomness (SpecAugment masks, VTLP,
speed, dropout, DRAW's noise) is drawn under `seeded(batch_seed(seed, epoch, its items))`: a function of the batch,
not of the rank that trains it, so a W-rank run takes the same steps as one process with W-fold accumulation, and a
resumed run the same as an uninterrupted one whatever the world size.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
import torch


def seed_everything(seed: int, rank: int = 0) -> None:
    s = seed + rank
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)  # seeds CUDA generators too


def batch_seed(seed: int, epoch: int, items: Iterable[int]) -> int:
    """A batch's seed: a hash of (seed, epoch, its item indices), the same on every rank and in every world size."""
    key = f"{seed}:{epoch}:" + ",".join(str(int(i)) for i in items)
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") >> 1  # < 2**63


@contextmanager
def seeded(seed: int | None, device: torch.device | str | None = None) -> Iterator[None]:
    """Run the block with torch's generators seeded with `seed` (the CPU one, and `device`'s when it is a GPU), then
    put the previous states back. A no-op for seed None."""
    if seed is None:
        yield
        return
    device = torch.device(device) if device is not None else torch.device("cpu")
    cuda = device.type == "cuda"
    # device_type names the accelerator whose listed devices are forked (none here when the block runs on the CPU).
    # It must be a string: torch 2.11's fork_rng calls torch.device(None) otherwise (seen on a CUDA machine).
    with torch.random.fork_rng(devices=[device] if cuda else [], device_type="cuda"):
        torch.manual_seed(seed)
        yield


def set_deterministic(enabled: bool = True) -> None:
    """Deterministic kernels (slower); errors on operations that have no deterministic implementation."""
    if enabled:
        # cuBLAS needs a fixed workspace for reproducible reductions; must be set before the first cuBLAS call.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


def get_rng_state() -> dict:
    """This process's RNG states as plain tensors/lists, so the checkpoint loads with weights_only=True."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
