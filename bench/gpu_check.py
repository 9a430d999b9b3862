"""GPU check of both recipes: throughput in bf16 and fp16 on one GPU and under torchrun on all GPUs, and losses
against a CPU run of the same batches.

    python bench/gpu_check.py                                  # CUDA: DRAW paper preset + ASR gpu preset
    python bench/gpu_check.py --steps 300 --ref-steps 10 --speech ~/speechdraw-runs/data/synth/train.jsonl
    python bench/gpu_check.py --dry-run --steps 3              # no GPU: the CPU parts only (the commands, the metric
                                                               # parsing, the loss comparison; tests run this)
    python bench/gpu_check.py --record gpu_check_h200          # also bench/results/gpu_check_h200.json (clean tree)
    python bench/gpu_check.py --recipes draw --gpu-args "--train.compile true" --record gpu_check_draw_compiled

Per recipe it runs, each in its own run directory (under --work, a temporary directory by default):
  cpu-ref   fp32 on the CPU for --ref-steps steps (accumulating over W batches per step when W GPUs are compared);
  1gpu-bf16, 1gpu-fp16   --steps steps on cuda:0;
  Wgpu-bf16  torchrun --nproc_per_node=W (all GPUs), when there is more than one.
Every run draws the same global batches (each batch's randomness is a function of the batch: engine/seed.py), so the
first --ref-steps losses of a GPU run compare with the CPU run's; DRAW's noise comes from the device's generator, so
its losses agree in mean, not step by step. Throughput: seconds of audio (ASR) or images (DRAW) per second, median over
the logged steps after the first 10%; the fraction of peak is approximate model FLOPs (6 x parameters x frames, or
x images x glimpses) over the dense matmul rate this GPU reaches in the same precision (measured here on an 8192^3
GEMM), not the datasheet's.

The first --ref-steps losses pair by weight updates, not steps: an fp16 run skips updates while GradScaler lowers its
scale (10 steps for the DRAW paper preset on an H200), and those steps are counted as overflow_steps.

--json and --record are written again as each run ends ("complete": false until the last), so a check stopped by a
time limit keeps the runs it finished. Without CUDA (and without --dry-run) it prints why and exits 0. In --dry-run
the "GPU" runs are CPU fp32 runs, so the loss comparison must come out at ~0 (a check of the comparison itself).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import parse_bench_args, write_record  # noqa: E402  bench/record.py, beside this file

DRAW_ARGS = ["recipes/draw/train.py", "--preset", "paper"]
DRAW_DRY = ["recipes/draw/train.py", "--preset", "tiny", "--model.enc_size", "32", "--model.dec_size", "32",
            "--model.z_size", "8", "--model.steps", "4", "--data.max_train", "400", "--data.max_valid", "100",
            "--data.batch_size", "25"]
ASR_ARGS = ["recipes/asr/train.py", "--preset", "gpu", "--train.num_workers", "4"]
ASR_DRY = ["recipes/asr/train.py", "--preset", "tiny", "--model.hidden", "32", "--model.layers", "1",
           "--data.max_seconds", "8", "--features.freq_masks", "2", "--features.time_masks", "2"]


def matmul_tflops(dtype: torch.dtype, n: int = 8192, reps: int = 20) -> float:
    """Dense GEMM rate this GPU reaches in `dtype` (TFLOP/s): the "peak" the recipes are measured against."""
    a, b = torch.randn(n, n, device="cuda", dtype=dtype), torch.randn(n, n, device="cuda", dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def run(args: list[str], run_dir: Path, ranks: int, log) -> list[dict]:
    """One recipe run; returns its training metric rows (raises with the tail of stderr on failure)."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"] if ranks > 1 else []
    cmd = [sys.executable, *launcher, *args, "--train.run_dir", str(run_dir), "--train.log_every", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    log(" ".join(cmd[1:]))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:])} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == "train"]


def num_params(run_dir: Path) -> int:
    from speechdraw.engine.checkpoint import load_checkpoint

    state = load_checkpoint(sorted((run_dir / "checkpoints").glob("ckpt-*.pt"))[-1])
    return sum(v.numel() for k, v in state["model"].items() if v.is_floating_point())


