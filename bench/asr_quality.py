"""Greedy CER/WER of a trained speech release on every synthetic test set, per group of utterances, with its training
time and issue 13's target checks.

    python bench/asr_quality.py --model ~/speechdraw-runs/asr-cpu/release --run ~/speechdraw-runs/asr-cpu
    python bench/asr_quality.py --model REL --baseline bench/results/asr_quality.json   # targets vs the old model
    python bench/asr_quality.py --model REL --max-utts 100 --results-dir /tmp/trial --allow-dirty   # a quick look

Sets (bench/asr_sets.py; a missing manifest is skipped with a note): test (held-out voice variants m7, f5, klatt3,
steph in training accents), test_accent (held-out accent en-gb-scotland), test_voice (an unseen flite voice),
test_noisy (per SNR and noise kind, and the mean over SNRs), test_reverb (per RT60 band), test_phone (per phone codec
and lossy codec), dev (the variants of test, other sentences). Training time is the run's own count of training
seconds (saved in every checkpoint; summed across resumes). Targets: test_voice greedy CER <= 15%; with --baseline (a
record of the model being replaced, this layout or the older flat one) test's greedy CER within 10% of its figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asr_sets import (  # noqa: E402
    TEST_SETS,
    add_set_arguments,
    baseline_figure,
    group_figures,
    load_sets,
    resolve_set_arguments,
    target_checks,
)
from record import load_recipe, parse_bench_args, write_record  # noqa: E402

from speechdraw.asr.release import load_speech_release  # noqa: E402

SYNTH = Path.home() / "speechdraw-runs" / "data" / "synth"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="speech release directory (required)")
    ap.add_argument("--run", default=None, help="its training run directory, for the training time and curve")
    add_set_arguments(ap, ",".join([*TEST_SETS, "dev"]), SYNTH)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="inference autocast "
                    "(default: fp32, the faster one for decoding on this CPU)")
    ap.add_argument("--name", default="asr_quality", help="record name (default: asr_quality)")
    ap.add_argument("--notes", default="", help="extra notes for the record")
    args = parse_bench_args(ap)
    baseline, subset = resolve_set_arguments(ap, args)

    evaluate = load_recipe("asr", "evaluate")
    asr = load_speech_release(args.model)
    figures = {"model": f"{asr.model_config.layers} x {asr.model_config.hidden} BiLSTM-CTC, "
                        f"{asr.model_config.stack * asr.feature_config.hop_ms:.0f} ms steps, "
                        f"{asr.model.num_params() / 1e6:.2f} M params",
               "weights": asr.config["metrics"].get("weights"), "checkpoint_step": asr.config["metrics"].get("step"),
               "decoding": f"greedy, {args.precision}", "corpus": str(args.corpus)}
    if subset:
        figures["subset"] = subset
    sets = {}
    with tempfile.TemporaryDirectory() as tmp:
        found, skipped = load_sets(Path(args.corpus), args.sets.split(","), args.max_utts, args.subset_seed, Path(tmp))
        for s in found:
            r = evaluate.evaluate_manifest(asr, s.manifest, precision=args.precision, per_utt=True)
            ce = r["char_errors"]
            sets[s.name] = {"utterances": r["utterances"], "of_utterances": s.lines, "hours": round(r["hours"], 3),
                            "rtf": round(r["rtf"], 4), "greedy": {"wer": round(r["wer"], 4), "cer": round(r["cer"], 4)},
                            "char_sub_del_ins": [round(ce[k] / max(ce["ref"], 1), 4) for k in ("sub", "del", "ins")],
                            **group_figures(s.entries, {"greedy": [u["hyp"] for u in r["per_utterance"]]})}
            print(evaluate.format_table([r]), flush=True)
            for field, groups in sets[s.name]["groups"].items():
                print(f"  CER by {field}: " + ", ".join(f"{v} {100 * g['greedy']['cer']:.2f}%"
                                                       for v, g in groups.items()), flush=True)
    figures.update(sets)
    if skipped:
        figures["skipped_sets"] = skipped
    if args.run:
        run = Path(args.run)
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        val = [r for r in rows if r["split"] == "val"]
        train = [r for r in rows if r["split"] == "train"]
        figures["train_minutes"] = round(val[-1]["train_minutes"], 1) if val else None
        figures["train_steps"] = val[-1]["step"] if val else None
        figures["epochs_completed"] = len(val)
        figures["dev_cer_by_epoch"] = [round(r.get("cer_ema", r["cer"]), 4) for r in val]
        speeds = [r["audio_per_second"] for r in train if r.get("audio_per_second") == r.get("audio_per_second")]
        if speeds:
            figures["train_audio_s_per_s_median"] = round(sorted(speeds)[len(speeds) // 2], 1)
    targets = target_checks(sets, baseline)
    if "test" in sets:
        targets["test_greedy_cer_at_most_0.05"] = {"value": sets["test"]["greedy"]["cer"], "limit": 0.05,
                                                   "pass": sets["test"]["greedy"]["cer"] <= 0.05,
                                                   "rule": "test greedy CER <= 0.05 (the first cpu release's target)"}
    figures["targets"] = targets
    if baseline:
        figures["baseline"] = baseline_figure(baseline, subset)
    write_record(args.name, figures, allow_dirty=args.allow_dirty,
                 title="ASR quality: greedy CER/WER of the cpu preset on the synthetic test sets",
                 notes=args.notes, results_dir=Path(args.results_dir) if args.results_dir else None)


if __name__ == "__main__":
    main()
