"""ASR training speed on this machine: audio seconds per second, fraction of the CPU's matmul throughput, fp32 vs bf16
autocast (bf16 only where the CPU has bf16 kernels; the other variants in the precision the cpu preset's "auto" picks
here, `main_precision`), bucketed vs unbucketed batches, with vs without the cpu preset's waveform augmentation, and
the real-time factor of greedy decoding.

Training steps are the recipe's: real batches from the synthetic corpus (waveforms -> log-mel on the device ->
SpecAugment -> BiLSTM-CTC -> engine TrainStep with AdamW and clipping). Variants are interleaved batch by batch so
machine noise hits them alike; medians are reported.

Utilisation = analytic model FLOPs x steps per second / GEMM FLOP/s, where model FLOPs are 3 x the forward
multiply-adds x 2 (backward ~ 2 x forward) over the padded model steps of a batch, and GEMM FLOP/s is measured in the
same run on square matrices of the same precision.

    python bench/asr_train_speed.py                          # the cpu preset shape, 6 timed batches per variant
    python bench/asr_train_speed.py --hidden 320 --layers 3 --batches 10
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: no spinning against other processes

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import load_recipe, parse_bench_args, write_record  # noqa: E402

from speechdraw.asr.augment import AugmentConfig, Augmenter  # noqa: E402
from speechdraw.asr.data import SpeechDataset, babble_pool, collate, durations, filter_alignable  # noqa: E402
from speechdraw.asr.decode import greedy_decode  # noqa: E402
from speechdraw.asr.features import FeatureConfig, FeatureExtractor, compute_stats, spec_augment  # noqa: E402
from speechdraw.asr.manifest import read_manifest  # noqa: E402
from speechdraw.asr.model import AcousticModel, AcousticModelConfig, ctc_loss_sum  # noqa: E402
from speechdraw.asr.text import TokenSet  # noqa: E402
from speechdraw.engine.device import Precision, cpu_bf16, resolve_precision  # noqa: E402
from speechdraw.engine.sampler import BucketBatchSampler, eval_batches  # noqa: E402
from speechdraw.engine.step import TrainStep  # noqa: E402

SYNTH = Path.home() / "speechdraw-runs" / "data" / "synth"


def gemm_flops(dtype: torch.dtype, n: int = 1024, reps: int = 10) -> float:
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(SYNTH), help=f"synthetic corpus directory (default: {SYNTH})")
    ap.add_argument("--hidden", type=int, default=256, help="LSTM units per direction (default: 256)")
    ap.add_argument("--layers", type=int, default=4, help="BiLSTM layers (default: 4)")
    ap.add_argument("--stack", type=int, default=3, help="frames per model step (default: 3, the cpu preset)")
    ap.add_argument("--max-seconds", type=float, default=160.0, help="padded seconds per batch (default: 160)")
    ap.add_argument("--batches", type=int, default=6, help="timed batches per variant (default: 6)")
    ap.add_argument("--decode-utts", type=int, default=200, help="dev utterances for the decoding RTF (default: 200)")
    args = parse_bench_args(ap)

    torch.manual_seed(0)
    tokens = TokenSet.characters()
    fcfg = FeatureConfig()
    mcfg = AcousticModelConfig(hidden=args.hidden, layers=args.layers, stack=args.stack, dropout=0.15)
    entries, _ = filter_alignable(read_manifest(Path(args.corpus) / "train.jsonl"), tokens, fcfg, mcfg)
    data = SpeechDataset(entries, tokens)
    # The cpu preset's augmentation chain, run in the training process here (the recipe runs it in a DataLoader
    # worker): the augmented variant's extra time is what the chain costs.
    acfg = AugmentConfig(**load_recipe("asr", "train").PRESETS["cpu"]["augment"])
    augmented = SpeechDataset(entries, tokens, augment=Augmenter(acfg, 16_000, 0, babble_pool(entries, 32, 0)))
    stats = compute_stats([data[i].wave for i in range(0, len(data), len(data) // 100)], fcfg)
    frontend = FeatureExtractor(fcfg, stats)
    lengths = durations(entries)

    # Batches of each sampler, epoch 1 (shuffled; epoch 0 is SortaGrad's shortest-first order).
    samplers = {"bucketed": BucketBatchSampler(lengths, max_total=args.max_seconds, num_buckets=20, seed=0),
                "unbucketed": BucketBatchSampler(lengths, max_total=args.max_seconds, num_buckets=1, seed=0)}
    padding = {k: s.padding_fraction(1) for k, s in samplers.items()}
    batches = {k: s.global_batches(1)[:args.batches + 1] for k, s in samplers.items()}
    batches["augmented"] = batches["bucketed"]

    # The precision the cpu preset trains in here ("auto"), and bf16 beside fp32 where this CPU has bf16 kernels.
    cpu = torch.device("cpu")
    main_prec = resolve_precision("auto", cpu)
    precs = ("fp32", "bf16") if cpu_bf16() != "none" else ("fp32",)
    models, steps = {}, {}
    for prec in precs:
        torch.manual_seed(0)
        models[prec] = AcousticModel(mcfg)
        opt = torch.optim.AdamW(models[prec].parameters(), lr=1e-4)
        steps[prec] = TrainStep(models[prec], opt, Precision(prec, cpu),
                                forward=lambda m, b: m(b[0], b[1]),
                                loss_fn=lambda out, b: ctc_loss_sum(out[0], out[1], b[2], b[3]), clip_norm=5.0)

    def run(variant: str, prec: str, idx: list[int]) -> tuple[float, float, int]:
        """One training step; returns (seconds, audio seconds, padded model steps)."""
        t0 = time.perf_counter()
        b = collate([(augmented if variant == "augmented" else data)[i] for i in idx])
        feats, lens = frontend(b.waves, b.wave_lens)
        feats = spec_augment(feats, lens, fcfg)
        steps[prec]([(feats, lens, b.targets, b.target_lens)], [float(b.target_lens.sum())])
        dt = time.perf_counter() - t0
        return dt, float(b.wave_lens.sum()) / 16_000, mcfg.output_frames(feats.shape[1]) * feats.shape[0]

    variants = [("bucketed", main_prec), ("unbucketed", main_prec), ("augmented", main_prec)]
    variants += [("bucketed", p) for p in precs if p != main_prec]
    for v, p in variants:  # warm-up: oneDNN builds its kernels on first use
        run(v, p, batches[v][0])
    timings = {vp: [] for vp in variants}
    for i in range(1, args.batches + 1):
        for v, p in variants:
            timings[(v, p)].append(run(v, p, batches[v][i]))

    flops = {p: gemm_flops(torch.float32 if p == "fp32" else torch.bfloat16) for p in precs}
    fwd = models[main_prec].flops_per_step()
    figures = {"model": f"{args.layers} x {args.hidden} BiLSTM, {args.stack * 10} ms steps, "
                        f"{models[main_prec].num_params() / 1e6:.2f} M params",
               "cpu_bf16": cpu_bf16(), "main_precision": main_prec,
               "batch_padded_seconds": args.max_seconds, "timed_batches_per_variant": args.batches,
               "torch_threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
               **{f"gemm_gflops_{p}": round(flops[p] / 1e9, 1) for p in precs},
               "padding_fraction_bucketed": round(padding["bucketed"], 4),
               "padding_fraction_unbucketed": round(padding["unbucketed"], 4)}
    for (v, p), rows in timings.items():
        secs = sum(r[0] for r in rows)
        audio = sum(r[1] for r in rows)
        model_flops = 3 * fwd * sum(r[2] for r in rows)
        key = f"{v}_{p}"
        figures[f"{key}_audio_s_per_s"] = round(audio / secs, 1)
        figures[f"{key}_median_step_s"] = round(statistics.median(r[0] for r in rows), 3)
        figures[f"{key}_model_gflops"] = round(model_flops / secs / 1e9, 2)
        figures[f"{key}_fraction_of_gemm"] = round(model_flops / secs / flops[p], 3)
    if "bf16" in precs:
        figures["bf16_speedup_vs_fp32"] = round(figures["bucketed_bf16_audio_s_per_s"]
                                                / figures["bucketed_fp32_audio_s_per_s"], 2)
    figures["augmented_slowdown_vs_bucketed"] = round(figures[f"bucketed_{main_prec}_audio_s_per_s"]
                                                      / figures[f"augmented_{main_prec}_audio_s_per_s"], 2)
    figures["bucketed_speedup_vs_unbucketed"] = round(figures[f"bucketed_{main_prec}_audio_s_per_s"]
                                                      / figures[f"unbucketed_{main_prec}_audio_s_per_s"], 2)

    # Greedy decoding real-time factor on dev utterances (features + model + best path; audio decoding excluded).
    dev = SpeechDataset(read_manifest(Path(args.corpus) / "dev.jsonl")[:args.decode_utts], tokens)
    model = models[main_prec].eval()
    for prec in precs:
        compute, audio = 0.0, 0.0
        for idx in eval_batches(durations(dev.entries), max_total=600.0):
            b = collate([dev[i] for i in idx])
            t0 = time.perf_counter()
            with torch.no_grad():
                feats, lens = frontend(b.waves, b.wave_lens)
                with Precision(prec, cpu).autocast():
                    lp, ol = model(feats, lens)
                greedy_decode(lp, ol, tokens)
            compute += time.perf_counter() - t0
            audio += float(b.wave_lens.sum()) / 16_000
        figures[f"greedy_decode_rtf_{prec}"] = round(compute / audio, 4)

    write_record("asr_train_speed", figures, allow_dirty=args.allow_dirty,
                 title="ASR training throughput (BiLSTM-CTC, CPU)", notes=(
        "audio_s_per_s = seconds of training audio per wall-clock second of full training steps (loading, features, "
        "SpecAugment, forward, CTC, backward, AdamW). fraction_of_gemm = analytic model FLOPs per second / the "
        "measured square-GEMM FLOP/s of the same precision. Measured on the 2-core VM while other processes were "
        "running (including the cpu-preset training run), so absolute figures are lower than on an idle machine; the "
        "variants were interleaved batch by batch, so the ratios are fair. With 2 OpenMP threads and the default "
        "(spinning) wait policy, throughput collapsed by up to 15x whenever another process took a core; "
        "OMP_WAIT_POLICY=PASSIVE avoids that."))


if __name__ == "__main__":
    main()
