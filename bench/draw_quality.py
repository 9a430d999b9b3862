"""DRAW quality: test NLL bounds and learning curves of one or two trained runs (attention vs none), one record.

    python bench/draw_quality.py --runs ~/speechdraw-runs/draw-paper ~/speechdraw-runs/draw-noattn
    python bench/draw_quality.py --runs ~/speechdraw-runs/draw-tiny --iwae-k 20 --name draw_quality_tiny
    python bench/draw_quality.py --runs draw-mnist ~/speechdraw-runs/draw-cond4 --data MNIST_IDX_DIR  # a shipped model

Each run directory holds release/ (scored by recipes/draw/evaluate.py: the negative ELBO and the importance-weighted
bound with --iwae-k samples, both on the full test set; --iwae-images N takes a seeded random N instead, recorded with
its seed and indices hash, never the first N) and metrics.jsonl (the validation bound of every epoch: the learning
curve; the training rows' seconds per step). A shipped model (a name such as draw-mnist, an archive or a release
directory) is scored the same way; it has no learning curve. The paper's figures on the Larochelle & Murray
binarisation: <= 80.97 nats with attention, 87.40 without (T = 64). With two runs the record says whether attention
won, and whether the hyper-parameters other than attention were identical.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import load_recipe, parse_bench_args, write_record  # noqa: E402

PAPER = {"attention": 80.97, "no_attention": 87.40}



def learning_curve(run: Path) -> tuple[list[dict], float | None]:
    """Validation rows [{epoch, step, bound, train_minutes}] and the median seconds per training step."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    val = [{"epoch": r["epoch"], "step": r["step"], "bound": round(r["bound"], 3),
            "train_minutes": round(r.get("train_minutes", float("nan")), 2)} for r in rows if r["split"] == "val"]
    speeds = [r["s_per_step"] for r in rows if r["split"] == "train" and r.get("s_per_step")]
    return val, (statistics.median(speeds) if speeds else None)


def hyper_parameters(config: dict) -> dict:
    """A run's resolved config without what may differ between the two variants: attention, paths, threads."""
    c = json.loads(json.dumps(config))
    c["model"].pop("attention")
    for k in ("run_dir", "resume", "max_steps"):
        c["train"].pop(k, None)
    c.pop("threads", None)
    return c


def optional(r: dict, field: str, digits: int) -> float | None:
    """A figure an evaluation may not have, rounded; None where it was not measured (the IWAE fields with --iwae-k 0,
    the wrong-label bound of an unconditional model)."""
    return round(r[field], digits) if field in r else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True, help="one or two run directories (with release/ and "
                                                             "metrics.jsonl) or shipped models (required)")
    ap.add_argument("--data", default=None, help="score on this IDX directory or .npz instead of the recorded data")
    ap.add_argument("--iwae-k", type=int, default=100, help="importance samples (default: 100)")
    ap.add_argument("--iwae-images", type=int, default=0, help="IWAE bound on a random N test images (0: all; "
                                                               "default: 0)")
    ap.add_argument("--subset-seed", type=int, default=0, help="seed of the random IWAE subset (default: 0)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    ap.add_argument("--name", default="draw_quality", help="record name (default: draw_quality)")
    ap.add_argument("--notes", default="", help="extra notes for the record")
    ap.add_argument("--results-dir", default=None, help="write the record here instead of bench/results")
    args = parse_bench_args(ap, argv)
    if len(args.runs) > 2:
        ap.error("give one or two runs")
    import torch

    from speechdraw.models import ModelError, resolve_model

    torch.set_num_threads(args.threads)
    evaluate = load_recipe("draw", "evaluate")
    figures: dict = {}
    configs = {}
    for spec in args.runs:
        run = Path(spec).expanduser()
        is_run = (run / "release").is_dir()
        try:
            release = run / "release" if is_run else resolve_model(spec, kind="draw", progress=False)
        except ModelError as e:
            ap.error(f"{e}; nor is it a run directory (with release/ in it)")
        r = evaluate.evaluate_release(str(release), data=args.data, iwae_k=args.iwae_k,
                                      iwae_images=args.iwae_images, subset_seed=args.subset_seed)
        cfg = r["config"]
        key = "attention" if cfg["attention"] else "no_attention"
        if key in figures:
            key = f"{key}_{run.name}"
        curve, s_per_step = learning_curve(run) if is_run else ([], None)
        configs[key] = json.loads((run / "config.json").read_text())["config"] if is_run else None
        figures[key] = {
            "run": str(run) if is_run else None, "shipped_model": None if is_run else spec, "data": r["data"],
            "model": (f"LSTM {cfg['enc_size']}/{cfg['dec_size']}, z {cfg['z_size']}, T {cfg['steps']}, "
                      + (f"read {cfg['read_n']} write {cfg['write_n']}" if cfg["attention"] else "no attention")
                      + (f", class-conditional ({cfg['num_classes']} labels)" if cfg.get("num_classes") else "")),
            "test_bound_nats": round(r["test_bound"], 2), "test_bound_stderr": round(r["test_bound_stderr"], 2),
            "test_recon": round(r["test_recon"], 2), "test_kl": round(r["test_kl"], 2),
            "test_images": r["test_images"], "test_subset": r["test_subset"],
            "test_bound_seconds": round(r["test_bound_seconds"], 3),
            # class-conditional runs: the same images with each given the next class's label (None otherwise)
            "test_bound_wrong_label_nats": optional(r, "test_bound_wrong_label", 2),
            "iwae_bound_nats": optional(r, "iwae_bound", 2), "iwae_bound_stderr": optional(r, "iwae_bound_stderr", 2),
            "iwae_seconds": optional(r, "iwae_seconds", 3),
            "iwae_k": r.get("iwae_k"), "iwae_images": r.get("iwae_images"), "iwae_subset": r.get("iwae_subset"),
            "elbo_on_iwae_images": optional(r, "elbo_bound_on_iwae_images", 2),
            "best_epoch": r["release_metrics"].get("epoch"), "valid_bound_best": r["release_metrics"].get(
                "valid_bound"), "epochs_trained": len(curve) if is_run else None,
            "train_minutes": r["release_metrics"].get("train_minutes"), "median_s_per_step": s_per_step,
            "learning_curve": curve,
            # The paper's figure applies to its configuration on its binarisation only.
            "paper_test_bound": (PAPER[key] if key in PAPER and cfg["steps"] == 64 and "Larochelle" in r["data"]
                                 else None),
        }
    keys = [k for k in figures if k in PAPER]
    if len(keys) == 2:
        a, n = figures["attention"], figures["no_attention"]
        figures["attention_wins"] = a["test_bound_nats"] < n["test_bound_nats"]
        if None not in (configs["attention"], configs["no_attention"]):  # two runs, not shipped models
            figures["identical_hyper_parameters"] = hyper_parameters(configs["attention"]) == hyper_parameters(
                configs["no_attention"])
            figures["same_epochs"] = a["epochs_trained"] == n["epochs_trained"]
    write_record(args.name, figures, allow_dirty=args.allow_dirty,
                 title="DRAW quality: test NLL bounds and learning curves",
                 notes="Bounds in nats per image; test bound = negative ELBO with one latent sequence per image over "
                       "the whole test set; IWAE = importance-weighted bound on the test images iwae_subset names "
                       "(all by default). " + args.notes,
                 results_dir=Path(args.results_dir) if args.results_dir else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
