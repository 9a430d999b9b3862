"""Train the BiLSTM-CTC acoustic model on a speech manifest; validate with greedy CER/WER each epoch; write a release.

    # tiny (tests, README demo): a couple of minutes on a CPU
    python recipes/asr/train.py --preset tiny --data.train DIR/train.jsonl --data.dev DIR/dev.jsonl \\
        --train.run_dir ~/speechdraw-runs/asr-tiny
    # the quality preset for a 2-core CPU, on the synthetic corpus (about 90 minutes; resumable)
    python recipes/asr/train.py --preset cpu --train.run_dir ~/speechdraw-runs/asr-cpu
    python recipes/asr/train.py --preset cpu --train.run_dir ~/speechdraw-runs/asr-cpu --train.resume auto
    # several GPUs
    torchrun --nproc_per_node=4 recipes/asr/train.py --preset gpu --data.train ... --train.run_dir runs/asr-gpu

Per step: waveforms are loaded by the DataLoader and, in training, augmented there (augment.*: pitch shift, room
reverberation, noise, EQ, telephone / codec channels, gain, clipping, DC; each utterance's randomness a function of
(train.seed, epoch, index), so workers and resumed runs agree), speed-perturbed when features.speed_factors is set,
turned into log-mel features on the training device (VTLP-warped when features.vtlp_range > 0), normalised,
SpecAugmented, and fed to the model; the summed CTC loss (fp32, outside autocast) is normalised by the number of
target tokens in the
global batch. Utterances CTC cannot align are removed before training and counted.

At the end the run directory holds checkpoints/best.pt (lowest dev CER of the weights being released: the EMA average
when train.ema_decay > 0) and release/, the speech release exported from best.pt (see recipes/asr/export.py).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from torch.utils.data import DataLoader

from speechdraw.asr.augment import AugmentConfig, Augmenter
from speechdraw.asr.data import SpeechDataset, babble_pool, collate, durations, filter_alignable
from speechdraw.asr.decode import greedy_decode
from speechdraw.asr.features import (
    FeatureConfig,
    FeatureExtractor,
    FeatureStats,
    compute_stats,
    pad_waves,
    spec_augment,
    speed_perturb,
    vtlp_factors,
)
from speechdraw.asr.manifest import ManifestError, read_manifest
from speechdraw.asr.metrics import ErrorRates
from speechdraw.asr.model import AcousticModel, AcousticModelConfig, ctc_loss_sum, ctc_units
from speechdraw.asr.release import export_checkpoint
from speechdraw.asr.text import token_set
from speechdraw.engine import distributed
from speechdraw.engine.checkpoint import load_checkpoint
from speechdraw.engine.config import parse_config
from speechdraw.engine.ema import EMA
from speechdraw.engine.loop import epochs, total_steps, windows
from speechdraw.engine.run import TrainConfig, checkpoint_state, restore, save_checkpoint, setup_run
from speechdraw.engine.sampler import BucketBatchSampler, eval_batches
from speechdraw.engine.schedule import warmup_decay
from speechdraw.engine.seed import batch_seed, seeded
from speechdraw.engine.step import TrainStep

SYNTH = str(Path.home() / "speechdraw-runs" / "data" / "synth")

# ----------------------------------------------------------------------------------------------------------- config


@dataclass
class DataConfig:
    train: str = field(default=f"{SYNTH}/train.jsonl", metadata={"help": "training manifest"})
    dev: str = field(default=f"{SYNTH}/dev.jsonl", metadata={"help": "validation manifest"})
    tokens: str = field(default="chars", metadata={"help": "chars, phones, or a tokens.txt path"})
    max_seconds: float = field(default=120.0, metadata={"help": "padded seconds of audio per batch per rank"})
    num_buckets: int = field(default=20, metadata={"help": "duration buckets (1: unbucketed random batches)"})
    sortagrad: bool = field(default=True, metadata={"help": "first epoch shortest-first"})
    max_duration: float = field(default=30.0, metadata={"help": "drop training utterances longer than this (s)"})
    max_train_utts: int = field(default=0, metadata={"help": "use only the first N training utterances (0: all)"})
    max_dev_utts: int = field(default=0, metadata={"help": "validate on the first N dev utterances (0: all)"})
    stats_utts: int = field(default=500, metadata={"help": "training utterances the global CMVN stats come from"})


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: AcousticModelConfig = field(default_factory=AcousticModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        run_dir="runs/asr", epochs=20, lr=1.5e-3, weight_decay=0.01, warmup_steps=300, lr_decay="cosine",
        clip_norm=5.0, ema_decay=0.999, log_every=20))


# Waveform augmentation of the quality presets (issue 13): the model should survive rooms, noise, phones and codecs.
# Every utterance still has a fair chance of staying clean (the clean test set must not get worse).
AUGMENT = {"pitch_prob": 0.3, "reverb_prob": 0.4, "noise_prob": 0.5, "eq_prob": 0.3, "phone_prob": 0.1,
           "codec_prob": 0.1, "gain_prob": 0.5, "clip_prob": 0.05, "dc_prob": 0.1}

PRESETS = {
    # Tests and the README demo: a small model that fits a few dozen utterances in a couple of minutes.
    # (24 one-voice utterances: CER 0 by epoch ~50, under a minute on one core.)
    "tiny": {"model": {"hidden": 128, "layers": 2, "stack": 3, "dropout": 0.0},
             "features": {"freq_masks": 0, "time_masks": 0},
             "data": {"max_seconds": 10.0, "num_buckets": 2, "sortagrad": False, "stats_utts": 64},
             "train": {"epochs": 60, "lr": 4e-3, "warmup_steps": 30, "weight_decay": 0.0, "ema_decay": 0.0,
                       "log_every": 10, "precision": "fp32"}},
    # The quality preset for the 2-core CPU (see recipes/asr/README.md for how it was sized). 30 ms output frames:
    # at 40 ms, fast synthetic speech left 119 training utterances unalignable and deleted characters. Speed
    # perturbation and VTLP move pitch and formants: more voices to learn from for the held-out voice variants.
    "cpu": {"model": {"hidden": 256, "layers": 4, "stack": 3, "dropout": 0.15},
            "features": {"speed_factors": (0.9, 1.0, 1.1), "vtlp_range": 0.1},
            "data": {"max_seconds": 160.0, "max_dev_utts": 300},
            "augment": AUGMENT,
            # One DataLoader worker runs the augmentation on the second core while training runs on the first.
            "train": {"epochs": 20, "precision": "auto", "warmup_steps": 400, "ckpt_every": 100, "num_workers": 1}},
    # Real corpora on GPUs: wider and deeper, 30 ms frames.
    "gpu": {"model": {"hidden": 320, "layers": 5, "stack": 3, "dropout": 0.2},
            "data": {"max_seconds": 600.0, "max_duration": 35.0},
            "augment": AUGMENT,
            "train": {"epochs": 40, "precision": "auto", "lr": 1e-3, "warmup_steps": 1500, "ckpt_every": 1000,
                      "num_workers": 4}},
}

# ------------------------------------------------------------------------------------------------------------ steps


class FeatureBatch(NamedTuple):
    feats: torch.Tensor  # (B, T, n_mels) normalised, augmented, on the device
    feat_lens: torch.Tensor  # (B,)
    targets: torch.Tensor  # (B, U) output ids
    target_lens: torch.Tensor  # (B,)
    indices: tuple[int, ...]
    seconds: float  # real audio in the batch
    seed: int | None = None  # training: the batch's own seed (engine/seed.py), for SpecAugment, VTLP, speed, dropout


def make_features(frontend: FeatureExtractor, batch, cfg: FeatureConfig, device, *, train: bool,
                  seed: int | None = None) -> FeatureBatch:
    with seeded(seed, device):  # the same masks and factors whichever rank trains this batch
        return _make_features(frontend, batch.to(device), cfg, device, train=train)._replace(seed=seed)


def _make_features(frontend: FeatureExtractor, batch, cfg: FeatureConfig, device, *, train: bool) -> FeatureBatch:
    waves, wave_lens = batch.waves, batch.wave_lens
    if train and cfg.speed_factors:
        cut = [w[:n] for w, n in zip(waves, wave_lens.tolist())]
        waves, wave_lens = pad_waves(speed_perturb(cut, cfg.speed_factors, cfg.sample_rate))
        waves, wave_lens = waves.to(device), wave_lens.to(device)
    warp = vtlp_factors(cfg, len(wave_lens)) if train else None  # (B,) or None when VTLP is off
    with torch.no_grad():
        feats, lens = frontend(waves, wave_lens, warp=warp)
    if train:
        feats = spec_augment(feats, lens, cfg)
    return FeatureBatch(feats, lens, batch.targets, batch.target_lens, batch.indices,
                        float(batch.wave_lens.sum()) / cfg.sample_rate)


def forward(model, b: FeatureBatch):
    with seeded(b.seed, b.feats.device):  # dropout
        return model(b.feats, b.feat_lens)


def loss_fn(outputs, b: FeatureBatch) -> torch.Tensor:
    log_probs, out_lens = outputs
    return ctc_loss_sum(log_probs, out_lens, b.targets, b.target_lens)


@torch.no_grad()
def evaluate(model: nn.Module, frontend: FeatureExtractor, dataset: SpeechDataset, ctx, max_seconds: float) -> dict:
    """Greedy CER/WER on `dataset`; every utterance on exactly one rank, error counts all-reduced."""
    model.eval()
    rates = ErrorRates.empty()
    for idx in eval_batches(durations(dataset.entries), max_total=max_seconds, rank=ctx.dist.rank,
                            world_size=ctx.dist.world_size):
        b = make_features(frontend, collate([dataset[i] for i in idx]), frontend.cfg, ctx.device, train=False)
        with ctx.precision.autocast():
            log_probs, out_lens = model(b.feats, b.feat_lens)
        for i, hyp in zip(idx, greedy_decode(log_probs, out_lens, dataset.tokens)):
            rates.add(dataset.entries[i].text, hyp.text)
    rates = ErrorRates.from_counts(distributed.all_reduce(rates.counts()).tolist())
    return {"cer": rates.cer, "wer": rates.wer, "utterances": rates.utterances}


# ------------------------------------------------------------------------------------------------------------- main


def read_manifests(dc: DataConfig) -> tuple[list, list]:
    """(train, dev) entries, read before the run directory is made: a missing or malformed manifest is one line on
    stderr naming the file (and its line), exit status 2."""
    try:
        return read_manifest(dc.train), read_manifest(dc.dev)
    except (OSError, ManifestError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv=None):
    cfg, _ = parse_config(Config, argv, presets=PRESETS, description=__doc__)
    tc, dc = cfg.train, cfg.data
    entries, dev_entries = read_manifests(dc)
    ctx = setup_run(cfg.train, cfg)
    tokens = token_set(dc.tokens)
    if cfg.model.vocab_size != len(tokens) + 1:
        raise SystemExit(f"model.vocab_size is {cfg.model.vocab_size}, but {dc.tokens} has {len(tokens)} tokens: "
                         f"set --model.vocab_size {len(tokens) + 1} (tokens + blank)")

    if dc.max_train_utts:
        entries = entries[:dc.max_train_utts]
    entries, report = filter_alignable(entries, tokens, cfg.features, cfg.model, max_duration=dc.max_duration)
    ctx.print(f"training data {dc.train}: {report}")
    augment = None
    if cfg.augment.enabled:  # the RIR bank and babble pool: built once per run from the seed
        pool = babble_pool(entries, cfg.augment.babble_pool, tc.seed) if cfg.augment.needs_babble else None
        augment = Augmenter(cfg.augment, cfg.features.sample_rate, tc.seed, pool)
    train_data = SpeechDataset(entries, tokens, cfg.features.sample_rate, augment=augment)
    dev_entries = dev_entries[:dc.max_dev_utts or None]
    dev_data = SpeechDataset(dev_entries, tokens, cfg.features.sample_rate)

    # Global CMVN statistics: measured once on evenly spaced training utterances, then kept in every checkpoint.
    init = ctx.init_extra or {}  # --train.init_from: the statistics its weights were trained with
    if ctx.resume_state is not None and ctx.resume_state["extra"].get("feature_stats") is not None:
        stats = FeatureStats.from_state(ctx.resume_state["extra"]["feature_stats"])
    elif cfg.features.cmvn == "global" and init.get("feature_stats") is not None:
        stats = FeatureStats.from_state(init["feature_stats"])
    elif cfg.features.cmvn == "global" and init.get("release"):
        stats = FeatureStats.load(Path(init["release"]) / "feature_stats.json")
    elif cfg.features.cmvn == "global":
        n = min(dc.stats_utts, len(train_data))
        picks = [round(i * (len(train_data) - 1) / max(n - 1, 1)) for i in range(n)]
        stats = compute_stats([train_data.load(i) for i in picks], cfg.features, ctx.device)  # clean audio
    else:
        stats = None
    frontend = FeatureExtractor(cfg.features, stats).to(ctx.device)

    raw = AcousticModel(cfg.model)
    ctx.print(f"model: {raw.num_params() / 1e6:.2f} M parameters, {cfg.model.layers} x {cfg.model.hidden} "
              f"bidirectional {cfg.model.cell}, "
              f"{cfg.model.stack * cfg.features.hop_ms:.0f} ms steps; {ctx.dist.world_size} rank(s) on {ctx.device}, "
              f"{ctx.precision.name}")
    model = ctx.wrap(raw)
    optimizer = torch.optim.AdamW(raw.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sampler = BucketBatchSampler(durations(entries), max_total=dc.max_seconds, num_buckets=dc.num_buckets,
                                 seed=tc.seed, rank=ctx.dist.rank, world_size=ctx.dist.world_size,
                                 sort_first_epoch=dc.sortagrad)
    horizon = total_steps(sampler, tc.epochs, tc.accum_steps)  # every optimiser step of the configured epochs
    scheduler = warmup_decay(optimizer, warmup_steps=tc.warmup_steps, total_steps=horizon,
                             decay=tc.lr_decay)
    scaler = ctx.precision.make_scaler()
    ema = EMA(raw, tc.ema_decay) if tc.ema_decay else None
    train_step = TrainStep(model, optimizer, ctx.precision, forward=forward, loss_fn=loss_fn, scheduler=scheduler,
                           scaler=scaler, clip_norm=tc.clip_norm, max_consecutive_skips=tc.max_consecutive_skips,
                           ema=ema, ema_model=raw, world_size=ctx.dist.world_size,
                           describe=lambda b: ",".join(Path(entries[i].audio).stem for i in b.indices))
    loop = restore(ctx, ctx.resume_state, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                   train_step=train_step, ema=ema) or {"step": 0, "epoch": 0, "batch": 0, "best": math.inf,
                                                       "train_seconds": 0.0, "audio_seconds": 0.0, "unalignable": 0}
    loop.setdefault("unalignable", 0)  # checkpoints written before the count existed
    log = ctx.logger()
    extra = {"feature_stats": stats.state() if stats is not None else None, "filter": dict(report.removed)}
    evaluated = AcousticModel(cfg.model).to(ctx.device) if ema is not None else raw  # holds the EMA weights

    def save(is_best=False):
        state = checkpoint_state(ctx, model=model, optimizer=optimizer, loop=loop, scheduler=scheduler,
                                 scaler=scaler, train_step=train_step, ema=ema, config=cfg, extra=extra)
        save_checkpoint(ctx, state, loop["step"], is_best=is_best)

    bar = log.progress(total=horizon, initial=loop["step"])
    t_start, t_last, audio_last = time.time(), time.time(), loop["audio_seconds"]  # resumed runs count on
    seconds_before = loop["train_seconds"]
    for epoch in epochs(loop, sampler, tc.epochs, max_steps=tc.max_steps):  # sampler set to the resume position
        # A private generator: creating the loader iterator must not draw from the global RNG (resume exactness).
        train_data.set_epoch(epoch)  # this epoch's augmentation randomness, before the workers fork
        loader = DataLoader(train_data, batch_sampler=sampler, collate_fn=collate, num_workers=tc.num_workers,
                            generator=torch.Generator().manual_seed(tc.seed + epoch))
        for window in windows(loader, loop, tc.accum_steps, max_steps=tc.max_steps):  # loop position advanced
            window = [make_features(frontend, b, cfg.features, ctx.device, train=True,
                                    seed=batch_seed(tc.seed, epoch, b.indices)) for b in window]
            # Normalise by the tokens of the utterances CTC can align; count the others (their loss is zeroed).
            units = [ctc_units(cfg.model.output_frames(b.feat_lens), b.targets, b.target_lens) for b in window]
            result = train_step(window, [tokens for tokens, _ in units], step=loop["step"])
            distributed.fault_point(loop["step"])  # tests only: SPEECHDRAW_FAULT
            loop["unalignable"] += int(distributed.all_reduce(float(sum(n for _, n in units))))  # on every rank
            loop["audio_seconds"] += sum(b.seconds for b in window) * ctx.dist.world_size
            loop["train_seconds"] = seconds_before + time.time() - t_start
            bar.update(1)
            if loop["step"] % tc.log_every == 0:
                now = time.time()
                speed = (loop["audio_seconds"] - audio_last) / (now - t_last)  # the first window includes start-up
                t_last, audio_last = now, loop["audio_seconds"]
                log.log(loop["step"], "train", epoch=loop["epoch"], loss=result.loss, lr=result.lr,
                        grad_norm=result.grad_norm, skipped=int(result.skipped), audio_per_second=speed,
                        unalignable=loop["unalignable"])
                if not sys.stderr.isatty():
                    ctx.print(f"step {loop['step']}/{horizon} epoch {loop['epoch']} "
                              f"loss {result.loss:.3f} lr {result.lr:.2e} {speed:.1f} s audio/s "
                              f"({loop['train_seconds'] / 60:.1f} min)")
            if tc.ckpt_every and loop["step"] % tc.ckpt_every == 0:
                save()
        if loop["batch"] < len(sampler):
            save()  # max_steps reached mid-epoch: remember the exact position
            break
        metrics = evaluate(raw, frontend, dev_data, ctx, 4 * dc.max_seconds)
        row = {"cer": metrics["cer"], "wer": metrics["wer"]}
        if ema is not None:
            evaluated.load_state_dict(ema.averaged_state_dict(raw))
            m_ema = evaluate(evaluated, frontend, dev_data, ctx, 4 * dc.max_seconds)
            row.update(cer_ema=m_ema["cer"], wer_ema=m_ema["wer"])
        selected = row["cer_ema"] if ema is not None else row["cer"]
        log.log(loop["step"], "val", epoch=loop["epoch"], train_minutes=loop["train_seconds"] / 60, **row)
        ctx.print(f"epoch {loop['epoch']} step {loop['step']}: dev " + " ".join(f"{k} {v:.4f}" for k, v in row.items())
                  + f" ({loop['train_seconds'] / 60:.1f} min of training)")
        is_best = selected < loop["best"]
        loop["best"] = min(loop["best"], selected)
        loop["epoch"], loop["batch"] = epoch + 1, 0
        save(is_best=is_best)
    bar.close()

    best_path = ctx.ckpt.dir / "best.pt"
    if ctx.dist.is_main and best_path.is_file():
        state = load_checkpoint(best_path)
        out = export_checkpoint(state, ctx.run_dir / "release", metrics={
            "dev_cer": state["loop"]["best"], "train_minutes": loop["train_seconds"] / 60,
            "train_steps_total": loop["step"]})
        log.plot()
        ctx.print(f"done: step {loop['step']}, best dev CER {loop['best']:.4f}, "
                  f"{loop['train_seconds'] / 60:.1f} min of training, skipped steps {train_step.nonfinite_skips}, "
                  f"utterances CTC could not align {loop['unalignable']} (left out of the loss); "
                  f"release {out}")
    log.close()
    distributed.cleanup()
    return loop


if __name__ == "__main__":
    main(sys.argv[1:])
