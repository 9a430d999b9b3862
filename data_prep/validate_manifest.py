"""Check manifests line by line, and optionally drop the bad lines.

    python data_prep/validate_manifest.py ~/speechdraw-runs/data/synth/*.jsonl
    python data_prep/validate_manifest.py data/timit/train_phones.jsonl --tokens phones
    python data_prep/validate_manifest.py data/mine.jsonl --decode --drop --out data/mine.clean.jsonl

Reports, by line number: malformed lines (not JSON, missing or mistyped fields), missing or unreadable audio (header
read, or a full decode with --decode), a duration that disagrees with the file (or a segment that runs past its end),
an empty transcript, and symbols outside the token set (--tokens: chars, phones, or a tokens.txt). Exits 1 when a
problem is found, unless --drop is given: then each manifest is rewritten without its bad lines (or written to --out)
and the number dropped per reason is printed. The same checks are `speechdraw.asr.manifest.validate_manifest`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from speechdraw.asr.manifest import drop_invalid, validate_manifest
from speechdraw.asr.text import token_set


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("manifests", type=Path, nargs="+", help="JSONL manifests to check")
    p.add_argument("--tokens", default="chars", help="chars, phones, or a tokens.txt path (default: chars)")
    p.add_argument("--decode", action="store_true", help="decode every file fully, not just its header (default: off)")
    p.add_argument("--no-audio", action="store_true", help="skip all audio checks (default: off)")
    p.add_argument("--drop", action="store_true", help="write the manifest back without its bad lines (default: off)")
    p.add_argument("--out", type=Path, default=None,
                   help="with --drop and one manifest: write here instead of in place (default: in place)")
    p.add_argument("--max-report", type=int, default=50, help="problems printed per manifest (default: 50)")
    p.add_argument("--jobs", type=int, default=8, help="threads opening audio files (default: 8)")
    args = p.parse_args(argv)
    if args.out is not None and (not args.drop or len(args.manifests) != 1):
        p.error("--out needs --drop and exactly one manifest")

    kwargs = dict(tokens=token_set(args.tokens), check_audio=not args.no_audio, decode=args.decode, jobs=args.jobs)
    failed = False
    for path in args.manifests:
        if args.drop:
            out = args.out or path
            report = drop_invalid(path, out, **kwargs)
            print(report.format(limit=args.max_report))
            dropped = ", ".join(f"{k} {v}" for k, v in sorted(report.counts().items())) or "nothing"
            print(f"{out}: kept {len(report.valid)} of {report.lines} lines, dropped {report.bad_lines} ({dropped})")
        else:
            report = validate_manifest(path, **kwargs)
            print(report.format(limit=args.max_report))
            failed |= not report.ok
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
