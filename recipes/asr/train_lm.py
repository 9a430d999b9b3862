"""Train an LSTM language model (words or characters) on normalised text, for N-best rescoring.

Same text as the n-gram models (dev/test sentences removed by the data builder); perplexity on dev text every epoch;
a release (kind "rnnlm": model.pt, config.json, vocab.txt) that speechdraw.asr.lm.rnnlm.load_rnnlm reads.

    python recipes/asr/train_lm.py --preset synth --train.run_dir ~/speechdraw-runs/rnnlm
    python recipes/asr/train_lm.py --preset synth --train.run_dir ~/speechdraw-runs/rnnlm --train.resume auto
    torchrun --nproc_per_node=2 recipes/asr/train_lm.py --preset synth --train.run_dir ~/speechdraw-runs/rnnlm-ddp

Loss: cross-entropy summed over predicted units (every unit and </s>), normalised by their number in the global batch.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from speechdraw.asr.lm.ngram import read_sentences
from speechdraw.asr.lm.rnnlm import LSTMLM, RNNLMConfig, Vocabulary, evaluate, loss_sum, make_batch
from speechdraw.engine import distributed
from speechdraw.engine.config import parse_config, to_dict
from speechdraw.engine.loop import epochs, total_steps, windows
from speechdraw.engine.release import save_release
from speechdraw.engine.run import TrainConfig, checkpoint_state, restore, save_checkpoint, setup_run
from speechdraw.engine.sampler import BucketBatchSampler
from speechdraw.engine.schedule import warmup_decay
from speechdraw.engine.step import TrainStep

SYNTH = "~/speechdraw-runs/data/synth"


@dataclass
class DataConfig:
    train_text: tuple[str, ...] = field(default=(), metadata={"help": "training text files or manifests (comma list)"})
    dev_text: tuple[str, ...] = field(default=(), metadata={"help": "dev text for perplexity (comma list)"})
    min_count: int = field(default=2, metadata={"help": "word units seen fewer times become <unk>"})
    max_vocab: int = field(default=0, metadata={"help": "keep at most this many units (0: no cap)"})
    max_sentences: int = field(default=0, metadata={"help": "use only the first N training sentences (0: all)"})
    batch_tokens: int = field(default=4000, metadata={"help": "padded units per batch per rank"})
    num_buckets: int = field(default=10, metadata={"help": "length buckets"})


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: RNNLMConfig = field(default_factory=RNNLMConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(run_dir="runs/rnnlm", epochs=5, lr=2e-3,
                                                                   warmup_steps=100, lr_decay="cosine",
                                                                   clip_norm=1.0, log_every=50))


PRESETS = {
    # Tests: a few seconds on a small text given with --data.train_text / --data.dev_text.
    "tiny": {"data": {"min_count": 1, "batch_tokens": 400}, "model": {"embed": 32, "hidden": 32, "layers": 1,
                                                                      "dropout": 0.0},
             "train": {"epochs": 3, "warmup_steps": 5, "log_every": 5, "lr": 1e-2}},
    # The synthetic-speech corpus's LM text (dev/test sentences removed): a 2-layer word LSTM with an adaptive
    # softmax; 270 steps an epoch, about 65 s an epoch on one CPU thread (10 epochs: about 11 minutes). Dev perplexity
    # 68.8, against 84.0 for one layer trained 4 epochs.
    "synth": {"data": {"train_text": [f"{SYNTH}/lm_train.txt"], "dev_text": [f"{SYNTH}/dev.jsonl"]},
              "model": {"embed": 256, "hidden": 256, "layers": 2, "dropout": 0.2, "tie_weights": False,
                        "adaptive_cutoffs": [1000, 3000]},
              "train": {"epochs": 10}},
}


def main(argv=None):
    cfg, _ = parse_config(Config, argv, presets=PRESETS, description=__doc__)
    if not cfg.data.train_text:
        raise SystemExit("give the training text with --data.train_text (or --preset synth)")
    train_sentences = read_sentences(os.path.expanduser(p) for p in cfg.data.train_text)
    if cfg.data.max_sentences:
        train_sentences = train_sentences[: cfg.data.max_sentences]
    dev_sentences = read_sentences(os.path.expanduser(p) for p in cfg.data.dev_text)
    vocab = Vocabulary.build(train_sentences, cfg.model.units, min_count=cfg.data.min_count,
                             max_size=cfg.data.max_vocab)
    cfg.model.vocab_size = len(vocab)  # resolved before the config is written into the run directory
    ctx = setup_run(cfg.train, cfg)
    tc = cfg.train
    if ctx.dist.is_main:
        vocab.save(ctx.run_dir / "vocab.txt")
    train_data = [s for s in (vocab.encode(x) for x in train_sentences) if s]
    ctx.print(f"{len(train_data)} training sentences, {sum(len(s) + 1 for s in train_data)} predicted units, "
              f"vocabulary {len(vocab)}")

    raw = LSTMLM(cfg.model)
    model = ctx.wrap(raw)
    optimizer = torch.optim.AdamW(raw.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sampler = BucketBatchSampler([len(s) + 1 for s in train_data], max_total=cfg.data.batch_tokens,
                                 num_buckets=cfg.data.num_buckets, seed=tc.seed, rank=ctx.dist.rank,
                                 world_size=ctx.dist.world_size)
    horizon = total_steps(sampler, tc.epochs, tc.accum_steps)  # every optimiser step of the configured epochs
    scheduler = warmup_decay(optimizer, warmup_steps=tc.warmup_steps, total_steps=horizon,
                             decay=tc.lr_decay)
    scaler = ctx.precision.make_scaler()
    train_step = TrainStep(model, optimizer, ctx.precision, forward=lambda m, b: m(b[0], b[1]),
                           loss_fn=lambda logp, b: loss_sum(logp, b[1]), scheduler=scheduler, scaler=scaler,
                           clip_norm=tc.clip_norm, max_consecutive_skips=tc.max_consecutive_skips,
                           world_size=ctx.dist.world_size)
    loop = restore(ctx, ctx.resume_state, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                   train_step=train_step) or {"step": 0, "epoch": 0, "batch": 0, "best": math.inf, "seconds": 0.0}
    log = ctx.logger()

    def dev_eval():
        # Every rank scores its share of the dev sentences; the totals are all-reduced.
        ev = evaluate(raw, vocab, dev_sentences[ctx.dist.rank :: ctx.dist.world_size], device=ctx.device)
        tot = distributed.all_reduce(torch.tensor([ev.sentences, ev.units, ev.oov, ev.log10prob, ev.log10prob_oov],
                                                  dtype=torch.float64)).tolist()
        n, units, oov, lp, lp_oov = tot
        return {"perplexity": 10 ** (-(lp + lp_oov) / max(units + n, 1)),  # every unit, rare ones as <unk>
                "perplexity_in_vocab": 10 ** (-lp / max(units - oov + n, 1)), "oov_rate": oov / max(units, 1)}

    def save(is_best=False):
        state = checkpoint_state(ctx, model=model, optimizer=optimizer, loop=loop, scheduler=scheduler,
                                 scaler=scaler, train_step=train_step, config=cfg)
        save_checkpoint(ctx, state, loop["step"], is_best=is_best)

    bar = log.progress(total=horizon, initial=loop["step"])
    t0 = time.time() - loop["seconds"]
    for epoch in epochs(loop, sampler, tc.epochs, max_steps=tc.max_steps):  # sampler set to the resume position
        loader = DataLoader(train_data, batch_sampler=sampler, collate_fn=make_batch, num_workers=tc.num_workers,
                            generator=torch.Generator().manual_seed(tc.seed + epoch))
        for window in windows(loader, loop, tc.accum_steps, max_steps=tc.max_steps):  # loop position advanced
            window = [(inputs.to(ctx.device), targets.to(ctx.device)) for inputs, targets in window]
            result = train_step(window, [int((t != -100).sum()) for _, t in window], step=loop["step"])
            bar.update(1)
            if loop["step"] % tc.log_every == 0:
                log.log(loop["step"], "train", epoch=loop["epoch"], loss=result.loss, lr=result.lr,
                        grad_norm=result.grad_norm, skipped=int(result.skipped))
            if tc.ckpt_every and loop["step"] % tc.ckpt_every == 0:
                loop["seconds"] = time.time() - t0
                save()
        loop["seconds"] = time.time() - t0
        if loop["batch"] < len(sampler):
            save()  # max_steps reached mid-epoch: remember the exact position
            break
        metrics = dev_eval() if dev_sentences else {}
        if metrics:
            log.log(loop["step"], "val", epoch=loop["epoch"], **metrics)
            ctx.print(f"epoch {loop['epoch']} step {loop['step']}: dev perplexity {metrics['perplexity']:.2f} "
                      f"({loop['seconds']:.0f}s)")
        is_best = not metrics or metrics["perplexity"] < loop["best"]  # no dev text: the newest is the best
        if metrics:
            loop["best"] = min(loop["best"], metrics["perplexity"])
        loop["epoch"], loop["batch"] = epoch + 1, 0
        save(is_best=is_best)
    bar.close()

    final = dev_eval() if dev_sentences else {}
    if ctx.dist.is_main:
        metrics = {"steps": loop["step"], "train_seconds": loop["seconds"], "vocab_size": len(vocab),
                   **{f"dev_{k}": v for k, v in final.items()}}
        save_release(ctx.run_dir / "release", raw.state_dict(), to_dict(cfg.model), kind="rnnlm", metrics=metrics,
                     copy_files={"vocab.txt": ctx.run_dir / "vocab.txt"})
        log.plot()
        dev = f", dev perplexity {final['perplexity']:.2f}" if final else ""
        ctx.print(f"done: step {loop['step']}, {loop['seconds']:.0f}s training{dev}; release {ctx.run_dir}/release")
    log.close()
    distributed.cleanup()
    return final


if __name__ == "__main__":
    main(sys.argv[1:])
