"""DRAW training speed: the library model against a straightforward implementation of the same equations.

    python bench/draw_speed.py --threads 1           # paper MNIST preset, batch 100, 1 intra-op thread
    python bench/draw_speed.py                       # torch's default thread count (2 on the 2-core machine)
    python bench/draw_speed.py --reps 3 --warmup 1   # quicker, noisier
    python bench/draw_speed.py --threads 1 --bf16    # also the library under bf16 autocast (--train.precision bf16)

Both models are built from the same weights (the reference loads the library's state dict unchanged) and timed in one
process, interleaved (library step, reference step, library step, ...), so drift in the machine's speed hits both;
the figures are medians. One training step = forward + backward + gradient-norm clipping + Adam update on a batch of
100 binarised MNIST images (the fixed binarisation from ../shared/data/binarized_mnist when present, random 0/1 images
otherwise). Sampling speed is the library's `generate` (64 glimpses, write attention, no read) in images per second.

`ReferenceDraw` below is the baseline: the way public ports write DRAW (an nn.LSTMCell per glimpse, separate Linear
heads, filterbanks rebuilt from per-op code with an epsilon normalisation, fp32, no fusion). tests/test_draw_model.py
imports it to check that the library computes the same function (values and gradients).

With --bf16 the library also runs as the recipes do with --train.precision bf16: GEMM operands in bf16 (fp32
accumulation), LSTM cells, attention and the canvas in fp32 (see Draw._precision); the reference stays fp32.

On a 2-core machine that other jobs share, two OpenMP threads per process spin-wait on each other whenever another
process holds a core, and a step can take 10x longer; --threads 1 gives stable figures there.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from speechdraw.draw.model import Draw, DrawConfig  # noqa: E402


class _Head(nn.Module):
    def __init__(self, hidden: int, out: int):
        super().__init__()
        self.linear = nn.Linear(hidden, out)


class ReferenceDraw(nn.Module):
    """DRAW written out equation by equation, with the library's parameter names so either loads the other's weights."""

    def __init__(self, cfg: DrawConfig):
        super().__init__()
        self.cfg = cfg
        k = cfg.num_classes
        self.canvas0 = nn.Parameter(torch.zeros(cfg.image_shape))
        self.h_enc0 = nn.Parameter(torch.zeros(cfg.enc_size))
        self.c_enc0 = nn.Parameter(torch.zeros(cfg.enc_size))
        self.h_dec0 = nn.Parameter(torch.zeros(cfg.dec_size))
        self.c_dec0 = nn.Parameter(torch.zeros(cfg.dec_size))
        self.encoder = nn.LSTMCell(cfg.read_size + cfg.dec_size + k, cfg.enc_size)
        self.posterior = nn.Linear(cfg.enc_size, 2 * cfg.z_size)
        self.decoder = nn.LSTMCell(cfg.z_size + k, cfg.dec_size)
        if cfg.attention:
            self.read_head = _Head(cfg.dec_size, 5)
            self.write_head = _Head(cfg.dec_size, 5)
        self.write_patch = nn.Linear(cfg.dec_size, cfg.patch_size)
        if cfg.likelihood == "logistic":
            raise NotImplementedError("the reference covers the Bernoulli likelihood only")

    def attn_params(self, head: _Head, h_dec, n):
        cfg = self.cfg
        params = head.linear(h_dec)
        gx_, gy_, log_sigma2, log_delta, log_gamma = params.split(1, dim=1)
        gx = (cfg.width + 1) / 2 * (gx_ + 1)
        gy = (cfg.height + 1) / 2 * (gy_ + 1)
        sigma2 = torch.exp(log_sigma2)
        delta = (max(cfg.width, cfg.height) - 1) / max(n - 1, 1) * torch.exp(log_delta)
        return gx, gy, sigma2, delta, torch.exp(log_gamma)

    def filterbank(self, gx, gy, sigma2, delta, n):
        cfg = self.cfg
        grid_i = torch.arange(1, n + 1, dtype=torch.float32).view(1, -1)
        mu_x = gx + (grid_i - n / 2 - 0.5) * delta  # (B, N)
        mu_y = gy + (grid_i - n / 2 - 0.5) * delta
        a = torch.arange(1, cfg.width + 1, dtype=torch.float32).view(1, 1, -1)
        b = torch.arange(1, cfg.height + 1, dtype=torch.float32).view(1, 1, -1)
        mu_x = mu_x.view(-1, n, 1)
        mu_y = mu_y.view(-1, n, 1)
        sigma2 = sigma2.view(-1, 1, 1)
        fx = torch.exp(-torch.square(a - mu_x) / (2 * sigma2))
        fy = torch.exp(-torch.square(b - mu_y) / (2 * sigma2))
        fx = fx / (fx.sum(2, keepdim=True) + 1e-8)
        fy = fy / (fy.sum(2, keepdim=True) + 1e-8)
        return fx, fy

    def read(self, x, x_hat, h_dec_prev):
        cfg = self.cfg
        if not cfg.attention:
            return torch.cat((x.flatten(1), x_hat.flatten(1)), dim=1)
        gx, gy, sigma2, delta, gamma = self.attn_params(self.read_head, h_dec_prev, cfg.read_n)
        fx, fy = self.filterbank(gx, gy, sigma2, delta, cfg.read_n)

        def filter_img(img):  # (B, C, H, W) -> (B, C*N*N)
            out = torch.matmul(torch.matmul(fy.unsqueeze(1), img), fx.transpose(1, 2).unsqueeze(1))
            return out.flatten(1) * gamma

        return torch.cat((filter_img(x), filter_img(x_hat)), dim=1)

    def write(self, h_dec):
        cfg = self.cfg
        w = self.write_patch(h_dec)
        if not cfg.attention:
            return w.view(-1, *cfg.image_shape)
        w = w.view(-1, cfg.channels, cfg.write_n, cfg.write_n)
        gx, gy, sigma2, delta, gamma = self.attn_params(self.write_head, h_dec, cfg.write_n)
        fx, fy = self.filterbank(gx, gy, sigma2, delta, cfg.write_n)
        out = torch.matmul(torch.matmul(fy.transpose(1, 2).unsqueeze(1), w), fx.unsqueeze(1))
        return out / gamma.view(-1, 1, 1, 1)

    def forward(self, x, labels=None, eps=None):
        """Returns (recon (B,), kl (B,), kl_steps (B, T)) in nats."""
        cfg = self.cfg
        b = x.shape[0]
        if eps is None:
            eps = torch.randn(cfg.steps, b, cfg.z_size)
        onehot = F.one_hot(labels, cfg.num_classes).float() if cfg.num_classes else None
        c = self.canvas0.expand(b, *cfg.image_shape)
        h_enc, c_enc = self.h_enc0.expand(b, -1), self.c_enc0.expand(b, -1)
        h_dec, c_dec = self.h_dec0.expand(b, -1), self.c_dec0.expand(b, -1)
        kls = []
        for t in range(cfg.steps):
            x_hat = x - torch.sigmoid(c)
            r = self.read(x, x_hat, h_dec)
            enc_in = [r, h_dec] + ([onehot] if onehot is not None else [])
            h_enc, c_enc = self.encoder(torch.cat(enc_in, dim=1), (h_enc, c_enc))
            mu, log_sigma = self.posterior(h_enc).chunk(2, dim=1)
            sigma = torch.exp(log_sigma)
            z = mu + sigma * eps[t]
            dec_in = [z] + ([onehot] if onehot is not None else [])
            h_dec, c_dec = self.decoder(torch.cat(dec_in, dim=1), (h_dec, c_dec))
            c = c + self.write(h_dec)
            kls.append(0.5 * torch.sum(mu * mu + sigma * sigma - 2 * log_sigma - 1, dim=1))
        kl_steps = torch.stack(kls, dim=1)
        recon = F.binary_cross_entropy_with_logits(c, x, reduction="none").flatten(1).sum(1)
        return recon, kl_steps.sum(1), kl_steps


def paper_config(attention: bool = True) -> DrawConfig:
    return DrawConfig(height=28, width=28, channels=1, steps=64, enc_size=256, dec_size=256, z_size=100,
                      attention=attention, read_n=2, write_n=5)


def load_batch(batch: int) -> tuple[torch.Tensor, str]:
    npz = REPO.parent / "shared" / "data" / "binarized_mnist" / "binarized_mnist.npz"
    if npz.exists():
        with np.load(npz) as d:
            return torch.from_numpy(d["X_train"][:batch]).view(batch, 1, 28, 28).float(), str(npz)
    g = torch.Generator().manual_seed(0)
    return (torch.rand(batch, 1, 28, 28, generator=g) < 0.13).float(), "random 0/1 (binarized_mnist.npz not found)"


def train_step(model, opt, x, eps, loss_fn, autocast: bool = False):
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = loss_fn(model, x, eps)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
    opt.step()
    return loss.item()


def main(argv=None) -> int:
    from record import parse_bench_args, write_record  # bench/record.py, beside this file

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=100, help="images per step (default: 100)")
    ap.add_argument("--reps", type=int, default=7, help="timed steps per implementation (default: 7)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per implementation first (default: 2)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch.set_num_threads; 0 keeps torch's default (default: 0)")
    ap.add_argument("--flush-denormal", action="store_true",
                    help="torch.set_flush_denormal(True) for both implementations (default: off, as users run)")
    ap.add_argument("--no-attention", action="store_true", help="time the attention-free variant instead")
    ap.add_argument("--compile", action="store_true", help="also time the library with compile_step()")
    ap.add_argument("--bf16", action="store_true", help="also time the library under bf16 autocast (the recipes' "
                                                        "--train.precision bf16: GEMMs in bf16, state in fp32)")
    ap.add_argument("--sample-num", type=int, default=100, help="images per generate() call (default: 100)")
    ap.add_argument("--record", default="draw_speed", help="bench/results/<name>.json (default: draw_speed)")
    args = parse_bench_args(ap, argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    load_at_start = " ".join(f"{v:.2f}" for v in os.getloadavg())
    torch.manual_seed(0)
    cfg = paper_config(attention=not args.no_attention)
    lib = Draw(cfg)
    ref = ReferenceDraw(cfg)
    ref.load_state_dict(lib.state_dict(), strict=True)
    x, data_source = load_batch(args.batch)
    eps = torch.randn(cfg.steps, args.batch, cfg.z_size)

    with torch.no_grad():
        a = lib(x, eps=eps).nll_bound.mean().item()
        b_ = ref(x, eps=eps)
        b = (b_[0] + b_[1]).mean().item()
    print(f"same weights, same noise: library {a:.5f} nats, reference {b:.5f} nats")

    def lib_loss(m, x, eps):
        return m(x, eps=eps).nll_bound.mean()

    def ref_loss(m, x, eps):
        recon, kl, _ = m(x, eps=eps)
        return (recon + kl).mean()

    impls = {"library": (lib, lib_loss), "reference": (ref, ref_loss)}
    autocast = {}
    if args.bf16:
        lib_bf = Draw(cfg)
        lib_bf.load_state_dict(lib.state_dict())
        impls["library_bf16"] = (lib_bf, lib_loss)
        autocast["library_bf16"] = True
    if args.compile:
        lib_c = Draw(cfg)
        lib_c.load_state_dict(lib.state_dict())
        lib_c.compile_step()
        t0 = time.perf_counter()
        train_step(lib_c, torch.optim.Adam(lib_c.parameters(), 1e-3), x, eps, lib_loss)
        print(f"compile_step: first step (includes compilation) {time.perf_counter() - t0:.1f} s")
        impls["library_compiled"] = (lib_c, lib_loss)
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, (m, _) in impls.items()}
    times = {k: [] for k in impls}
    for _ in range(args.warmup):
        for k, (m, fn) in impls.items():
            train_step(m, opts[k], x, eps, fn, autocast.get(k, False))
    for _ in range(args.reps):
        for k, (m, fn) in impls.items():
            t0 = time.perf_counter()
            train_step(m, opts[k], x, eps, fn, autocast.get(k, False))
            times[k].append(time.perf_counter() - t0)
            print(f"  {k:18s} {times[k][-1]:.3f} s/step")

    lib.eval()
    sample_times = []
    lib.generate(args.sample_num, return_steps=False)
    for _ in range(max(3, args.reps // 2)):
        t0 = time.perf_counter()
        lib.generate(args.sample_num, return_steps=False)
        sample_times.append(time.perf_counter() - t0)

    figures = {"preset": f"paper MNIST: batch {args.batch}, 28x28, LSTM 256/256, z 100, T 64, read 2, write 5, "
                         f"attention {cfg.attention}",
               "torch_threads": torch.get_num_threads(), "flush_denormal": args.flush_denormal, "reps": args.reps}
    for k, ts in times.items():
        med = statistics.median(ts)
        figures[f"{k}_s_per_step"] = round(med, 4)
        figures[f"{k}_s_per_step_all"] = [round(t, 4) for t in ts]
        figures[f"{k}_train_images_per_s"] = round(args.batch / med, 1)
    figures["speedup_library_vs_reference"] = round(
        statistics.median(times["reference"]) / statistics.median(times["library"]), 2)
    if "library_bf16" in times:
        figures["speedup_bf16_vs_reference"] = round(
            statistics.median(times["reference"]) / statistics.median(times["library_bf16"]), 2)
        lib_bf.eval()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lib_bf.generate(args.sample_num, return_steps=False)
            bf_times = []
            for _ in range(max(3, args.reps // 2)):
                t0 = time.perf_counter()
                lib_bf.generate(args.sample_num, return_steps=False)
                bf_times.append(time.perf_counter() - t0)
        figures["sampling_bf16_images_per_s"] = round(args.sample_num / statistics.median(bf_times), 1)
    if "library_compiled" in times:
        figures["speedup_compiled_vs_reference"] = round(
            statistics.median(times["reference"]) / statistics.median(times["library_compiled"]), 2)
    figures["sampling_images_per_s"] = round(args.sample_num / statistics.median(sample_times), 1)
    figures["sampling_s_per_call_all"] = [round(t, 4) for t in sample_times]

    write_record(args.record, figures, allow_dirty=args.allow_dirty,
                 title="DRAW training speed: library vs straightforward implementation (CPU)",
                 notes=f"data: {data_source}. Step = forward + backward + grad-norm clip + Adam. "
                       "Interleaved repetitions, medians. Reference: nn.LSTMCell loop, per-call filterbanks, fp32. "
                       f"Load average at start: {load_at_start}.")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
