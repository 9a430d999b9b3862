"""Bounds on a data set's negative log-likelihood, in nats per image: what DRAW is measured by.

- `elbo_bound`: the negative ELBO (reconstruction NLL + analytic KL of every z_t), one latent sequence per image, the
  paper's "test NLL bound". The noise comes from a private generator seeded with `seed`, so the figure for given
  weights is reproducible and validations of successive epochs use common random numbers.
- `iwae_bound`: -log (1/K sum_k w_k) with K whole sequences z_1..T per image (Burda et al. 2016), never looser in
  expectation than the negative ELBO. It uses the global RNG (Draw.log_weights); seed it first for a fixed figure.

Both score the whole data set by default. A smaller figure (max_images / num_images) is taken on
`evaluation_subset`: images drawn at random with a seeded generator, never "the first N" (the Larochelle binarised
MNIST test set is sorted by class, so its first 2,000 images are zeros and ones). Every result carries the rule in
"subset", for the JSON record. Both shard the chosen images over ranks when given rank/world_size and all-reduce their
sums, so every image counts once.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
from torch import Tensor

from speechdraw.draw.data import ImageSet
from speechdraw.draw.model import Draw
from speechdraw.engine import distributed


def evaluation_subset(total: int, num: int = 0, seed: int = 0) -> tuple[Tensor, dict]:
    """Which of `total` images to score: all (num 0 or >= total), else `num` of them drawn uniformly without
    replacement by numpy's default_rng(seed), in increasing order. -> (indices (n,) int64, the rule as a dict for a
    JSON record: rule, images, of, and for a sample its seed and the SHA-256 of the indices as little-endian int64)."""
    if num <= 0 or num >= total:
        return torch.arange(total), {"rule": "all", "images": total, "of": total}
    idx = np.sort(np.random.default_rng(seed).choice(total, size=num, replace=False)).astype("<i8")  # (num,)
    return torch.from_numpy(idx), {"rule": "random: numpy default_rng(seed).choice(of, images, replace=False), sorted",
                                   "seed": seed, "images": num, "of": total,
                                   "indices_sha256": hashlib.sha256(idx.tobytes()).hexdigest()}


def _labels(data: ImageSet, idx: Tensor, model: Draw, device) -> Tensor | None:
    if model.cfg.num_classes == 0:
        return None
    if data.labels is None:
        raise ValueError("this DRAW model is class-conditional, but the images have no labels")
    return data.labels[idx].to(device)


@torch.no_grad()
def elbo_bound(model: Draw, data: ImageSet, *, batch_size: int = 500, seed: int = 0, device=None,
               max_images: int = 0, subset_seed: int = 0, rank: int = 0, world_size: int = 1) -> dict:
    """Mean negative ELBO of data (all images, or a random max_images of them chosen by evaluation_subset with
    subset_seed): {"bound", "recon", "kl", "bits_per_dim", "images", "bound_stderr", "subset"}, nats per image
    (bits_per_dim per pixel and channel)."""
    model.eval()
    device = device or model.canvas0.device
    cfg = model.cfg
    chosen, subset = evaluation_subset(len(data), max_images, subset_seed)
    g = torch.Generator().manual_seed(seed + rank)
    mine = chosen[rank::world_size]
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
            "bound_stderr": math.sqrt(var / max(count - 1, 1)), "subset": subset}


@torch.no_grad()
def iwae_bound(model: Draw, data: ImageSet, *, k: int = 100, num_images: int = 0, subset_seed: int = 0,
               batch_size: int = 2000, device=None, rank: int = 0, world_size: int = 1) -> dict:
    """Importance-weighted bound with k samples on all images, or a random num_images of them chosen by
    evaluation_subset with subset_seed (the same images elbo_bound scores for max_images=num_images):
    {"bound", "k", "images", "bound_stderr", "subset"}, nats per image. batch_size counts image x sample rows per
    forward pass."""
    model.eval()
    device = device or model.canvas0.device
    chosen, subset = evaluation_subset(len(data), num_images, subset_seed)
    mine = chosen[rank::world_size]
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
    return {"bound": mean, "k": k, "images": int(count), "bound_stderr": math.sqrt(var / max(count - 1, 1)),
            "subset": subset}
