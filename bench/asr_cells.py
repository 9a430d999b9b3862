"""What each recurrent cell of the acoustic model buys (--model.cell lstm | gru | lstm_peephole): dev CER and seconds
per training step, side by side, at the same number of steps on the same batches and (within 2%) the same number of
parameters.

Every cell trains the same BiRNN-CTC shape (layers, stack, no input projection); the lstm's hidden size is given and
the other cells' hidden sizes are chosen to match its parameter count (a GRU has 3 weight blocks to the LSTM's 4, so it
gets more units). Data: a seeded random subset of the synthetic corpus's training set and of its dev set, features
(log-mel, global CMVN from the subset) computed once up front, so a step is the model's work alone: forward, CTC,
backward, clipping, AdamW with warm-up and cosine decay. The cells take their steps interleaved, batch by batch, so
machine noise hits them alike; s/step is the median. Dev CER/WER: greedy decoding after the last step.

    python bench/asr_cells.py                                    # the default: ~10 min on one busy CPU core
    python bench/asr_cells.py --steps 600 --train-utts 2000 --hidden 192 --layers 3
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: no spinning against other processes

import argparse  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import parse_bench_args, write_record  # noqa: E402

from speechdraw.asr.audio import load_audio  # noqa: E402
from speechdraw.asr.data import durations, filter_alignable  # noqa: E402
from speechdraw.asr.decode import greedy_decode  # noqa: E402
from speechdraw.asr.features import FeatureConfig, FeatureExtractor, compute_stats, pad_waves  # noqa: E402
from speechdraw.asr.manifest import ManifestEntry, read_manifest  # noqa: E402
from speechdraw.asr.metrics import ErrorRates  # noqa: E402
from speechdraw.asr.model import (  # noqa: E402
    CELLS,
    AcousticModel,
    AcousticModelConfig,
    ctc_loss_sum,
    to_output_ids,
)
from speechdraw.asr.text import TokenSet  # noqa: E402
from speechdraw.engine.device import Precision  # noqa: E402
from speechdraw.engine.sampler import BucketBatchSampler, eval_batches  # noqa: E402
from speechdraw.engine.schedule import warmup_decay  # noqa: E402
from speechdraw.engine.step import TrainStep  # noqa: E402

SYNTH = Path.home() / "speechdraw-runs" / "data" / "synth"


def matched_hidden(cfg: AcousticModelConfig, target: int) -> int:
    """The hidden size whose model has the parameter count closest to `target`."""
    def params(h: int) -> int:
        return AcousticModel(replace(cfg, hidden=h)).num_params()
    return min(range(max(1, cfg.hidden // 2), 2 * cfg.hidden + 1), key=lambda h: abs(params(h) - target))


@torch.no_grad()
def features(entries: list[ManifestEntry], frontend: FeatureExtractor) -> list[torch.Tensor]:
    """Each utterance's normalised log-mel frames, (T_i, n_mels)."""
    out = []
    for i in range(0, len(entries), 32):
        feats, lens = frontend(*pad_waves([load_audio(e.audio) for e in entries[i:i + 32]]))
        out += [f[:n].clone() for f, n in zip(feats, lens.tolist())]
    return out


