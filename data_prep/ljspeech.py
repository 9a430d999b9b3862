"""Manifests for LJSpeech 1.1, one speaker reading non-fiction (layout tested, accuracy not measured here).

    python data_prep/ljspeech.py --root ~/corpora --download --out ~/speechdraw-runs/data/ljspeech
    python data_prep/ljspeech.py --root ~/corpora/LJSpeech-1.1 --out ~/speechdraw-runs/data/ljspeech

Layout (keithito.com/LJ-Speech-Dataset): LJSpeech-1.1/metadata.csv, lines "<id>|<raw text>|<normalised text>" with
no header and no quoting (a '"' inside a transcript is just a character), and LJSpeech-1.1/wavs/<id>.wav (22.05 kHz).
The third column (numbers already written out) is normalised again with speechdraw.asr.text.normalize; the second is
used where the third is empty. LJSpeech has no official split: dev and test are --dev-utts/--test-utts utterances
drawn with --seed, the rest is train. Writes <out>/{train,dev,test}.jsonl.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from _common import download, extract, probe, write_split

from speechdraw.asr.manifest import ManifestEntry
from speechdraw.asr.text import normalize

URL = "https://data.keithito.com/data/speech/LJSpeech-1.1.tar.bz2"
# The archive's published checksum (the one torchaudio's LJSPEECH dataset and other packagers check).
SHA256 = {"LJSpeech-1.1.tar.bz2": "be1a30453f28eb8dd26af4101ae40cbf2c50413b1bb21936cbcdc6fae3de8aa5"}


def corpus_dir(root: Path) -> Path:
    for candidate in (root / "LJSpeech-1.1", root):
        if (candidate / "metadata.csv").is_file():
            return candidate
    raise FileNotFoundError(f"no metadata.csv in {root} or {root / 'LJSpeech-1.1'}")


def read_metadata(directory: Path) -> list[tuple[str, str]]:
    """[(utterance id, normalised text)] in file order; lines that normalise to nothing are dropped."""
    rows = []
    for line in (directory / "metadata.csv").read_text(encoding="utf-8").splitlines():
        fields = line.split("|")
        if len(fields) < 2:
            continue
        raw, spoken = fields[1], fields[2] if len(fields) > 2 else ""
        text = normalize(spoken or raw)
        if text:
            rows.append((fields[0], text))
    return rows


def split_ids(ids: list[str], dev: int, test: int, seed: int) -> dict[str, set[str]]:
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    return {"dev": set(order[:dev]), "test": set(order[dev : dev + test]), "train": set(order[dev + test :])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, required=True, help="directory holding LJSpeech-1.1/, or that dir (required)")
    p.add_argument("--out", type=Path, required=True, help="directory for the manifests (required)")
    p.add_argument("--download", action="store_true", help=f"download and unpack {URL} into --root (default: off)")
    p.add_argument("--dev-utts", type=int, default=500, help="dev utterances (default: 500)")
    p.add_argument("--test-utts", type=int, default=500, help="test utterances (default: 500)")
    p.add_argument("--seed", type=int, default=0, help="seed of the dev/test draw (default: 0)")
    p.add_argument("--jobs", type=int, default=8, help="threads reading audio headers (default: 8)")
    args = p.parse_args(argv)

    if args.download and not (args.root / "LJSpeech-1.1" / "metadata.csv").is_file():
        extract(download(URL, args.root / "downloads", sha256=SHA256[URL.rsplit("/", 1)[-1]]), args.root)
    directory = corpus_dir(args.root)
    rows = read_metadata(directory)
    infos = probe([directory / "wavs" / f"{uid}.wav" for uid, _ in rows], args.jobs)
    entries = {
        uid: ManifestEntry(audio=str((directory / "wavs" / f"{uid}.wav").resolve()), duration=info.duration,
                           text=text, speaker="LJ", extra={"id": uid})
        for (uid, text), info in zip(rows, infos)
        if info is not None
    }  # fmt: skip
    if len(rows) > len(entries):
        print(f"{len(rows) - len(entries)} utterances skipped (unreadable audio)")
    for split, ids in split_ids(list(entries), args.dev_utts, args.test_utts, args.seed).items():
        write_split(args.out / f"{split}.jsonl", [e for uid, e in entries.items() if uid in ids])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
