"""Issue 13's target checks between two existing records: a new model's asr_decode (or asr_quality) record against a
baseline model's, without decoding anything again.

    python bench/asr_decode.py --model NEW_REL --lm-dir L                                  # -> asr_decode.json
    python bench/asr_decode.py --model OLD_REL --lm-dir L --name asr_decode_noaug --sets test,test_noisy,...
    python bench/asr_targets.py --record bench/results/asr_decode.json \\
        --baseline bench/results/asr_decode_noaug.json --name asr_targets

bench/asr_decode.py --baseline does the same checks in one run when the baseline's record already exists; this script
is for when the two models are measured at different times (the baseline trains while the new model is measured).
Both records' per-set figures are read with bench/asr_sets.py (read_baseline, target_checks), so the rules are the
same ones. When the two records scored different utterances (a --max-utts subset in one of them), the record says so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asr_sets import baseline_figure, read_baseline, target_checks  # noqa: E402
from record import parse_bench_args, write_record  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record", required=True, help="the new model's asr_decode / asr_quality record (required)")
    ap.add_argument("--baseline", required=True, help="the replaced model's record of the same kind (required)")
    ap.add_argument("--name", default="asr_targets", help="record name (default: asr_targets)")
    ap.add_argument("--results-dir", default=None, help="write the record here instead of bench/results")
    ap.add_argument("--notes", default="", help="extra notes for the record")
    args = parse_bench_args(ap, argv)
    try:
        new, old = read_baseline(args.record), read_baseline(args.baseline)
    except ValueError as e:
        raise SystemExit(f"bench/asr_targets.py: error: {e}") from None
    checks = target_checks(new["sets"], old)
    figures = {
        "record": baseline_figure(new, old.get("subset")) | {"subset": new.get("subset")},
        "baseline": baseline_figure(old, new.get("subset")),
        "targets": checks,
        "all_pass": all(c.get("pass") for c in checks.values()),
    }
    write_record(args.name, figures, allow_dirty=args.allow_dirty, results_dir=args.results_dir,
                 title="ASR: issue 13's targets, a new model's record against a baseline model's",
                 notes=args.notes or "Computed from the two records named in figures.record / figures.baseline; "
                                     "nothing was decoded again.")
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