def batch(feats: list[torch.Tensor], targets: list[list[int]], idx: list[int]):
    """(B, T, n_mels), (B,), (B, U) output ids, (B,) for the utterances `idx`."""
    x = nn.utils.rnn.pad_sequence([feats[i] for i in idx], batch_first=True)
    ys = [torch.tensor(targets[i]) for i in idx]
    return (x, torch.tensor([len(feats[i]) for i in idx]), nn.utils.rnn.pad_sequence(ys, batch_first=True),
            torch.tensor([len(y) for y in ys]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(SYNTH), help=f"synthetic corpus directory (default: {SYNTH})")
    ap.add_argument("--cells", default=",".join(CELLS), help=f"cells to compare (default: {','.join(CELLS)})")
    ap.add_argument("--hidden", type=int, default=96, help="the lstm's units per direction; the other cells get "
                    "the parameter count this gives (default: 96)")
    ap.add_argument("--layers", type=int, default=2, help="bidirectional layers (default: 2)")
    ap.add_argument("--stack", type=int, default=3, help="frames per model step (default: 3, the cpu preset)")
    ap.add_argument("--steps", type=int, default=600, help="training steps per cell (default: 600)")
    ap.add_argument("--batch-seconds", type=float, default=24.0, help="padded seconds of audio per batch "
                    "(default: 24)")
    ap.add_argument("--train-utts", type=int, default=1000, help="random training utterances (default: 1000)")
    ap.add_argument("--dev-utts", type=int, default=150, help="random dev utterances (default: 150)")
    ap.add_argument("--max-duration", type=float, default=6.0, help="leave out training utterances longer than "
                    "this, in seconds (default: 6)")
    ap.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default: 3e-3)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="training autocast (default: "
                    "fp32; bf16 measured no faster on this CPU, bench/results/asr_train_speed.json)")
    ap.add_argument("--seed", type=int, default=0, help="subsets, batches, initial weights (default: 0)")
    args = parse_bench_args(ap)
    cells = args.cells.split(",")
    if not cells or any(c not in CELLS for c in cells):
        ap.error(f"--cells: choose from {','.join(CELLS)}, got {args.cells!r}")

    tokens = TokenSet.characters()
    fcfg = FeatureConfig()
    base = AcousticModelConfig(hidden=args.hidden, layers=args.layers, stack=args.stack, dropout=0.0,
                               vocab_size=len(tokens) + 1)
    rng = random.Random(args.seed)
    train = read_manifest(Path(args.corpus) / "train.jsonl")
    train, _ = filter_alignable(rng.sample(train, min(args.train_utts, len(train))), tokens, fcfg, base,
                                max_duration=args.max_duration)
    dev = read_manifest(Path(args.corpus) / "dev.jsonl")
    dev = rng.sample(dev, min(args.dev_utts, len(dev)))
    t0 = time.perf_counter()
    stats = compute_stats([load_audio(e.audio) for e in train[:200]], fcfg)
    frontend = FeatureExtractor(fcfg, stats)
    train_feats, dev_feats = features(train, frontend), features(dev, frontend)
    train_targets = [to_output_ids(tokens.encode(e.text)) for e in train]
    print(f"{len(train)} training utterances ({sum(durations(train)) / 3600:.2f} h), {len(dev)} dev; features in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)

    sampler = BucketBatchSampler(durations(train), max_total=args.batch_seconds, num_buckets=10, seed=args.seed)
    batches, epoch = [], 0
    while len(batches) < args.steps:
        batches += sampler.global_batches(epoch)
        epoch += 1
    batches = batches[:args.steps]

    target = AcousticModel(base).num_params()
    models, steps, times, losses = {}, {}, {c: [] for c in cells}, {c: [] for c in cells}
    precision = Precision(args.precision, torch.device("cpu"))
    for cell in cells:
        cfg = replace(base, cell=cell)
        cfg = replace(cfg, hidden=matched_hidden(cfg, target))
        torch.manual_seed(args.seed)
        models[cell] = AcousticModel(cfg)
        optimizer = torch.optim.AdamW(models[cell].parameters(), lr=args.lr, weight_decay=0.0)
        steps[cell] = TrainStep(models[cell], optimizer, precision, forward=lambda m, b: m(b[0], b[1]),
                                loss_fn=lambda out, b: ctc_loss_sum(out[0], out[1], b[2], b[3]), clip_norm=5.0,
                                scheduler=warmup_decay(optimizer, warmup_steps=min(30, args.steps // 5),
                                                       total_steps=args.steps))
        assert abs(models[cell].num_params() / target - 1) < 0.02, (cell, models[cell].num_params(), target)

    for i, idx in enumerate(batches):
        b = batch(train_feats, train_targets, idx)
        for cell in cells:
            start = time.perf_counter()
            losses[cell].append(steps[cell]([b], [float(b[3].sum())]).loss)
            times[cell].append(time.perf_counter() - start)
        if (i + 1) % 25 == 0:
            print(f"step {i + 1}/{args.steps}: " + ", ".join(
                f"{c} loss {statistics.mean(losses[c][-25:]):.3f} {statistics.median(times[c][-25:]):.3f} s/step"
                for c in cells), flush=True)

    figures = {"corpus": str(args.corpus), "train_utterances": len(train),
               "train_hours": round(sum(durations(train)) / 3600, 3), "dev_utterances": len(dev),
               "steps": args.steps, "batch_padded_seconds": args.batch_seconds, "precision": args.precision,
               "layers": args.layers, "stack": args.stack, "torch_threads": torch.get_num_threads(), "cells": {}}
    for cell in cells:
        model = models[cell].eval()
        rates = ErrorRates.empty()
        with torch.no_grad(), precision.autocast():
            for idx in eval_batches([len(f) for f in dev_feats], max_total=6000):
                x, lens = nn.utils.rnn.pad_sequence([dev_feats[i] for i in idx], batch_first=True), torch.tensor(
                    [len(dev_feats[i]) for i in idx])
                for i, hyp in zip(idx, greedy_decode(*model(x, lens), tokens)):
                    rates.add(dev[i].text, hyp.text)
        figures["cells"][cell] = {
            "hidden": model.cfg.hidden, "params": model.num_params(), "dev_cer": round(rates.cer, 4),
            "dev_wer": round(rates.wer, 4), "train_loss_last_25": round(statistics.mean(losses[cell][-25:]), 4),
            "median_s_per_step": round(statistics.median(times[cell]), 4),
            "s_per_step_vs_lstm": None}
    if "lstm" in cells:
        for cell in cells:
            figures["cells"][cell]["s_per_step_vs_lstm"] = round(
                figures["cells"][cell]["median_s_per_step"] / figures["cells"]["lstm"]["median_s_per_step"], 2)
    print(f"{'cell':<14} {'hidden':>6} {'params':>8} {'dev CER':>8} {'dev WER':>8} {'s/step':>7} {'x lstm':>7}")
    for cell, r in figures["cells"].items():
        print(f"{cell:<14} {r['hidden']:>6} {r['params']:>8} {100 * r['dev_cer']:>7.2f}% {100 * r['dev_wer']:>7.2f}% "
              f"{r['median_s_per_step']:>7.3f} {r['s_per_step_vs_lstm'] or '':>7}")
    write_record("asr_cells", figures, allow_dirty=args.allow_dirty,
                 title="ASR recurrent cells at equal steps and parameters (lstm, gru, lstm_peephole)", notes=(
        "Each cell trained the same batches for the same number of steps from a seeded random subset of the "
        "synthetic corpus, parameters matched to the lstm's within 2% by the hidden size; greedy CER/WER on a seeded "
        "random dev subset. A short run of a small model: the CER figures compare the cells early in training, not "
        "at convergence. s/step = median wall time of one training step on precomputed features, steps "
        "interleaved cell by cell; one thread, on a machine with other work running."))


if __name__ == "__main__":
    main()
