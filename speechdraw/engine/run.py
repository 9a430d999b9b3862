"""Run setup and checkpoint plumbing shared by the recipes.

A recipe embeds `TrainConfig` as its `train` field and goes, in straight lines:

    ctx = setup_run(cfg.train, cfg)                  # torchrun ranks, device, precision, seeds, run dir, config.json
    model = ctx.wrap(raw_model)                      # DDP under torchrun, optional torch.compile
    ... optimizer, scheduler, TrainStep ...
    loop = restore(ctx, ctx.resume_state, ...)       # loop position: step, epoch, batch_in_epoch, best
    for each step: result = train_step(window, counts); ...; save(ctx, ...)
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from speechdraw.engine import distributed
from speechdraw.engine.checkpoint import CheckpointManager, resolve_resume
from speechdraw.engine.config import to_dict, write_resolved_config
from speechdraw.engine.device import Precision, select_device
from speechdraw.engine.distributed import DistInfo
from speechdraw.engine.ema import EMA
from speechdraw.engine.logger import MetricsLogger
from speechdraw.engine.release import code_state
from speechdraw.engine.seed import get_rng_state, seed_everything, set_deterministic, set_rng_state
from speechdraw.engine.step import TrainStep


@dataclass
class TrainConfig:
    run_dir: str = field(default="runs/default", metadata={"help": "directory for checkpoints, metrics and config"})
    seed: int = field(default=0, metadata={"help": "base seed; rank r uses seed + r for dropout/augmentation"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:N or mps"})
    precision: str = field(default="fp32", metadata={
        "help": "fp32, bf16 (autocast), fp16 (autocast + GradScaler) or auto (bf16 where the hardware has it, else "
                "fp32 on CPU, fp16 on older GPUs; speechdraw/engine/device.py)"})
    epochs: int = field(default=10, metadata={"help": "number of epochs"})
    max_steps: int = field(default=0, metadata={"help": "stop after this many optimiser steps (0: no limit)"})
    accum_steps: int = field(default=1, metadata={"help": "batches accumulated per optimiser step (per rank)"})
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps"})
    lr_decay: str = field(default="none", metadata={"help": "cosine, linear or none (after warm-up)"})
    clip_norm: float = field(default=1.0, metadata={"help": "gradient-norm clipping (0: off)"})
    max_consecutive_skips: int = field(default=5, metadata={"help": "stop after this many non-finite steps in a row"})
    log_every: int = field(default=10, metadata={"help": "steps between training-metric rows"})
    ckpt_every: int = field(default=0, metadata={"help": "steps between checkpoints (0: end of each epoch only)"})
    keep_last: int = field(default=3, metadata={"help": "checkpoints kept besides best.pt"})
    resume: str = field(default="", metadata={"help": "'' fresh, 'auto' newest complete checkpoint, or a path"})
    init_from: str = field(default="", metadata={
        "help": "start a fresh run from these weights: a resume checkpoint (its EMA average when it kept one) or a "
                "model of the same shape as --model takes it (release directory, archive, URL or name such as "
                "draw-mnist); optimiser, schedule and data order start anew (fine-tuning). A resumed run ignores it"})
    deterministic: bool = field(default=False, metadata={"help": "deterministic kernels (slower)"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the model"})
    ema_decay: float = field(default=0.0, metadata={"help": "EMA of weights for eval/release (0: off)"})
    tensorboard: bool = field(default=False, metadata={"help": "also write TensorBoard logs (needs tensorboard)"})
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes"})
    dist_timeout: float = field(default=10.0, metadata={"help": "minutes a collective waits for a missing rank "
                                                                "before every rank stops with an error (torchrun)"})

    def __post_init__(self):
        if self.precision not in ("fp32", "bf16", "fp16", "auto"):
            raise ValueError(f"train.precision must be fp32, bf16, fp16 or auto, got {self.precision!r}")
        if self.accum_steps < 1:
            raise ValueError("train.accum_steps must be >= 1")
        if self.lr_decay not in ("cosine", "linear", "none"):
            raise ValueError(f"train.lr_decay must be cosine, linear or none, got {self.lr_decay!r}")


@dataclass
class RunContext:
    cfg: TrainConfig
    dist: DistInfo
    device: torch.device
    precision: Precision
    run_dir: Path
    ckpt: CheckpointManager
    resume_state: dict | None = None
    resume_path: Path | None = None
    init_weights: dict | None = None  # --train.init_from's weights, for a fresh run (restore() loads them)
    init_extra: dict | None = None  # what else it holds: a checkpoint's "extra", or a release directory's path

    def wrap(self, model: nn.Module) -> nn.Module:
        """Move to the device; DDP when distributed; torch.compile on request. Save from the raw module."""
        model.to(self.device)
        wrapped = model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if self.cfg.compile:
            if callable(getattr(model, "compile_step", None)):
                # A model built around one step repeated many times (DRAW's glimpses) compiles that step itself:
                # whole, its unrolled forward holds custom autograd Functions that torch.compile cannot trace.
                model.compile_step()
                self.print(f"torch.compile: {type(model).__name__}.compile_step (the model's repeated step)")
            else:
                wrapped = torch.compile(wrapped)
        return wrapped

    def logger(self) -> MetricsLogger:
        step = self.resume_state["loop"]["step"] if self.resume_state else None
        return MetricsLogger(self.run_dir, is_main=self.dist.is_main, tensorboard=self.cfg.tensorboard,
                             resume_step=step)

    def print(self, *args) -> None:
        if self.dist.is_main:
            print(*args, file=sys.stderr, flush=True)


def setup_run(cfg: TrainConfig, full_config=None) -> RunContext:
    info = distributed.dist_info_from_env()
    device = select_device(cfg.device, info.local_rank)
    distributed.init_distributed(device, info, timeout_minutes=cfg.dist_timeout)
    if cfg.deterministic:
        set_deterministic(True)
    seed_everything(cfg.seed, info.rank)
    run_dir = Path(cfg.run_dir)
    ckpt = CheckpointManager(run_dir / "checkpoints", keep_last=cfg.keep_last)
    if not cfg.resume and ckpt.list():
        raise SystemExit(f"{run_dir} already holds checkpoints: continue it with --train.resume auto, "
                         f"or choose another --train.run_dir")
    ctx = RunContext(cfg, info, device, Precision(cfg.precision, device), run_dir, ckpt)
    found = resolve_resume(cfg.resume, ckpt)
    if found is None and cfg.init_from:
        ctx.init_weights, ctx.init_extra = load_init(cfg.init_from)
    changed = {}
    if found is not None:
        ctx.resume_path, ctx.resume_state = found
        changed = config_changes(ctx.resume_state.get("config"), full_config if full_config is not None else cfg)
        if changed:
            ctx.print("warning: resuming with a changed config (checkpoint -> now): " + ", ".join(
                f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items()))
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_resolved_config(run_dir, full_config if full_config is not None else cfg, world_size=info.world_size,
                              precision=ctx.precision.name,  # what "auto" resolved to on this machine
                              resumed_from=str(ctx.resume_path) if ctx.resume_path else None, code=code_state(),
                              changed_on_resume={k: list(v) for k, v in changed.items()})
    distributed.barrier()
    return ctx


def config_changes(saved: dict | None, current) -> dict[str, tuple]:
    """Dotted keys whose value differs between a checkpoint's config and the current one (resume flags excluded)."""
    if not isinstance(saved, dict):
        return {}
    now = to_dict(current) if dataclasses.is_dataclass(current) else current

    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    a, b = dict(flat(json.loads(json.dumps(saved)))), dict(flat(json.loads(json.dumps(now))))  # tuples == lists
    a.pop("resume", None), b.pop("resume", None)
    a.pop("train.resume", None), b.pop("train.resume", None)
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


