"""`speechdraw evaluate`: score a speech model on your own data, a manifest of audio + reference text.

    speechdraw evaluate --model asr-en-synth --manifest my-test.jsonl
    speechdraw evaluate --model RUN/release --manifest a.jsonl b.jsonl --decoder greedy beam --json eval.json \\
        --errs errs.txt

Manifests are JSONL, one utterance per line: {"audio": "x.flac", "duration": 3.2, "text": "the reference"} (see the
README's "Speech data"). Printed: a table of WER/CER with substitutions/deletions/insertions per manifest and decoder,
then for each, icefall's errs-* report: the utterances with errors, aligned ("the (cat->bat) sat (*->down)": ref->hyp,
* = nothing), and the most frequent substitutions, deletions and insertions. --json writes every figure, the
confusions and each utterance's hypothesis and alignment; --errs writes the full errs-* text. recipes/asr/evaluate.py
is this command run from a checkout (same flags).

Exit status: 0; 1 when a manifest could not be scored (named on stderr with the reason; the others are still scored);
2 for bad arguments (a missing or malformed manifest, an unknown model, beam decoding on a release without a decoder).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

DECODER_CHOICES = ("greedy", "beam", "rescore")  # speechdraw.asr.release.DECODERS, without importing torch here


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model name (`speechdraw models list`), speech release directory, "
                   "release archive or its URL (default: the default speech model)")
    p.add_argument("--manifest", nargs="+", required=True, metavar="M.jsonl",
                   help="one or more manifests to score (required)")
    p.add_argument("--decoder", nargs="+", choices=DECODER_CHOICES, default=["greedy"],
                   help="greedy, beam (the release's tuned decoder.json) and/or rescore (beam + its LSTM LM); several "
                        "share one acoustic pass (default: greedy)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="autocast for the acoustic model "
                   "(default: fp32)")
    p.add_argument("--batch-seconds", type=float, default=600.0,
                   help="padded seconds of audio per batch (default: 600)")
    p.add_argument("--limit", type=int, default=0, help="score only the first N utterances (default: 0 = all)")
    p.add_argument("--json", default=None, help="write the results here as JSON (default: none)")
    p.add_argument("--errs", default=None, help="write the full errs-* report here (default: none)")
    p.add_argument("--top", type=int, default=10, help="confusions of each kind printed (default: 10)")
    p.add_argument("--show", type=int, default=20,
                   help="utterances with errors printed per manifest, aligned (default: 20; all of them go to "
                        "--errs and --json)")
    p.add_argument("--transcripts", action="store_true",
                   help="print every utterance's reference, then each decoder's transcript of it, instead of the "
                        "aligned errors and confusions (the table stays)")
    p.add_argument("--per-utt", action="store_true", help="accepted for older scripts: the JSON always has the "
                   "per-utterance entries")
    p.add_argument("--word-timings", action="store_true", help="word timings in the JSON's per-utterance entries")


def _write(path: str, text: str) -> None:
    """Atomically: a temporary file beside it, then a rename."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, dest)


def run(args: argparse.Namespace) -> int:
    from speechdraw.asr.audio import AudioError
    from speechdraw.asr.evaluate import evaluate_manifest, format_errors, format_table, format_transcripts
    from speechdraw.asr.manifest import ManifestError, read_manifest
    from speechdraw.asr.release import load_speech_release
    from speechdraw.engine.device import select_device
    from speechdraw.engine.release import ReleaseError
    from speechdraw.models import resolve_model

    def fail(msg: str) -> int:
        print(f"speechdraw evaluate: error: {msg}", file=sys.stderr)
        return 2

    for m in args.manifest:  # every manifest must parse before minutes are spent decoding the first
        try:
            read_manifest(m)
        except FileNotFoundError:
            return fail(f"{m}: no such manifest")
        except (ManifestError, UnicodeDecodeError) as e:
            return fail(f"{m}: not a manifest ({e})")
    try:
        asr = load_speech_release(resolve_model(args.model, kind="asr"), device=select_device(args.device))
    except (ReleaseError, OSError, ValueError, RuntimeError) as e:
        return fail(str(e))
    decoders = tuple(dict.fromkeys(args.decoder))
    if decoders != ("greedy",) and asr.beam_config is None:
        return fail(f"{asr.dir} has no decoder.json (recipes/asr/tune_decoder.py writes one): only --decoder greedy")

    results, failed = [], 0
    for m in args.manifest:
        try:
            out = evaluate_manifest(asr, m, batch_seconds=args.batch_seconds, precision=args.precision, per_utt=True,
                                    word_timings=args.word_timings, limit=args.limit, decoders=decoders)
        except AudioError as e:
            print(f"speechdraw evaluate: error: {m}: {e}", file=sys.stderr)
            failed += 1
            continue
        results += out if isinstance(out, list) else [out]
    if results:
        print(format_table(results))
        if args.transcripts:
            print("\n" + format_transcripts(results))
        else:
            for r in results:
                print("\n" + format_errors(r, top=args.top, max_utts=args.show))
    if args.errs:
        _write(args.errs, "\n\n".join(format_errors(r) for r in results) + "\n")
    if args.json:
        _write(args.json, json.dumps({"model": str(asr.dir), "precision": args.precision, "results": results},
                                     indent=1, ensure_ascii=False) + "\n")
    return 1 if failed else 0
