"""Greedy CER/WER of a trained speech release on the synthetic test sets, with its training time.

    python bench/asr_quality.py --model ~/speechdraw-runs/asr-cpu/release --run ~/speechdraw-runs/asr-cpu

test: held-out voice variants (m7, f5, klatt3, steph) in training accents; test_accent: a held-out accent
(en-gb-scotland) in training variants; dev: the variants of test, other sentences. Training time is the run's own
count of training seconds (saved in every checkpoint; summed across resumes).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import load_recipe, parse_bench_args, write_record  # noqa: E402

from speechdraw.asr.manifest import read_manifest  # noqa: E402
from speechdraw.asr.release import load_speech_release  # noqa: E402

SYNTH = Path.home() / "speechdraw-runs" / "data" / "synth"



def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="speech release directory (required)")
    ap.add_argument("--run", default=None, help="its training run directory, for the training time and curve")
    ap.add_argument("--corpus", default=str(SYNTH), help=f"synthetic corpus directory (default: {SYNTH})")
    ap.add_argument("--splits", default="test,test_accent,dev", help="manifests to score (default: test,"
                    "test_accent,dev)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="inference autocast "
                    "(default: fp32, the faster one for decoding on this CPU)")
    ap.add_argument("--name", default="asr_quality", help="record name (default: asr_quality)")
    ap.add_argument("--notes", default="", help="extra notes for the record")
    args = parse_bench_args(ap)

    evaluate = load_recipe("asr", "evaluate")
    asr = load_speech_release(args.model)
    figures = {"model": f"{asr.model_config.layers} x {asr.model_config.hidden} BiLSTM-CTC, "
                        f"{asr.model_config.stack * asr.feature_config.hop_ms:.0f} ms steps, "
                        f"{asr.model.num_params() / 1e6:.2f} M params",
               "weights": asr.config["metrics"].get("weights"), "checkpoint_step": asr.config["metrics"].get("step"),
               "decoding": f"greedy, {args.precision}"}
    for split in args.splits.split(","):
        manifest = Path(args.corpus) / f"{split}.jsonl"
        r = evaluate.evaluate_manifest(asr, manifest, precision=args.precision, per_utt=True)
        figures[f"{split}_cer"] = round(r["cer"], 4)
        ce = r["char_errors"]
        figures[f"{split}_char_sub_del_ins"] = [round(ce[k] / ce["ref"], 4) for k in ("sub", "del", "ins")]
        # CER per voice variant (the speaker field is accent+variant): where the held-out voices stand
        by_variant: dict[str, list[int]] = {}
        for e, u in zip(read_manifest(manifest), r["per_utterance"]):
            acc = by_variant.setdefault((e.speaker or "?").split("+")[-1], [0, 0])
            acc[0] += u["char_errors"]
            acc[1] += u["chars"]
        figures[f"{split}_cer_by_variant"] = {v: round(err / n, 4) for v, (err, n) in sorted(by_variant.items())}
        figures[f"{split}_wer"] = round(r["wer"], 4)
        figures[f"{split}_utterances"] = r["utterances"]
        figures[f"{split}_rtf"] = round(r["rtf"], 4)
        print(evaluate.format_table([r]), flush=True)
        print(f"  CER by variant: {figures[f'{split}_cer_by_variant']}", flush=True)
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
    figures["target_test_cer_at_most_0.05"] = figures.get("test_cer", 1.0) <= 0.05
    write_record(args.name, figures, allow_dirty=args.allow_dirty,
                 title="ASR quality: greedy CER/WER of the cpu preset on the synthetic test sets",
                 notes=args.notes)


if __name__ == "__main__":
    main()