def checkpoint_state(ctx: RunContext, *, model: nn.Module, optimizer, loop: dict, scheduler=None, scaler=None,
                     train_step: TrainStep | None = None, ema: EMA | None = None, config=None,
                     extra: dict | None = None) -> dict:
    """Everything needed to continue exactly. Collective: every rank must call it (RNG states are gathered)."""
    raw = getattr(getattr(model, "_orig_mod", model), "module", getattr(model, "_orig_mod", model))
    return {
        "model": raw.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "ema": ema.state_dict() if ema is not None else None,
        "train_step": train_step.state_dict() if train_step is not None else None,
        "loop": dict(loop),
        "rng": distributed.all_gather_object(get_rng_state()),
        "world_size": ctx.dist.world_size,
        "config": to_dict(config) if dataclasses.is_dataclass(config) else config,
        "extra": extra or {},
    }


def save_checkpoint(ctx: RunContext, state: dict, step: int, *, is_best: bool = False) -> None:
    if ctx.dist.is_main:
        ctx.ckpt.save(state, step, is_best=is_best)
    distributed.barrier()


def load_init(path: str) -> tuple[dict, dict]:
    """--train.init_from: (model weights, extra) from a resume checkpoint file (its EMA average when it kept one;
    extra: the checkpoint's "extra", e.g. feature statistics) or a model as --model takes it: a release directory,
    release archive, URL or shipped name such as draw-mnist (extra: {"release": its directory})."""
    from speechdraw.engine.checkpoint import CheckpointError, load_checkpoint
    from speechdraw.engine.ema import checkpoint_weights
    from speechdraw.engine.release import ReleaseError, load_release
    from speechdraw.models import ModelError, is_archive, resolve_model

    p = Path(path).expanduser()
    try:
        if p.is_file() and not is_archive(p):
            state = load_checkpoint(p)
            weights, _ = checkpoint_weights(state)
            return weights, dict(state.get("extra") or {})
        release = resolve_model(path)
        return load_release(release).state_dict, {"release": str(release)}
    except (CheckpointError, ReleaseError, ModelError, OSError) as e:
        raise SystemExit(f"--train.init_from {path}: {e}") from None


