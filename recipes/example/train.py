"""The engine's example recipe: an LSTM tagger on a synthetic variable-length sequence task.

It exercises every part of the engine on a problem that needs memory (the label at each frame depends on a running sum
over the past), trains in about a minute on a CPU, and is what the engine's tests run in real processes.

Task: x_t ~ N(0, I_8); label_t = [sum_{s<=t} x_s[0] > 0] + 2 [x_t[1] > 0] (4 classes). Loss: cross-entropy summed over
frames and normalised by the number of frames in the global batch. Metric: frame accuracy on held-out sequences.

    python recipes/example/train.py --preset demo --train.run_dir ~/speechdraw-runs/example
    python recipes/example/train.py --preset demo --train.run_dir ~/speechdraw-runs/example --train.resume auto
    torchrun --nproc_per_node=2 recipes/example/train.py --preset demo --train.run_dir ~/speechdraw-runs/example-ddp
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.utils.data import DataLoader

from speechdraw.engine import distributed
from speechdraw.engine.config import parse_config, to_dict
from speechdraw.engine.ema import EMA
from speechdraw.engine.loop import epochs, total_steps, windows
from speechdraw.engine.release import save_release
from speechdraw.engine.run import TrainConfig, checkpoint_state, restore, save_checkpoint, setup_run
from speechdraw.engine.sampler import BucketBatchSampler, eval_batches
from speechdraw.engine.schedule import warmup_decay
from speechdraw.engine.step import TrainStep

# ----------------------------------------------------------------------------------------------------------- config


@dataclass
class DataConfig:
    train_items: int = field(default=2000, metadata={"help": "training sequences"})
    val_items: int = field(default=301, metadata={"help": "validation sequences"})
    min_len: int = field(default=4, metadata={"help": "shortest sequence"})
    max_len: int = field(default=40, metadata={"help": "longest sequence"})
    data_seed: int = field(default=1234, metadata={"help": "seed of the synthetic data (not of training)"})
    batch_size: int = field(default=32, metadata={"help": "sequences per batch per rank"})
    num_buckets: int = field(default=8, metadata={"help": "length buckets (1: unbucketed)"})
    sortagrad: bool = field(default=False, metadata={"help": "first epoch shortest-first"})


@dataclass
class ModelConfig:
    input_dim: int = 8
    hidden: int = field(default=64, metadata={"help": "LSTM units"})
    layers: int = field(default=1, metadata={"help": "LSTM layers"})
    dropout: float = field(default=0.1, metadata={"help": "dropout before the output layer"})
    classes: int = 4


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(run_dir="runs/example", epochs=4, lr=3e-3,
                                                                   warmup_steps=20, lr_decay="cosine"))


PRESETS = {
    # Tests: seconds.
    "tiny": {"data": {"train_items": 256, "val_items": 65, "batch_size": 16}, "model": {"hidden": 32},
             "train": {"epochs": 2, "log_every": 1}},
    # README demo: about a minute on 2 CPU cores, reaches > 95% frame accuracy.
    "demo": {"data": {"train_items": 4000}, "train": {"epochs": 6, "ckpt_every": 100}},
}

# ------------------------------------------------------------------------------------------------------------ data


def make_sequences(n: int, cfg: DataConfig, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    items = []
    for _ in range(n):
        length = int(torch.randint(cfg.min_len, cfg.max_len + 1, (1,), generator=g))
        x = torch.randn(length, 8, generator=g)
        y = (x[:, 0].cumsum(0) > 0).long() + 2 * (x[:, 1] > 0).long()
        items.append((x, y))
    return items


class Batch(NamedTuple):
    x: torch.Tensor  # (B, T, 8) padded with zeros
    lengths: torch.Tensor  # (B,) on CPU (pack_padded_sequence wants CPU lengths)
    y: torch.Tensor  # (B, T) padded with -100
    frames: int

    def to(self, device):
        return Batch(self.x.to(device), self.lengths, self.y.to(device), self.frames)


def collate(items) -> Batch:
    lengths = torch.tensor([len(x) for x, _ in items])
    x = nn.utils.rnn.pad_sequence([x for x, _ in items], batch_first=True)
    y = nn.utils.rnn.pad_sequence([y for _, y in items], batch_first=True, padding_value=-100)
    return Batch(x, lengths, y, int(lengths.sum()))


# ----------------------------------------------------------------------------------------------------------- model


class SeqTagger(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.lstm = nn.LSTM(cfg.input_dim, cfg.hidden, num_layers=cfg.layers, batch_first=True)
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.hidden, cfg.classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=x.shape[1])  # (B, T, H)
        return self.out(self.drop(h))  # (B, T, classes)


def forward(model, batch: Batch) -> torch.Tensor:
    return model(batch.x, batch.lengths)


def loss_fn(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    return F.cross_entropy(logits.transpose(1, 2), batch.y, ignore_index=-100, reduction="sum")


@torch.no_grad()
def evaluate(model: nn.Module, data, ctx) -> dict:
    """Frame accuracy and loss; every item is seen on exactly one rank, sums are all-reduced."""
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64)  # correct, loss, frames
    for idx in eval_batches([len(x) for x, _ in data], batch_size=64, rank=ctx.dist.rank,
                            world_size=ctx.dist.world_size):
        batch = collate([data[i] for i in idx]).to(ctx.device)
        with ctx.precision.autocast():
            logits = model(batch.x, batch.lengths)
        logits = logits.float()
        mask = batch.y != -100
        sums += torch.tensor([float((logits.argmax(-1) == batch.y)[mask].sum()), float(loss_fn(logits, batch)),
                              batch.frames], dtype=torch.float64)
    correct, loss, frames = distributed.all_reduce(sums).tolist()
    return {"accuracy": correct / frames, "loss": loss / frames, "frames": frames}


# ------------------------------------------------------------------------------------------------------------ main


def main(argv=None):
    cfg, _ = parse_config(Config, argv, presets=PRESETS, description=__doc__)
    ctx = setup_run(cfg.train, cfg)
    tc = cfg.train
    train_data = make_sequences(cfg.data.train_items, cfg.data, cfg.data.data_seed)
    val_data = make_sequences(cfg.data.val_items, cfg.data, cfg.data.data_seed + 1)

    raw = SeqTagger(cfg.model)
    model = ctx.wrap(raw)
    optimizer = torch.optim.AdamW(raw.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sampler = BucketBatchSampler([len(x) for x, _ in train_data], batch_size=cfg.data.batch_size,
                                 num_buckets=cfg.data.num_buckets, seed=tc.seed, rank=ctx.dist.rank,
                                 world_size=ctx.dist.world_size, sort_first_epoch=cfg.data.sortagrad)
    horizon = total_steps(sampler, tc.epochs, tc.accum_steps)  # every optimiser step of the configured epochs
    scheduler = warmup_decay(optimizer, warmup_steps=tc.warmup_steps, total_steps=horizon,
                             decay=tc.lr_decay)
    scaler = ctx.precision.make_scaler()
    ema = EMA(raw, tc.ema_decay) if tc.ema_decay else None
    train_step = TrainStep(model, optimizer, ctx.precision, forward=forward, loss_fn=loss_fn, scheduler=scheduler,
                           scaler=scaler, clip_norm=tc.clip_norm, max_consecutive_skips=tc.max_consecutive_skips,
                           ema=ema, ema_model=raw, world_size=ctx.dist.world_size)
    loop = restore(ctx, ctx.resume_state, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                   train_step=train_step, ema=ema) or {"step": 0, "epoch": 0, "batch": 0, "best": math.inf}
    log = ctx.logger()

    def save(is_best=False):
        state = checkpoint_state(ctx, model=model, optimizer=optimizer, loop=loop, scheduler=scheduler,
                                 scaler=scaler, train_step=train_step, ema=ema, config=cfg)
        save_checkpoint(ctx, state, loop["step"], is_best=is_best)

    bar = log.progress(total=horizon, initial=loop["step"])
    t0 = time.time()
    for epoch in epochs(loop, sampler, tc.epochs, max_steps=tc.max_steps):  # sampler set to the resume position
        # A private generator: creating the loader iterator must not draw from the global RNG (resume exactness).
        loader = DataLoader(train_data, batch_sampler=sampler, collate_fn=collate, num_workers=tc.num_workers,
                            generator=torch.Generator().manual_seed(tc.seed + epoch))
        for window in windows(loader, loop, tc.accum_steps, max_steps=tc.max_steps):  # loop position advanced
            window = [b.to(ctx.device) for b in window]
            result = train_step(window, [b.frames for b in window], step=loop["step"])
            bar.update(1)
            if loop["step"] % tc.log_every == 0:
                log.log(loop["step"], "train", epoch=loop["epoch"], loss=result.loss, lr=result.lr,
                        grad_norm=result.grad_norm, skipped=int(result.skipped), overflow=int(result.overflow))
            if tc.ckpt_every and loop["step"] % tc.ckpt_every == 0:
                save()
        if loop["batch"] < len(sampler):
            save()  # max_steps reached mid-epoch: remember the exact position
            break
        metrics = evaluate(raw, val_data, ctx)
        log.log(loop["step"], "val", epoch=loop["epoch"], **metrics)
        ctx.print(f"epoch {loop['epoch']} step {loop['step']}: val accuracy {metrics['accuracy']:.4f} "
                  f"loss {metrics['loss']:.4f} ({time.time() - t0:.1f}s)")
        is_best = metrics["loss"] < loop["best"]
        loop["best"] = min(loop["best"], metrics["loss"])
        loop["epoch"], loop["batch"] = epoch + 1, 0
        save(is_best=is_best)
    bar.close()

    final = evaluate(raw, val_data, ctx)
    if ema is not None:
        averaged = SeqTagger(cfg.model).to(ctx.device)
        averaged.load_state_dict(ema.averaged_state_dict(raw))
        final_ema = evaluate(averaged, val_data, ctx)
        ctx.print(f"EMA weights: val accuracy {final_ema['accuracy']:.4f}")
    if ctx.dist.is_main:
        weights = ema.averaged_state_dict(raw) if ema is not None else raw.state_dict()
        save_release(ctx.run_dir / "release", weights, to_dict(cfg.model), kind="example",
                     metrics={"val_accuracy": (final_ema if ema is not None else final)["accuracy"],
                              "steps": loop["step"]})
        log.plot()
        ctx.print(f"done: step {loop['step']}, val accuracy {final['accuracy']:.4f}, "
                  f"skipped steps {train_step.nonfinite_skips}, fp16 overflow skips {train_step.overflow_skips}; "
                  f"run directory {ctx.run_dir}")
    log.close()
    distributed.cleanup()
    return final


if __name__ == "__main__":
    main(sys.argv[1:])
