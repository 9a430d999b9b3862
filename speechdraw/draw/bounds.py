"""Bounds on a data set's negative log-likelihood, in nats per image: what DRAW is measured by.

- `elbo_bound`: the negative ELBO (reconstruction NLL + analytic KL of every z_t), one latent sequence per image, the
  paper's "test NLL bound". The noise comes from a private generator seeded with `seed`, so the figure for given
  weights is reproducible and validations of successive epochs use common random numbers.
- `iwae_bound`: -log (1/K sum_k w_k) with K whole sequences z_1..T per image (Burda et al. 2016), never looser in
  expectation than the negative ELBO. It uses the global RNG (Draw.log_weights); seed it first for a fixed figure.

Both shard images over ranks when given rank/world_size and all-reduce their sums, so every image counts once.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from speechdraw.draw.data import ImageSet
from speechdraw.draw.model import Draw
from speechdraw.engine import distributed


def _labels(data: ImageSet, idx: Tensor, model: Draw, device) -> Tensor | None:
    if model.cfg.num_classes == 0:
        return None
    if data.labels is None:
        raise ValueError("this DRAW model is class-conditional, but the images have no labels")
    return data.labels[idx].to(device)


@torch.no_grad()
def elbo_bound(model: Draw, data: ImageSet, *, batch_size: int = 500, seed: int = 0, device=None,
               max_images: int = 0, rank: int = 0, world_size: int = 1) -> dict:
    """Mean negative ELBO of data (first max_images, 0: all): {"bound", "recon", "kl", "bits_per_dim", "images",
    "bound_stderr"}, nats per image (bits_per_dim per pixel and channel)."""
    model.eval()
    device = device or model.canvas0.device
    cfg = model.cfg
    n = min(len(data), max_images) if max_images else len(data)
    g = torch.Generator().manual_seed(seed + rank)
    mine = torch.arange(rank, n, world_size)
    sums = torch.zeros(5, dtype=torch.float64)  # bound, bound^2, recon, kl, images
    for s in range(0, len(mine), batch_size):
        idx = mine[s:s + batch_size]
        x = data.images[idx].to(device)
        eps = torch.randn(cfg.steps, len(idx), cfg.z_size, generator=g).to(device)  # (T, B, Z)
        out = model(x, _labels(data, idx, model, device), eps=eps)
        bound = out.nll_bound.double().cpu()
        sums += torch.stack((bound.sum(), bound.square().sum(), out.recon.double().sum().cpu(),
                             out.kl.double().sum().cpu(), torch.tensor(float(len(idx)), dtype=torch.float64)))
    total, total_sq, recon, kl, count = distributed.all_reduce(sums).tolist()
    mean = total / count
    var = max(total_sq / count - mean * mean, 0.0)
    return {"bound": mean, "recon": recon / count, "kl": kl / count,
            "bits_per_dim": mean / (cfg.num_dims * math.log(2)), "images": int(count),
            "bound_stderr": math.sqrt(var / max(count - 1, 1))}


@torch.no_grad()
def iwae_bound(model: Draw, data: ImageSet, *, k: int = 100, num_images: int = 2000, batch_size: int = 2000,
               device=None, rank: int = 0, world_size: int = 1) -> dict:
    """Importance-weighted bound with k samples on the first num_images images: {"bound", "k", "images",
    "bound_stderr"}, nats per image. batch_size counts image x sample rows per forward pass."""
    model.eval()
    device = device or model.canvas0.device
    n = min(len(data), num_images)
    mine = torch.arange(rank, n, world_size)
    per = max(1, batch_size // k)
    sums = torch.zeros(3, dtype=torch.float64)  # bound, bound^2, images
    for s in range(0, len(mine), per):
        idx = mine[s:s + per]
        x = data.images[idx].to(device)
        b = model.iwae_bound(x, k=k, labels=_labels(data, idx, model, device), max_batch=batch_size).double().cpu()
        sums += torch.stack((b.sum(), b.square().sum(), torch.tensor(float(len(idx)), dtype=torch.float64)))
    total, total_sq, count = distributed.all_reduce(sums).tolist()
    mean = total / count
    var = max(total_sq / count - mean * mean, 0.0)
    return {"bound": mean, "k": k, "images": int(count), "bound_stderr": math.sqrt(var / max(count - 1, 1))}