def restore(ctx: RunContext, state: dict | None, *, model: nn.Module, optimizer, scheduler=None, scaler=None,
            train_step: TrainStep | None = None, ema: EMA | None = None) -> dict | None:
    """Load a resume checkpoint into the live objects (strict); returns its loop position, or None if fresh. A fresh
    run with --train.init_from starts from those weights (strict), its EMA too."""
    raw = getattr(getattr(model, "_orig_mod", model), "module", getattr(model, "_orig_mod", model))
    if state is None:
        if ctx.init_weights is not None:
            try:
                raw.load_state_dict(ctx.init_weights, strict=True)
            except RuntimeError as e:
                raise SystemExit(f"--train.init_from {ctx.cfg.init_from}: its weights do not fit this model "
                                 f"({str(e).splitlines()[0]} ...)") from None
            if ema is not None:
                ema.load_state_dict({"decay": ema.decay, "updates": 0, "shadow": {
                    k: v for k, v in raw.state_dict().items() if k in ema.shadow}})
            ctx.print(f"initialised from {ctx.cfg.init_from}")
        return None
    raw.load_state_dict(state["model"], strict=True)
    optimizer.load_state_dict(state["optimizer"])
    for obj, key in ((scheduler, "scheduler"), (scaler, "scaler"), (ema, "ema"), (train_step, "train_step")):
        if obj is not None and state.get(key) is not None:
            obj.load_state_dict(state[key])
    rngs = state["rng"]
    if len(rngs) == ctx.dist.world_size:
        set_rng_state(rngs[ctx.dist.rank])
    else:
        ctx.print(f"resuming a {len(rngs)}-rank run on {ctx.dist.world_size} ranks: data order continues, "
                  f"dropout/augmentation RNG streams are re-seeded")
    ctx.print(f"resumed from {ctx.resume_path} at step {state['loop']['step']}")
    return dict(state["loop"])