def throughput(recipe: str, rows: list[dict], run_dir: Path, ranks: int) -> tuple[float, float]:
    """(units per second, model FLOP/s): seconds of audio (ASR) or images (DRAW), median over the steady steps."""
    cfg = json.loads((run_dir / "config.json").read_text())["config"]
    steady = rows[len(rows) // 10:] or rows
    params = num_params(run_dir)
    if recipe == "asr":
        rate = statistics.median(r["audio_per_second"] for r in steady if math.isfinite(r["audio_per_second"]))
        frames_per_second = 1000.0 / (cfg["features"]["hop_ms"] * cfg["model"]["stack"])  # output frames per second
        return rate, 6 * params * rate * frames_per_second
    rate = statistics.median(cfg["data"]["batch_size"] * ranks / r["s_per_step"] for r in steady)
    return rate, 6 * params * rate * cfg["model"]["steps"]


def is_update(row: dict) -> bool:
    """Whether a logged step changed the weights: fp16 steps whose gradients overflowed (GradScaler skips them and
    lowers its scale, routinely in the first steps) and skipped non-finite steps did not."""
    return math.isfinite(row["grad_norm"]) and not row.get("skipped")


def seconds_per_step(rows: list[dict]) -> float:
    """Median wall time between consecutive logged steps (every step is logged) after the first 10%."""
    times = [r["time"] for r in rows[len(rows) // 10:] or rows]
    return statistics.median(b - a for a, b in zip(times, times[1:])) if len(times) > 1 else math.nan


def compare(ref: list[dict], rows: list[dict]) -> dict:
    """Loss agreement at equal numbers of weight updates: the largest per-step and the mean relative difference.

    A run's step whose weights have had k updates is paired with the CPU reference's step k + 1 (the fp32 reference
    updates at every step), so an fp16 run's overflow steps at the start do not pair a model that has not moved with
    one that has."""
    a = {r["step"]: r["loss"] for r in ref}
    pairs, updates = [], 0
    for r in rows:
        if updates + 1 in a:
            pairs.append((r["loss"], a[updates + 1]))
        updates += is_update(r)
    if not pairs:
        return {"steps": 0}
    per_step = [abs(run - want) / abs(want) for run, want in pairs]
    mean_ref, mean_run = statistics.fmean(p[1] for p in pairs), statistics.fmean(p[0] for p in pairs)
    return {"steps": len(pairs), "max_step_rel": max(per_step), "mean_rel": abs(mean_run - mean_ref) / abs(mean_ref)}


def check_recipe(recipe: str, base: list[str], work: Path, args, gpus: int, peaks: dict, log):
    """Yields one result row per compared run, as each run ends."""
    ref_dir = work / recipe / "cpu-ref"
    world = gpus if gpus > 1 else 1
    ref = run([*base, "--train.device", "cpu", "--train.precision", "fp32", "--train.max_steps", str(args.ref_steps),
               "--train.accum_steps", str(world)], ref_dir, 1, log)
    plan = [("1gpu-bf16", "bf16", 1), ("1gpu-fp16", "fp16", 1)] if not args.dry_run else [("cpu-fp32", "fp32", 1)]
    if gpus > 1:
        plan.append((f"{gpus}gpu-bf16", "bf16", gpus))
    for name, precision, ranks in plan:
        run_dir = work / recipe / name
        device = ["--train.device", "cpu"] if args.dry_run else []
        rows = run([*base, *device, "--train.precision", precision, "--train.max_steps", str(args.steps),
                    "--train.accum_steps", str(world // ranks), *shlex.split(args.gpu_args)], run_dir, ranks, log)
        units, flops = throughput(recipe, rows, run_dir, ranks)
        peak = peaks.get(precision)
        cmp_ = compare(ref, rows)
        yield {"recipe": recipe, "run": name, "steps": len(rows), "units_per_s": units,
               "unit": "s audio" if recipe == "asr" else "images", "s_per_step": seconds_per_step(rows),
               "overflow_steps": sum(not is_update(r) for r in rows),
               "model_tflops": flops / 1e12, "peak_fraction": flops / 1e12 / (peak * ranks) if peak else None,
               "vs_cpu_steps": cmp_["steps"], "vs_cpu_max_step_rel": cmp_.get("max_step_rel"),
               "vs_cpu_mean_rel": cmp_.get("mean_rel")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300, help="optimiser steps of each GPU run")
    p.add_argument("--ref-steps", type=int, default=10, help="steps of the CPU reference run")
    p.add_argument("--recipes", default="draw,asr", help="comma-separated: draw, asr")
    p.add_argument("--mnist", default=str(SHARED / "data" / "mnist"), help="MNIST IDX directory for DRAW")
    p.add_argument("--speech", default=str(Path.home() / "speechdraw-runs" / "data" / "synth" / "train.jsonl"),
                   help="speech manifest for the ASR recipe (trains and validates on it)")
    p.add_argument("--work", default="", help="run directories go here (default: a temporary directory)")
    p.add_argument("--json", default="", help="also write the results to this JSON file")
    p.add_argument("--asr-args", default="", help="more arguments for every ASR run, one string (e.g. "
                   "'--augment.codec_prob 0' where PyAV is missing)")
    p.add_argument("--draw-args", default="", help="more arguments for every DRAW run, one string")
    p.add_argument("--gpu-args", default="", help="more arguments for the compared runs only, not the CPU reference "
                   "(e.g. '--train.compile true': the reference's losses need no compiling)")
    p.add_argument("--dry-run", action="store_true", help="no GPU needed: the GPU runs become CPU fp32 runs")
    p.add_argument("--record", default="", metavar="NAME", help="also write bench/results/NAME.json")
    args = parse_bench_args(p, argv)  # refuses a tree with uncommitted changes (before any work) without --allow-dirty
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731

    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine: nothing to check (--dry-run runs the CPU parts)")
        return 0
    gpus = 0 if args.dry_run else torch.cuda.device_count()
    peaks = {} if args.dry_run else {"bf16": matmul_tflops(torch.bfloat16), "fp16": matmul_tflops(torch.float16)}
    if peaks:
        log(f"{torch.cuda.get_device_name(0)} x {gpus}: dense GEMM {peaks['bf16']:.0f} TFLOP/s bf16, "
            f"{peaks['fp16']:.0f} fp16")
    data = {"draw": ["--data.root", args.mnist, *shlex.split(args.draw_args)],
            "asr": ["--data.train", args.speech, "--data.dev", args.speech, "--data.max_dev_utts", "50",
                    *shlex.split(args.asr_args)]}
    bases = {"draw": DRAW_DRY if args.dry_run else DRAW_ARGS, "asr": ASR_DRY if args.dry_run else ASR_ARGS}
    present = {"draw": (Path(args.mnist) / "train-images-idx3-ubyte.gz").is_file(), "asr": Path(args.speech).is_file()}
    results = []

    def save(complete: bool) -> None:
        """--json and --record after every run, so a check stopped by a time limit keeps the runs it finished."""
        figures = {"device": torch.cuda.get_device_name(0) if gpus else "cpu (dry run)", "gpus": gpus,
                   "cuda": torch.version.cuda, "torch": torch.__version__, "peak_tflops": peaks,
                   "complete": complete, "results": results}
        if args.json:
            tmp_json = Path(args.json).with_suffix(".tmp")
            tmp_json.write_text(json.dumps(figures, indent=1))
            os.replace(tmp_json, args.json)
        if args.record:
            write_record(args.record, figures, allow_dirty=args.allow_dirty,
                         title="GPU check: both recipes' throughput per precision and their losses against the CPU's")

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(args.work or tmp)
        for recipe in [r for r in args.recipes.split(",") if r]:
            if not present[recipe]:
                log(f"gpu_check: skipping {recipe}: no data at {args.mnist if recipe == 'draw' else args.speech}")
                continue
            for result in check_recipe(recipe, [*bases[recipe], *data[recipe]], work, args, gpus, peaks, log):
                results.append(result)
                save(complete=False)

    print(f"{'recipe':6} {'run':10} {'steps':>5} {'throughput':>18} {'model TFLOP/s':>13} {'of peak':>8} "
          f"{'loss vs CPU: max step / mean':>30}")
    for r in results:
        frac = f"{r['peak_fraction']:.1%}" if r["peak_fraction"] is not None else "n/a"
        cmp_ = (f"{r['vs_cpu_max_step_rel']:.2e} / {r['vs_cpu_mean_rel']:.2e} ({r['vs_cpu_steps']} steps)"
                if r["vs_cpu_steps"] else "n/a")
        print(f"{r['recipe']:6} {r['run']:10} {r['steps']:>5} {r['units_per_s']:>10.1f} {r['unit']:>7}/s "
              f"{r['model_tflops']:>13.3f} {frac:>8} {cmp_:>30}")
    save(complete=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
