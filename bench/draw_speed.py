"""DRAW training speed: the library model against a straightforward implementation of the same equations.

    python bench/draw_speed.py --threads 1           # the record: paper MNIST preset, batch 100, T 64, 1 thread
    python bench/draw_speed.py --reps 3 --warmup 1   # quicker, noisier
    python bench/draw_speed.py --threads 1 --compile --record draw_speed_compile   # also --train.compile's step

Four training steps are timed in one process, interleaved (library fp32, reference fp32, library bf16, reference
bf16, library fp32, ...), so drift in the machine's speed hits all alike; the figures are medians. bf16 means bf16
autocast as the recipes run it with --train.precision bf16: for the library GEMM operands in bf16 with fp32 results,
LSTM cells, attention and the canvas in fp32 (see Draw._precision); for the reference plain autocast. All four start
from the same weights (the reference loads the library's state dict unchanged). One training step = forward +
backward + gradient-norm clipping + Adam on a batch of 100 binarised MNIST images (the fixed binarisation from
../shared/data/binarized_mnist when present, random 0/1 images otherwise).

Each step is timed twice: wall clock, and the process's CPU time. On a machine that other jobs load, wall time swings
with the share of a core the process gets; CPU time (one thread) much less. Ratios of either are reported.

Also in the record:
- the CPU model and the flags that decide kernels (avx512f, avx512_bf16, amx_*), torch version, threads, load average
  at start and end, and the GEMM kernel (MKL or oneDNN, speechdraw/draw/gemm.py) the library chose per shape;
- GEMM throughput at the step's shapes (fp32 and bf16, both kernels), the step's GEMM FLOPs, and the fraction of
  the machine's best GEMM throughput a step reaches (the GEMMs alone at the best rate, over the step's CPU time);
- a per-part profile of one library step (torch.profiler: LSTM cells, read, write, the posterior and head linears,
  forward and backward, the deferred weight gradients, Adam), with the KL and the sampling of z timed alone at the
  step's shapes;
- sampling throughput (`generate`, images/s) and the GIF renderer's time for 64 images x 64 glimpses.

`ReferenceDraw` below is the baseline: the way public ports write DRAW (an nn.LSTMCell per glimpse, separate Linear
heads, filterbanks rebuilt from per-op code with an epsilon normalisation, no fusion, torch's default kernels).
tests/test_draw_model.py imports it to check that the library computes the same function (values and gradients).

On a 2-core machine that other jobs share, two OpenMP threads per process spin-wait on each other whenever another
process holds a core, and a step can take 10x longer; --threads 1 gives stable figures there.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from speechdraw.draw import gemm, render  # noqa: E402
from speechdraw.draw.model import Draw, DrawConfig, gaussian_kl  # noqa: E402


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


def lib_loss(m, x, eps):
    return m(x, eps=eps).nll_bound.mean()


def ref_loss(m, x, eps):
    recon, kl, _ = m(x, eps=eps)
    return (recon + kl).mean()


def cpu_info() -> dict:
    """CPU model and the flags that decide which kernels are fast (from /proc/cpuinfo; empty elsewhere)."""
    info = {"model": "unknown", "flags": []}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and info["model"] == "unknown":
            info["model"] = value.strip()
        elif key.strip() == "flags":
            wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx512_vp2intersect")
            info["flags"] = sorted(f for f in value.split() if f in wanted or f.startswith("amx"))
            break
    return info


def step_gemms(cfg: DrawConfig, batch: int) -> list[tuple[str, int, int, int, int]]:
    """The GEMMs of one library training step: (name, M, K, N, count). Forward and input-gradient GEMMs run once per
    glimpse at M = batch; each weight's gradient is one GEMM over all glimpses (K = T batch). The reference runs the
    same FLOPs, its LSTM GEMMs split in two and its weight gradients in T pieces."""
    t, b = cfg.steps, batch
    # Without attention r_t = [x, x^_t]; the library multiplies the constant x half once per batch (into the bias).
    enc_in = (cfg.read_size if cfg.attention else cfg.num_dims) + cfg.dec_size + cfg.enc_size
    dec_in = cfg.z_size + cfg.dec_size
    heads = cfg.patch_size + (2 * 5 if cfg.attention else 0)
    maps = {"encoder": (enc_in, 4 * cfg.enc_size), "posterior": (cfg.enc_size, 2 * cfg.z_size),
            "decoder": (dec_in, 4 * cfg.dec_size), "heads": (cfg.dec_size, heads)}
    out = [] if cfg.attention else [("encoder x term, once per batch", b, cfg.num_dims, 4 * cfg.enc_size, 1)]
    for name, (k, n) in maps.items():
        out += [(f"{name} forward", b, k, n, t), (f"{name} input grad", b, n, k, t),
                (f"{name} weight grad", n, t * b, k, 1)]
    return out


def _cpu_timed(fn, reps: int) -> list[float]:
    ts = []
    for _ in range(reps):
        t0 = time.process_time()
        fn()
        ts.append(time.process_time() - t0)
    return ts


def gemm_throughput(gemms, reps: int) -> dict:
    """GFLOP/s (median CPU time of reps calls after one warm-up) per (shape, dtype, kernel)."""
    out = {}
    for name, m, k, n, _ in gemms:
        row = {}
        for dtype in (torch.float32, torch.bfloat16):
            a = torch.randn(m, k).to(dtype)
            w = torch.randn(n, k).to(dtype)
            for kname, fn in gemm.KERNELS.items():
                if kname == "onednn" and not gemm._usable(dtype, a.device):
                    continue
                fn(a, w, None)
                med = statistics.median(_cpu_timed(lambda: fn(a, w, None), reps))  # noqa: B023
                row[f"{str(dtype)[6:]} {kname}"] = round(2 * m * k * n / max(med, 1e-9) / 1e9, 1)
        out[f"{name} {m}x{k}x{n}"] = row
    return out


PARTS = {  # profiler event -> part of the step (totals include the GEMMs inside each node)
    "_GlimpseLSTM": "LSTM cells forward (encoder + decoder, gate GEMMs included)",
    "_GlimpseLSTMBackward": "LSTM cells backward (input-gradient GEMMs included)",
    "_Read": "read attention forward (filterbanks + filtering)",
    "_ReadBackward": "read attention backward",
    "_Write": "write attention forward (filterbanks + filtering)",
    "_WriteBackward": "write attention backward",
    "_GlimpseLinear": "posterior and head linears forward",
    "_GlimpseLinearBackward": "posterior and head linears backward",
    "_SharedWeightGateBackward": "weight gradients (one GEMM per weight over all glimpses)",
    "Optimizer.step#Adam.step": "Adam update",
}


def profile_step(model, opt, x, eps, autocast: bool) -> dict:
    """Seconds per part of one profiled library step and the share of the step each takes."""
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with record_function("draw_step"):
            train_step(model, opt, x, eps, lib_loss, autocast)
    totals = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages()}
    step = totals["draw_step"]
    parts = {label: round(totals.get(key, 0.0), 4) for key, label in PARTS.items()}
    parts["everything else (KL, loss, sampling z, stacking, autograd engine, grad clipping)"] = round(
        step - sum(parts.values()), 4)
    return {"step_s_under_profiler": round(step, 4), "seconds": parts,
            "share": {k: round(v / step, 3) for k, v in parts.items()}}


def kl_and_sampling_alone(cfg: DrawConfig, batch: int, reps: int) -> dict:
    """CPU seconds of the KL term and of sampling z (forward + backward), timed alone on (T, B, Z) tensors."""
    shape = (cfg.steps, batch, cfg.z_size)
    mu = torch.randn(shape, requires_grad=True)
    log_sigma = (0.1 * torch.randn(shape)).requires_grad_()
    eps = torch.randn(shape)

    def kl():
        gaussian_kl(mu, log_sigma).sum().backward()

    def sampling():
        torch.stack([torch.addcmul(mu[t], torch.exp(log_sigma[t]), eps[t]) for t in range(cfg.steps)]).sum().backward()

    return {"kl_fwd_bwd_s": round(statistics.median(_cpu_timed(kl, reps)), 5),
            "sampling_z_fwd_bwd_s": round(statistics.median(_cpu_timed(sampling, reps)), 5)}


def main(argv=None) -> int:
    from record import parse_bench_args, write_record  # bench/record.py, beside this file

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=100, help="images per step (default: 100)")
    ap.add_argument("--reps", type=int, default=9, help="timed steps per implementation (default: 9)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per implementation first (default: 2)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch.set_num_threads; 0 keeps torch's default (default: 0)")
    ap.add_argument("--no-attention", action="store_true", help="time the attention-free variant instead")
    ap.add_argument("--compile", action="store_true", help="also time the library with compile_step()")
    ap.add_argument("--sample-num", type=int, default=100, help="images per generate() call (default: 100)")
    ap.add_argument("--record", default="draw_speed", help="bench/results/<name>.json (default: draw_speed)")
    args = parse_bench_args(ap, argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_at_start = [round(v, 2) for v in os.getloadavg()]
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

    def copy_of(cls):
        m = cls(cfg)
        m.load_state_dict(lib.state_dict())
        return m

    # name -> (model, loss, bf16 autocast)
    impls = {"library_fp32": (lib, lib_loss, False), "reference_fp32": (ref, ref_loss, False),
             "library_bf16": (copy_of(Draw), lib_loss, True),
             "reference_bf16": (copy_of(ReferenceDraw), ref_loss, True)}
    compile_s = {}
    if args.compile:  # what --train.compile true runs: each glimpse through torch.compile (Draw.compile_step)
        # The default (4 glimpses per compiled call), and 1 per call for comparison.
        for name, ac, per_call in (("library_compiled_fp32", False, 4), ("library_compiled_bf16", True, 4),
                                   ("library_compiled_1_glimpse_per_call_bf16", True, 1)):
            # An empty inductor cache, so the first step's time is the compilation a user's first run pays.
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="draw-speed-inductor-")
            lib_c = copy_of(Draw)
            lib_c.compile_step(per_call)
            t0 = time.perf_counter()
            train_step(lib_c, torch.optim.Adam(lib_c.parameters(), 1e-3), x, eps, lib_loss, ac)
            compile_s[name] = round(time.perf_counter() - t0, 1)
            print(f"{name}: first step (includes compilation, empty cache) {compile_s[name]} s")
            impls[name] = (lib_c, lib_loss, ac)
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, (m, _, _) in impls.items()}
    wall = {k: [] for k in impls}
    cpu = {k: [] for k in impls}
    for _ in range(args.warmup):
        for k, (m, fn, ac) in impls.items():
            train_step(m, opts[k], x, eps, fn, ac)
    for _ in range(args.reps):
        for k, (m, fn, ac) in impls.items():
            t0, c0 = time.perf_counter(), time.process_time()
            train_step(m, opts[k], x, eps, fn, ac)
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
            print(f"  {k:22s} {wall[k][-1]:.3f} s wall  {cpu[k][-1]:.3f} s cpu")

    med_wall = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    figures = {"preset": f"paper MNIST: batch {args.batch}, 28x28, LSTM 256/256, z 100, T {cfg.steps}, read 2, "
                         f"write 5, attention {cfg.attention}",
               "cpu": cpu_info(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
               "reps": args.reps, "load_average_at_start": load_at_start}
    steps = {}
    for k in impls:
        steps[k] = {"cpu_s_per_step": round(med_cpu[k], 4), "wall_s_per_step": round(med_wall[k], 4),
                    "cpu_s_all": [round(t, 4) for t in cpu[k]], "wall_s_all": [round(t, 4) for t in wall[k]],
                    "train_images_per_cpu_s": round(args.batch / med_cpu[k], 1)}
    figures["steps"] = steps
    if compile_s:
        figures["compiled_first_step_s"] = compile_s
    speedups = {}
    for k in impls:
        if k.startswith("library"):
            for r in ("reference_fp32", "reference_bf16"):
                speedups[f"{k} vs {r}"] = {"cpu": round(med_cpu[r] / med_cpu[k], 2),
                                           "wall": round(med_wall[r] / med_wall[k], 2)}
    figures["speedup"] = speedups
    best = min(("library_fp32", "library_bf16"), key=med_cpu.get)
    figures["library_best_precision_here"] = best.split("_")[1]
    figures["bf16_over_fp32_library_cpu"] = round(med_cpu["library_fp32"] / med_cpu["library_bf16"], 2)
    figures["gemm_kernels_chosen"] = gemm.choices()

    # Where the time goes: GEMM throughput at the step's shapes and a per-part profile.
    gemms = step_gemms(cfg, args.batch)
    rates = gemm_throughput(gemms, reps=5)
    flops = sum(2 * m * k * n * c for _, m, k, n, c in gemms)
    figures["gemm_gflop_per_s_at_step_shapes"] = rates
    figures["step_gemm_gflop"] = round(flops / 1e9, 2)
    for prec in ("fp32", "bf16"):
        dt = "float32" if prec == "fp32" else "bfloat16"
        bound = sum(2 * m * k * n * c / (max(v for kk, v in rates[f"{name} {m}x{k}x{n}"].items() if kk.startswith(dt))
                                        * 1e9) for name, m, k, n, c in gemms)
        figures[f"gemm_only_bound_s_{prec}"] = round(bound, 4)
        figures[f"fraction_of_gemm_throughput_library_{prec}"] = round(bound / med_cpu[f"library_{prec}"], 3)
        figures[f"fraction_of_gemm_throughput_reference_{prec}"] = round(bound / med_cpu[f"reference_{prec}"], 3)
        # The most any implementation of these equations could gain over the reference here: a step that spent
        # its time in nothing but its GEMMs (same FLOPs as the reference's) at the best measured kernel per shape.
        figures[f"speedup_ceiling_vs_reference_{prec}"] = round(med_cpu[f"reference_{prec}"] / bound, 2)
        figures[f"achieved_gflop_per_cpu_s_library_{prec}"] = round(flops / med_cpu[f"library_{prec}"] / 1e9, 1)
    figures["profile_library_fp32"] = profile_step(lib, opts["library_fp32"], x, eps, False)
    figures["profile_library_bf16"] = profile_step(impls["library_bf16"][0], opts["library_bf16"], x, eps, True)
    figures["kl_and_sampling_alone_cpu_s"] = kl_and_sampling_alone(cfg, args.batch, reps=5)

    # Sampling throughput and the GIF renderer.
    sampling = {}
    for prec, ac in (("fp32", False), ("bf16", True)):
        m = impls[f"library_{prec}"][0].eval()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=ac):
            m.generate(args.sample_num, return_steps=False)
            ts = _cpu_timed(lambda: m.generate(args.sample_num, return_steps=False), max(3, args.reps // 2))  # noqa: B023
        sampling[f"images_per_cpu_s_{prec}"] = round(args.sample_num / statistics.median(ts), 1)
    figures["sampling"] = sampling
    if cfg.attention:
        g = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        trace = lib.generate(64, return_steps=True, generator=g)
        t1 = time.perf_counter()
        frames = render.canvas_frames(trace.canvases, trace.write, cfg.write_n, scale=3)
        t2 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            render.save_gif(frames, Path(tmp) / "samples.gif")
            size = (Path(tmp) / "samples.gif").stat().st_size
        t3 = time.perf_counter()
        figures["gif_64_images_64_glimpses"] = {"generate_s": round(t1 - t0, 3), "frames_s": round(t2 - t1, 3),
                                                "save_gif_s": round(t3 - t2, 3), "total_s": round(t3 - t0, 3),
                                                "gif_bytes": size}
    figures["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]

    write_record(args.record, figures, allow_dirty=args.allow_dirty,
                 title="DRAW training speed: library vs straightforward implementation (CPU)",
                 notes=f"data: {data_source}. Step = forward + backward + grad-norm clip + Adam. "
                       "Interleaved repetitions, medians; CPU time is the process's (one thread). Reference: "
                       "nn.LSTMCell loop, per-call filterbanks, torch's default kernels. Load average at start: "
                       f"{load_at_start}.")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
