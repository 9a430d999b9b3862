"""Train DRAW (Gregor et al. 2015) on binarised MNIST, Fashion-MNIST or a folder of images; validate with the negative
ELBO (nats per image) each epoch; write a release that `speechdraw sample` and recipes/draw/evaluate.py load.

    # tiny (tests, README demo): about a minute on one CPU core, <= 175 nats on held-out MNIST
    python recipes/draw/train.py --preset tiny --train.run_dir ~/speechdraw-runs/draw-tiny
    # the paper's MNIST configuration (attention, read 2, write 5, T 64) on the paper's binarisation; resumable
    NPZ=../shared/data/binarized_mnist/binarized_mnist.npz
    python recipes/draw/train.py --preset paper --data.binarized_npz $NPZ --train.run_dir ~/speechdraw-runs/draw-paper
    python recipes/draw/train.py --preset paper ... --train.run_dir ~/speechdraw-runs/draw-paper --train.resume auto
    # the same without attention (identical hyper-parameters)
    python recipes/draw/train.py --preset paper_noattn --data.binarized_npz $NPZ \\
        --train.run_dir ~/speechdraw-runs/draw-noattn
    # Fashion-MNIST (Debian: apt-get install dataset-fashion-mnist), a colour image folder
    python recipes/draw/train.py --preset tiny --data.root /usr/share/datasets/fashion-mnist --train.run_dir ...
    python recipes/draw/train.py --data.image_folder DIR --data.binarization none --model.channels 3 \\
        --model.height 32 --model.width 32 --model.likelihood logistic --train.run_dir ...
    # several processes (CPU gloo or GPUs)
    torchrun --nproc_per_node=2 recipes/draw/train.py --preset paper --train.run_dir runs/draw-paper

Data: by default the four MNIST IDX files in ../shared/data/mnist (relative to the checkout), first 50,000 training
images to train, last 10,000 to validate, the 10,000 test images for evaluate.py, binarised once with numpy
default_rng(data.seed) (test: seed + 1; see speechdraw/draw/data.py), or re-drawn each epoch with
--data.binarization dynamic. --data.binarized_npz selects the Larochelle & Murray binarisation the paper's figures use.

Per step: a batch of images (random order, a pure function of (seed, epoch)), Draw.forward with fresh noise for every
z_t, loss = sum over the batch of (reconstruction NLL + sum_t KL), normalised by the number of images, Adam, gradient
clipping. Each epoch the validation bound (negative ELBO, fixed noise seed) decides best.pt; at the end release/ holds
best.pt's weights (model.pt), config.json (model config, data source, metrics). DRAW's matmuls are small (batch 100
x 256 units): one intra-op thread per process (--threads 1, the default) is faster on a shared CPU than two.
--train.ema_decay D keeps an exponential moving average of the weights (speechdraw/engine/ema.py): validation then
scores the averaged weights (and logs the raw ones' bound as bound_raw), best.pt is chosen by the averaged weights'
bound, and the release holds them. --data.binarization dynamic with --data.binarized_npz trains on the npz's own
training digits re-drawn every epoch: each X_train image is matched to the grey MNIST training digit in --data.root
that it is a binarisation of (speechdraw/draw/data.py larochelle_grey_sources; the npz's images are a shuffled pick of
all 60,000, so not by index; validation digits barred; cached after the first ~3 minutes), while validation and test
stay the npz's fixed images, so its figures compare with every other npz run.
--train.precision bf16 runs the GEMMs in bf16 (state, attention and canvas stay fp32; validation is always fp32):
faster per step on an AMD CPU with AVX512-BF16 (see recipes/draw/README.md), slower on an Intel one without AMX,
refused on one with no AVX-512 (where it is emulated, several times slower than fp32). --train.precision auto picks
bf16 only where it was measured faster (speechdraw/engine/device.py).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch

from speechdraw.draw.bounds import elbo_bound
from speechdraw.draw.data import BINARIZE_SEED, MNIST_FILES, NUM_VALID, DataSource, ImageSet, find_idx, load_splits
from speechdraw.draw.model import Draw, DrawConfig
from speechdraw.engine import distributed
from speechdraw.engine.checkpoint import load_checkpoint
from speechdraw.engine.config import parse_config
from speechdraw.engine.ema import EMA, checkpoint_weights
from speechdraw.engine.loop import epochs, total_steps, windows
from speechdraw.engine.release import save_release
from speechdraw.engine.run import TrainConfig, checkpoint_state, restore, save_checkpoint, setup_run
from speechdraw.engine.sampler import BucketBatchSampler
from speechdraw.engine.schedule import warmup_decay
from speechdraw.engine.seed import batch_seed, seeded
from speechdraw.engine.step import TrainStep

REPO = Path(__file__).resolve().parents[2]
MNIST = str(REPO.parent / "shared" / "data" / "mnist")

# ----------------------------------------------------------------------------------------------------------- config


@dataclass
class DataConfig:
    root: str = field(default=MNIST, metadata={"help": "directory with the four MNIST / Fashion-MNIST IDX files"})
    binarized_npz: str = field(default="", metadata={"help": "Larochelle & Murray binarized_mnist.npz (the paper's "
                                                             "splits) instead of --data.root"})
    image_folder: str = field(default="", metadata={"help": "a folder of images instead, resized to model.height x "
                                                            "model.width"})
    binarization: str = field(default="fixed", metadata={"help": "fixed (drawn once with data.seed), dynamic "
                                                                 "(re-drawn every epoch) or none (grey levels, for "
                                                                 "model.likelihood logistic)"})
    seed: int = field(default=BINARIZE_SEED, metadata={"help": "numpy seed of the fixed binarisation"})
    num_valid: int = field(default=NUM_VALID, metadata={"help": "IDX: the last N training images validate"})
    valid_fraction: float = field(default=0.1, metadata={"help": "image folder: fraction held out to validate"})
    max_train: int = field(default=0, metadata={"help": "train on the first N training images (0: all)"})
    max_valid: int = field(default=0, metadata={"help": "validate on the first N validation images (0: all)"})
    batch_size: int = field(default=100, metadata={"help": "images per batch per rank"})
    eval_batch_size: int = field(default=500, metadata={"help": "images per batch when validating"})


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: DrawConfig = field(default_factory=DrawConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        run_dir="runs/draw", epochs=20, lr=1e-3, clip_norm=10.0, log_every=50, ckpt_every=100))
    adam_beta1: float = field(default=0.9, metadata={"help": "Adam's beta1"})
    threads: int = field(default=1, metadata={"help": "torch intra-op threads per process (0: torch's default)"})


PRESETS = {
    # The paper's MNIST configuration (section 4.1): 256-unit LSTMs, 100-dim z, 64 glimpses, read 2 x 2, write 5 x 5;
    # Adam, gradient clipping, batch 100 as the public ports train it.
    "paper": {"model": {"enc_size": 256, "dec_size": 256, "z_size": 100, "steps": 64, "attention": True,
                        "read_n": 2, "write_n": 5},
              "train": {"epochs": 20, "lr": 1e-3, "clip_norm": 10.0, "ckpt_every": 100}},
    # Identical hyper-parameters, attention off: the paper's 87.40-nat comparison. No per-variant tuning.
    "paper_noattn": {"model": {"enc_size": 256, "dec_size": 256, "z_size": 100, "steps": 64, "attention": False,
                               "read_n": 2, "write_n": 5},
                     "train": {"epochs": 20, "lr": 1e-3, "clip_norm": 10.0, "ckpt_every": 100}},
    # Tests and the README demo: 128-unit LSTMs, 10 glimpses through wide windows (read 4, write 8), 24k training
    # images for 3 epochs (720 steps), validated on 2,000: about a minute on one core, ~126 nats on held-out MNIST.
    "tiny": {"model": {"enc_size": 128, "dec_size": 128, "z_size": 16, "steps": 10, "read_n": 4, "write_n": 8},
             "data": {"max_train": 24000, "max_valid": 2000},
             "train": {"epochs": 3, "lr": 3e-3, "clip_norm": 10.0, "log_every": 40, "ckpt_every": 0}},
}

# ------------------------------------------------------------------------------------------------------------ steps


class Batch(NamedTuple):
    x: torch.Tensor  # (B, C, H, W) on the device
    labels: torch.Tensor | None  # (B,) for a class-conditional model
    indices: torch.Tensor  # (B,) into the training set, for error reports
    seed: int  # the batch's own seed (engine/seed.py): its z noise is the same whichever rank trains it


def make_batch(data: ImageSet, idx: list[int], device, conditional: bool, seed: int) -> Batch:
    i = torch.tensor(idx)
    labels = data.labels[i].to(device) if conditional else None
    return Batch(data.images[i].to(device), labels, i, seed)


def forward(model, b: Batch):
    with seeded(b.seed, b.x.device):
        out = model(b.x, b.labels)
    return out.recon, out.kl  # a plain tuple: the engine casts outputs to fp32 element by element


def loss_fn(outputs, b: Batch) -> torch.Tensor:
    recon, kl = outputs
    return (recon + kl).sum()  # nats summed over the batch; TrainStep divides by the images in the global batch


def check_args(cfg: Config) -> None:
    """Option combinations refused before anything is written: one line on stderr, exit status 2."""
    dc = cfg.data
    if dc.binarized_npz and not dc.image_folder and dc.binarization == "dynamic":
        try:  # the npz's training images are re-drawn from their grey digits: --data.root must hold them
            find_idx(dc.root, MNIST_FILES["train"][0])
        except FileNotFoundError as e:
            print(f"error: --data.binarization dynamic with --data.binarized_npz re-draws the npz's training images "
                  f"from their grey MNIST digits, which --data.root must hold: {e}", file=sys.stderr)
            raise SystemExit(2) from None


def check_data(cfg: Config, splits) -> None:
    mc, dc = cfg.model, cfg.data
    shape = splits.train.image_shape
    if shape != mc.image_shape:
        raise SystemExit(f"the images are {shape[0]}x{shape[1]}x{shape[2]} (C x H x W) but the model expects "
                         f"{mc.channels}x{mc.height}x{mc.width}: set --model.channels/--model.height/--model.width")
    binary = dc.binarized_npz and not dc.image_folder or dc.binarization != "none"
    if mc.likelihood == "bernoulli" and not binary:
        raise SystemExit("model.likelihood bernoulli needs binary images: use --data.binarization fixed or dynamic, "
                         "or --model.likelihood logistic for grey levels")
    if mc.likelihood == "logistic" and binary:
        raise SystemExit("model.likelihood logistic models 8-bit grey levels: use --data.binarization none")
    if mc.num_classes and splits.train.labels is None:
        source = dc.image_folder or dc.binarized_npz
        raise SystemExit(f"model.num_classes={mc.num_classes} needs labelled images, and {source} has none")


# ------------------------------------------------------------------------------------------------------------- main


def main(argv=None):
    cfg, _ = parse_config(Config, argv, presets=PRESETS, description=__doc__)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    check_args(cfg)
    ctx = setup_run(cfg.train, cfg)
    tc, dc, mc = cfg.train, cfg.data, cfg.model

    source = DataSource(root=dc.root, binarized_npz=dc.binarized_npz, image_folder=dc.image_folder,
                        binarization=dc.binarization, seed=dc.seed, num_valid=dc.num_valid,
                        valid_fraction=dc.valid_fraction, height=mc.height, width=mc.width, channels=mc.channels)
    try:
        splits = load_splits(source)
    except (ValueError, FileNotFoundError) as e:  # a data file that is not what it should be: one line, exit 2
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    check_data(cfg, splits)
    train_data = splits.train
    if dc.max_train and dc.max_train < len(train_data):
        lab = train_data.labels
        cut = slice(0, dc.max_train)
        if hasattr(train_data, "probs"):  # DynamicBinarized
            train_data = type(train_data)(train_data.probs[cut], None if lab is None else lab[cut], train_data.seed)
        else:
            train_data = ImageSet(train_data.images[cut], None if lab is None else lab[cut])
    valid_data = splits.valid
    ctx.print(f"data: {source.describe()}; {len(train_data)} training images, "
              f"{min(len(valid_data), dc.max_valid or len(valid_data))} validation images")

    raw = Draw(mc)
    if ctx.resume_state is None:
        raw.init_canvas_from_data(train_data.mean_image())
    num_params = sum(p.numel() for p in raw.parameters())
    attn = f"read {mc.read_n} write {mc.write_n}" if mc.attention else "off"
    ctx.print(f"model: DRAW {num_params / 1e6:.2f} M parameters, LSTMs {mc.enc_size}/{mc.dec_size}, z {mc.z_size}, "
              f"T {mc.steps}, attention {attn}; {ctx.dist.world_size} rank(s) on {ctx.device}, "
              f"{ctx.precision.name}, {torch.get_num_threads()} thread(s)")
    model = ctx.wrap(raw)
    optimizer = torch.optim.Adam(raw.parameters(), lr=tc.lr, betas=(cfg.adam_beta1, 0.999),
                                 weight_decay=tc.weight_decay)
    # Every image has the same size: one bucket gives plain shuffled batches, in an order fixed by (seed, epoch).
    sampler = BucketBatchSampler([1.0] * len(train_data), batch_size=dc.batch_size, num_buckets=1, seed=tc.seed,
                                 rank=ctx.dist.rank, world_size=ctx.dist.world_size)
    horizon = total_steps(sampler, tc.epochs, tc.accum_steps)  # every optimiser step of the configured epochs
    scheduler = warmup_decay(optimizer, warmup_steps=tc.warmup_steps, total_steps=horizon, decay=tc.lr_decay)
    scaler = ctx.precision.make_scaler()
    ema = EMA(raw, tc.ema_decay) if tc.ema_decay else None
    conditional = mc.num_classes > 0
    train_step = TrainStep(model, optimizer, ctx.precision, forward=forward, loss_fn=loss_fn, scheduler=scheduler,
                           scaler=scaler, clip_norm=tc.clip_norm, max_consecutive_skips=tc.max_consecutive_skips,
                           ema=ema, ema_model=raw, world_size=ctx.dist.world_size,
                           describe=lambda b: "images " + ",".join(map(str, b.indices.tolist())))
    if ctx.init_weights is not None and conditional:  # an unconditional model to start from: zero label weights
        ctx.init_weights = raw.label_columns_added(ctx.init_weights)
    loop = restore(ctx, ctx.resume_state, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                   train_step=train_step, ema=ema) or {"step": 0, "epoch": 0, "batch": 0, "best": math.inf,
                                                       "train_seconds": 0.0}
    log = ctx.logger()
    extra = {"data": asdict(source)}
    evaluated = Draw(mc).to(ctx.device) if ema is not None else raw  # validates the EMA weights when there are some

    def save(is_best=False):
        state = checkpoint_state(ctx, model=model, optimizer=optimizer, loop=loop, scheduler=scheduler,
                                 scaler=scaler, train_step=train_step, ema=ema, config=cfg, extra=extra)
        save_checkpoint(ctx, state, loop["step"], is_best=is_best)

    bar = log.progress(total=horizon, initial=loop["step"])
    t_start, t_last, step_last = time.time(), time.time(), loop["step"]
    seconds_before = loop["train_seconds"]
    for epoch in epochs(loop, sampler, tc.epochs, max_steps=tc.max_steps):  # sampler set to the resume position
        if hasattr(train_data, "set_epoch"):
            train_data.set_epoch(epoch)  # dynamic binarisation: this epoch's draw, a function of the epoch
        for window in windows(sampler, loop, tc.accum_steps, max_steps=tc.max_steps):  # loop position advanced
            window = [make_batch(train_data, idx, ctx.device, conditional, batch_seed(tc.seed, epoch, idx))
                      for idx in window]
            result = train_step(window, [float(len(b.x)) for b in window], step=loop["step"])
            distributed.fault_point(loop["step"])  # tests only: SPEECHDRAW_FAULT
            loop["train_seconds"] = seconds_before + time.time() - t_start
            bar.update(1)
            if loop["step"] % tc.log_every == 0:
                now = time.time()
                s_per_step = (now - t_last) / max(loop["step"] - step_last, 1)
                t_last, step_last = now, loop["step"]
                log.log(loop["step"], "train", epoch=loop["epoch"], loss=result.loss, lr=result.lr,
                        grad_norm=result.grad_norm, skipped=int(result.skipped), s_per_step=s_per_step)
                if not sys.stderr.isatty():
                    ctx.print(f"step {loop['step']}/{horizon} epoch {loop['epoch']} bound {result.loss:.2f} nats "
                              f"grad norm {result.grad_norm:.1f} {s_per_step:.3f} s/step "
                              f"({loop['train_seconds'] / 60:.1f} min)")
            if tc.ckpt_every and loop["step"] % tc.ckpt_every == 0:
                save()
        if loop["batch"] < len(sampler):
            save()  # max_steps reached mid-epoch: remember the exact position
            break
        def validate(m):
            return elbo_bound(m, valid_data, batch_size=dc.eval_batch_size, max_images=dc.max_valid,
                              device=ctx.device, rank=ctx.dist.rank, world_size=ctx.dist.world_size)

        val = validate(raw)
        also = {}
        if ema is not None:  # the averaged weights' bound decides best.pt; the raw one is kept for comparison
            evaluated.load_state_dict(ema.averaged_state_dict(raw))
            also = {"bound_raw": val["bound"]}
            val = validate(evaluated)
        log.log(loop["step"], "val", epoch=loop["epoch"], bound=val["bound"], recon=val["recon"], kl=val["kl"],
                bits_per_dim=val["bits_per_dim"], images=val["images"], train_minutes=loop["train_seconds"] / 60,
                **also)
        which = f" with EMA weights (raw weights {also['bound_raw']:.2f})" if also else ""
        ctx.print(f"epoch {loop['epoch']} step {loop['step']}: validation bound {val['bound']:.2f} nats "
                  f"(recon {val['recon']:.2f} + KL {val['kl']:.2f}) on {val['images']} images{which} "
                  f"({loop['train_seconds'] / 60:.1f} min of training)")
        is_best = val["bound"] < loop["best"]
        loop["best"] = min(loop["best"], val["bound"])
        loop["epoch"], loop["batch"] = epoch + 1, 0
        save(is_best=is_best)
    bar.close()

    best_path = ctx.ckpt.dir / "best.pt"
    if ctx.dist.is_main and best_path.is_file():
        state = load_checkpoint(best_path)
        weights, which = checkpoint_weights(state)  # the EMA average when the run kept one: what validation scored
        out = save_release(ctx.run_dir / "release", weights, asdict(mc), kind="draw", metrics={
            "valid_bound": state["loop"]["best"], "epoch": state["loop"]["epoch"] - 1, "step": state["loop"]["step"],
            "train_minutes": state["loop"]["train_seconds"] / 60, "train_steps_total": loop["step"], "weights": which},
            extra={"data": asdict(source), "train": {"lr": tc.lr, "batch_size": dc.batch_size,
                                                     "clip_norm": tc.clip_norm, "epochs": tc.epochs,
                                                     "lr_decay": tc.lr_decay, "ema_decay": tc.ema_decay}})
        log.plot()
        ctx.print(f"done: step {loop['step']}, best validation bound {loop['best']:.2f} nats, "
                  f"{loop['train_seconds'] / 60:.1f} min of training, skipped steps {train_step.nonfinite_skips}; "
                  f"release {out}")
    log.close()
    distributed.cleanup()
    return loop


if __name__ == "__main__":
    main(sys.argv[1:])
