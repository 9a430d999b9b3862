"""Manifests for LibriSpeech (layout tested, accuracy not measured here).

    python data_prep/librispeech.py --root ~/corpora --download --subsets dev-clean test-clean \\
        --out ~/speechdraw-runs/data/librispeech
    python data_prep/librispeech.py --root ~/corpora --out ~/speechdraw-runs/data/librispeech   # already unpacked

Layout (openslr.org/12): <root>/LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<n>.flac, and one
<speaker>-<chapter>.trans.txt per chapter with lines "<utterance id> <TRANSCRIPT IN CAPITALS>". Writes
<out>/<subset>.jsonl per subset; speaker is the LibriSpeech speaker id, and `id` the utterance id.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import download, extract, probe, write_split

from speechdraw.asr.manifest import ManifestEntry
from speechdraw.asr.text import normalize

SUBSETS = ("dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100", "train-clean-360",
           "train-other-500")  # fmt: skip
MIRROR = "https://www.openslr.org/resources/12"


def subset_dir(root: Path, subset: str) -> Path:
    for candidate in (root / "LibriSpeech" / subset, root / subset):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no {subset} under {root} (expected {root / 'LibriSpeech' / subset})")


def read_subset(directory: Path, jobs: int = 8) -> tuple[list[ManifestEntry], int]:
    """(entries sorted by utterance id, number of transcript lines skipped for missing/unreadable audio)."""
    rows = []  # (utterance id, speaker, audio path, text)
    for trans in sorted(directory.glob("*/*/*.trans.txt")):
        for line in trans.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            rows.append((utt_id, utt_id.split("-")[0], trans.parent / f"{utt_id}.flac", text))
    infos = probe([r[2] for r in rows], jobs)
    entries = [
        ManifestEntry(audio=str(path.resolve()), duration=info.duration, text=normalize(text), speaker=speaker,
                      extra={"id": utt_id})
        for (utt_id, speaker, path, text), info in zip(rows, infos)
        if info is not None
    ]  # fmt: skip
    return entries, len(rows) - len(entries)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, required=True, help="directory holding LibriSpeech/ (required)")
    p.add_argument("--out", type=Path, required=True, help="directory for <subset>.jsonl (required)")
    p.add_argument("--subsets", nargs="+", default=["dev-clean", "test-clean"], choices=SUBSETS, metavar="SUBSET",
                   help=f"subsets to prepare, of {', '.join(SUBSETS)} (default: dev-clean test-clean)")
    p.add_argument("--download", action="store_true",
                   help="download and unpack missing subsets from --mirror into --root (default: off)")
    p.add_argument("--mirror", default=MIRROR, help=f"where the archives are (default: {MIRROR})")
    p.add_argument("--jobs", type=int, default=8, help="threads reading audio headers (default: 8)")
    args = p.parse_args(argv)

    for subset in args.subsets:
        if args.download and not (args.root / "LibriSpeech" / subset).is_dir():
            archive = download(f"{args.mirror}/{subset}.tar.gz", args.root / "downloads")
            extract(archive, args.root)
        entries, skipped = read_subset(subset_dir(args.root, subset), args.jobs)
        if not entries:
            print(f"no utterances found for {subset}", file=sys.stderr)
            return 1
        write_split(args.out / f"{subset}.jsonl", entries, skipped)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
