"""DRAW bf16 parity: the paper preset's first training step under --train.precision bf16 against fp32, one record.

    python bench/draw_bf16_parity.py --threads 1                 # paper preset (attention), batch 100
    python bench/draw_bf16_parity.py --threads 1 --no-attention  # paper_noattn

One freshly initialised paper-preset model (seeded, canvas c_0 from the training images' mean as the recipe does), one
batch of 100 training images of the Larochelle & Murray binarisation (drawn with a seeded generator), one noise
sequence; the loss (negative ELBO, nats per image) and every parameter's gradient are computed once in fp32 and once
under the engine's bf16 autocast (speechdraw.engine.device.Precision: GEMM operands in bf16, fp32 accumulation; LSTM
cell states, attention and the canvas stay fp32). The record gives the loss difference and, per parameter, the relative
gradient error |g_bf16 - g_fp32| / |g_fp32| (L2 norms): the largest, the median, and that of all gradients together.
No training: a few seconds on one thread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import parse_bench_args, write_record  # noqa: E402

from speechdraw.draw.model import Draw, DrawConfig  # noqa: E402
from speechdraw.engine.device import Precision  # noqa: E402

NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "binarized_mnist" / "binarized_mnist.npz"


def loss_and_grads(model: Draw, x: torch.Tensor, eps: torch.Tensor, precision: Precision):
    """Mean negative ELBO of the batch and {name: gradient} after one backward pass."""
    model.zero_grad(set_to_none=True)
    with precision.autocast():
        out = model(x, eps=eps)
    loss = out.nll_bound.float().mean()  # the loss is taken outside autocast, in fp32, as engine/step.py does
    loss.backward()
    return loss.item(), {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(NPZ), help=f"binarized_mnist.npz (default: {NPZ})")
    ap.add_argument("--batch", type=int, default=100, help="images in the batch (default: 100, the preset's)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the weights, batch and noise (default: 0)")
    ap.add_argument("--no-attention", action="store_true", help="the paper_noattn preset instead")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    ap.add_argument("--name", default="draw_bf16_parity", help="record name (default: draw_bf16_parity)")
    args = parse_bench_args(ap, argv)
    torch.set_num_threads(args.threads)
    with np.load(args.data) as d:
        train = torch.from_numpy(d["X_train"]).float().view(-1, 1, 28, 28)  # (50000, 1, 28, 28)
    cfg = DrawConfig(height=28, width=28, channels=1, steps=64, enc_size=256, dec_size=256, z_size=100,
                     attention=not args.no_attention, read_n=2, write_n=5)  # recipes/draw/train.py's paper preset
    torch.manual_seed(args.seed)
    model = Draw(cfg)
    with torch.no_grad():
        model.init_canvas_from_data(train.mean(0))
    g = torch.Generator().manual_seed(args.seed)
    x = train[torch.randperm(len(train), generator=g)[:args.batch]]  # (B, 1, 28, 28)
    eps = torch.randn(cfg.steps, args.batch, cfg.z_size, generator=g)  # (T, B, Z)
    cpu = torch.device("cpu")
    loss32, g32 = loss_and_grads(model, x, eps, Precision("fp32", cpu))
    loss16, g16 = loss_and_grads(model, x, eps, Precision("bf16", cpu))
    assert g32.keys() == g16.keys()
    rel = {n: ((g16[n] - g32[n]).norm() / g32[n].norm().clamp_min(1e-30)).item() for n in g32}
    diff_all = torch.cat([(g16[n] - g32[n]).flatten() for n in g32]).norm()
    worst = max(rel, key=rel.get)
    figures = {
        "preset": "paper" if cfg.attention else "paper_noattn",
        "model": "LSTM 256/256, z 100, T 64, " + ("read 2 write 5" if cfg.attention else "no attention"),
        "data": str(args.data), "batch": args.batch, "seed": args.seed, "threads": args.threads,
        "loss_fp32_nats": round(loss32, 4), "loss_bf16_nats": round(loss16, 4),
        "loss_abs_diff_nats": round(abs(loss16 - loss32), 5), "loss_rel_diff": round(abs(loss16 / loss32 - 1), 6),
        "grad_rel_error_all": round((diff_all / torch.cat([v.flatten() for v in g32.values()]).norm()).item(), 5),
        "grad_rel_error_max": round(rel[worst], 5), "grad_rel_error_max_param": worst,
        "grad_rel_error_median": round(statistics.median(rel.values()), 5),
        "grad_rel_error_by_param": {n: round(v, 5) for n, v in rel.items()},
    }
    write_record(args.name, figures, allow_dirty=args.allow_dirty,
                 title="DRAW bf16 parity: the paper preset's first step, bf16 autocast vs fp32",
                 notes="One forward + backward of a freshly initialised model on one batch, same weights, data and "
                       "noise; relative gradient error = L2 norm of (bf16 - fp32) over L2 norm of fp32, per parameter "
                       "and over all gradients together. No optimiser step, no training.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
