"""Manifests for Mozilla Common Voice (layout tested, accuracy not measured here).

    python data_prep/commonvoice.py --root ~/corpora/cv-corpus-17.0-2024-03-15 --lang en \\
        --out ~/speechdraw-runs/data/commonvoice-en

Common Voice is downloaded by hand after accepting its terms (commonvoice.mozilla.org, now the Mozilla Data
Collective), so there is no --download here. Layout: cv-corpus-<version>/<lang>/{train,dev,test,validated,...}.tsv
and <lang>/clips/*.mp3. The TSVs are tab-separated with a header (client_id, path, sentence, ...; newer releases add
sentence_id and more columns, so columns are found by name) and no quoting. Durations come from
<lang>/clip_durations.tsv (clip, duration[ms]) where the release has it, else from the MP3 headers. Sentences are
normalised with speechdraw.asr.text.normalize; ones that normalise to nothing (for example, only non-Latin letters)
are dropped with a count. speaker = client_id. Writes <out>/<split>.jsonl for each --splits.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from _common import probe, write_split

from speechdraw.asr.manifest import ManifestEntry
from speechdraw.asr.text import normalize

csv.field_size_limit(1 << 24)


def language_dir(root: Path, lang: str) -> Path:
    """Accepts cv-corpus-*/<lang>, cv-corpus-*, or a directory holding cv-corpus-* folders (the newest is used)."""
    candidates = [root] if (root / "clips").is_dir() else [root / lang, *sorted(root.glob(f"cv-corpus-*/{lang}"))[::-1]]
    for candidate in candidates:
        if (candidate / "clips").is_dir():
            return candidate
    raise FileNotFoundError(f"no Common Voice '{lang}' directory (with clips/) under {root}")


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def clip_durations(directory: Path) -> dict[str, float]:
    """clip file name -> seconds, from clip_durations.tsv when present."""
    path = directory / "clip_durations.tsv"
    if not path.is_file():
        return {}
    out = {}
    for row in read_tsv(path):
        values = list(row.values())  # (clip, duration[ms]); the header spelling has varied
        if len(values) >= 2 and values[1]:
            out[values[0]] = float(values[1]) / 1000.0
    return out


def read_split(directory: Path, split: str, jobs: int = 8) -> tuple[list[ManifestEntry], int]:
    """(entries in TSV order, rows skipped for an empty transcript or unreadable audio)."""
    rows = read_tsv(directory / f"{split}.tsv")
    known = clip_durations(directory)
    texts = [normalize(r["sentence"] or "") for r in rows]
    keep = [(r, t) for r, t in zip(rows, texts) if t]
    paths = [directory / "clips" / r["path"] for r, _ in keep]
    need = [p for p in paths if p.name not in known]
    probed = dict(zip(need, probe(need, jobs)))
    entries = []
    for (row, text), path in zip(keep, paths):
        if path.name in known:
            if not path.is_file():
                print(f"warning: skipping {path}: file not found", file=sys.stderr)
                continue
            seconds = known[path.name]
        elif probed[path] is not None:
            seconds = probed[path].duration
        else:
            continue
        entries.append(ManifestEntry(audio=str(path.resolve()), duration=seconds, text=text,
                                     speaker=row.get("client_id") or None, extra={"id": path.stem}))  # fmt: skip
    return entries, len(rows) - len(entries)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, required=True, help="cv-corpus-<version> directory, or its <lang>/ (required)")
    p.add_argument("--lang", default="en", help="language code (default: en)")
    p.add_argument("--out", type=Path, required=True, help="directory for the manifests (required)")
    p.add_argument("--splits", nargs="+", default=["train", "dev", "test"],
                   help="TSV files to convert, e.g. validated (default: train dev test)")
    p.add_argument("--jobs", type=int, default=8, help="threads reading MP3 headers (default: 8)")
    args = p.parse_args(argv)

    directory = language_dir(args.root, args.lang)
    for split in args.splits:
        entries, skipped = read_split(directory, split, args.jobs)
        write_split(args.out / f"{split}.jsonl", entries, skipped)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
