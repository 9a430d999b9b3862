"""Engine step overhead and fp32 vs bf16 autocast step time for an LSTM on this CPU.

Three training steps on the same model shape and batch, interleaved repetition by repetition so machine noise hits
all of them alike (medians reported):
  hand   a hand-written loop: zero_grad, forward, summed loss / frames, backward, clip, AdamW step
  engine the engine's TrainStep doing the same work in fp32 (all-reduce helpers, finite checks, bookkeeping)
  bf16   the engine's TrainStep with bf16 autocast

    python bench/engine_step.py                      # default: 2-layer LSTM 256, batch 16 x 200 frames x 80 dims
    python bench/engine_step.py --reps 30 --hidden 512
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import parse_bench_args, write_record  # noqa: E402

from speechdraw.engine.device import Precision, cpu_bf16  # noqa: E402
from speechdraw.engine.step import TrainStep  # noqa: E402


class LSTMTagger(nn.Module):
    def __init__(self, dim, hidden, layers, classes):
        super().__init__()
        self.lstm = nn.LSTM(dim, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x):  # (B, T, dim) -> (B, T, classes)
        return self.out(self.lstm(x)[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16, help="sequences per batch (default: 16)")
    ap.add_argument("--frames", type=int, default=200, help="frames per sequence (default: 200)")
    ap.add_argument("--dim", type=int, default=80, help="input features (default: 80)")
    ap.add_argument("--hidden", type=int, default=256, help="LSTM units (default: 256)")
    ap.add_argument("--layers", type=int, default=2, help="LSTM layers (default: 2)")
    ap.add_argument("--reps", type=int, default=15, help="timed repetitions of each variant (default: 15)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed repetitions first (default: 3)")
    args = parse_bench_args(ap)

    torch.manual_seed(0)
    classes = 32
    x = torch.randn(args.batch, args.frames, args.dim)
    y = torch.randint(0, classes, (args.batch, args.frames))
    frames = y.numel()
    cpu = torch.device("cpu")

    def loss_fn(logits, batch):
        return F.cross_entropy(logits.reshape(-1, classes), batch[1].reshape(-1), reduction="sum")

    def make():
        model = LSTMTagger(args.dim, args.hidden, args.layers, classes)
        return model, torch.optim.AdamW(model.parameters(), lr=1e-4)

    hand_model, hand_opt = make()

    def hand_step():
        hand_opt.zero_grad(set_to_none=True)
        loss = loss_fn(hand_model(x).float(), (x, y)) / frames
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hand_model.parameters(), 1.0)
        hand_opt.step()
        return float(loss.detach())

    steps = {"hand": hand_step}
    bf16 = cpu_bf16() != "none"  # oneDNN's LSTM has no bf16 kernel without AVX-512 (speechdraw/engine/device.py)
    for name, precision in (("engine_fp32", "fp32"), ("engine_bf16", "bf16"))[:2 if bf16 else 1]:
        model, opt = make()
        ts = TrainStep(model, opt, Precision(precision, cpu), forward=lambda m, b: m(b[0]), loss_fn=loss_fn,
                       clip_norm=1.0)
        steps[name] = (lambda ts=ts: ts([(x, y)], [frames]).loss)

    times = {k: [] for k in steps}
    for rep in range(args.warmup + args.reps):
        for name, fn in steps.items():
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            if rep >= args.warmup:
                times[name].append(dt)
    med = {k: statistics.median(v) for k, v in times.items()}
    figures = {
        "shape": f"LSTM {args.layers}x{args.hidden}, batch {args.batch} x {args.frames} frames x {args.dim} dims",
        "torch_threads": torch.get_num_threads(),
        "reps": args.reps,
        "hand_s_per_step": round(med["hand"], 4),
        "engine_fp32_s_per_step": round(med["engine_fp32"], 4),
        "engine_bf16_s_per_step": round(med["engine_bf16"], 4) if bf16 else None,
        "engine_overhead_ratio": round(med["engine_fp32"] / med["hand"], 3),
        "bf16_speedup_vs_fp32": round(med["engine_fp32"] / med["engine_bf16"], 3) if bf16 else None,
        "cpu_bf16": cpu_bf16(),  # none: bf16 not measured, this CPU has no bf16 kernels
        "hand_min_max_s": [round(min(times["hand"]), 4), round(max(times["hand"]), 4)],
        "engine_fp32_min_max_s": [round(min(times["engine_fp32"]), 4), round(max(times["engine_fp32"]), 4)],
    }
    write_record("engine_step", figures, allow_dirty=args.allow_dirty,
                 title="Engine step overhead; fp32 vs bf16 autocast (LSTM, CPU)",
                 notes="engine_overhead_ratio = engine fp32 / hand-written loop (1.0 = no overhead); "
                       "bf16_speedup_vs_fp32 > 1 means bf16 autocast is faster.")


if __name__ == "__main__":
    main()
