"""Manifests for LibriSpeech (layout tested, accuracy not measured here).

    python data_prep/librispeech.py --root ~/corpora --download --subsets dev-clean test-clean \\
        --out ~/speechdraw-runs/data/librispeech
    python data_prep/librispeech.py --root ~/corpora --out ~/speechdraw-runs/data/librispeech   # already unpacked

Layout (openslr.org/12): <root>/LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<n>.flac, and one
<speaker>-<chapter>.trans.txt per chapter with lines "<utterance id> <TRANSCRIPT IN CAPITALS>". Writes
<out>/<subset>.jsonl per subset; speaker is the LibriSpeech speaker id, and `id` the utterance id.

Downloads are checked against the md5 sums OpenSLR publishes (MD5; --checksums FILE, in `md5sum` format, for another
mirror). The LM text (librispeech-lm-norm.txt.gz, openslr.org/11) becomes the n-gram LM's training text with
`--lm-text`: every line normalised like the transcripts and every dev/test sentence of --exclude removed:

    python data_prep/librispeech.py --lm-text ~/corpora/downloads/librispeech-lm-norm.txt.gz \\
        --out ~/speechdraw-runs/data/librispeech --exclude ~/speechdraw-runs/data/librispeech/test-clean.jsonl
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
from multiprocessing import Pool
from pathlib import Path

from _common import download, extract, probe, write_split

from speechdraw.asr.manifest import ManifestEntry, read_manifest
from speechdraw.asr.text import normalize

SUBSETS = ("dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100", "train-clean-360",
           "train-other-500")  # fmt: skip
MIRROR = "https://www.openslr.org/resources/12"
LM_MIRROR = "https://www.openslr.org/resources/11"
LM_TEXT = "librispeech-lm-norm.txt.gz"
# Published md5 sums (openslr.org/resources/12/md5sum.txt and the listing of openslr.org/11).
MD5 = {
    "dev-clean.tar.gz": "42e2234ba48799c1f50f24a7926300a1",
    "dev-other.tar.gz": "c8d0bcc9cca99d4f8b62fcc847357931",
    "test-clean.tar.gz": "32fa31d27d2e1cad72775fee3f4849a9",
    "test-other.tar.gz": "fb5a50374b501bb3bac4815ee91d3135",
    "train-clean-100.tar.gz": "2a93770f6d5c6c964bc36631d331a522",
    "train-clean-360.tar.gz": "c0e676e450a7ff2f54aeade5171606fa",
    "train-other-500.tar.gz": "d1a0fd59409feb2c614ce4d30c387708",
    LM_TEXT: "c83c64c726a1aedfe65f80aa311de402",
}


def read_checksums(path: Path) -> dict[str, str]:
    """An `md5sum` listing ("<hex>  <name>" per line) -> {file name: md5}."""
    sums = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            parts = line.split()
            if len(parts) != 2 or len(parts[0]) != 32:
                raise ValueError(f"{path}:{n}: not an md5sum line: {line!r}")
            sums[Path(parts[1].lstrip("*")).name] = parts[0].lower()
    return sums


def fetch(name: str, mirror: str, dest_dir: Path, checksums: dict[str, str]) -> Path:
    """Download `mirror/name` into dest_dir with its md5 checked and a partial download resumed (_common.download);
    a name without a known sum is refused rather than downloaded unchecked."""
    if name not in checksums:
        raise SystemExit(f"error: no md5 sum for {name} (give one with --checksums)")
    return download(f"{mirror}/{name}", dest_dir, md5=checksums[name])


def write_lm_text(lm_gz: Path, out: Path, exclude: set[str], jobs: int = 8) -> dict:
    """Stream the gzipped LM text through `normalize` (in `jobs` processes) into `out` (atomically), dropping empty
    lines and the sentences in `exclude`. Returns {"lines", "words", "removed"}."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    lines = words = removed = 0
    with gzip.open(lm_gz, "rt", encoding="utf-8", errors="replace") as src, open(tmp, "w", encoding="utf-8") as dst, \
            Pool(max(1, jobs)) as pool:
        for sentence in pool.imap(normalize, src, chunksize=4096):
            if not sentence:
                continue
            if sentence in exclude:
                removed += 1
                continue
            dst.write(sentence + "\n")
            lines += 1
            words += sentence.count(" ") + 1
    os.replace(tmp, out)
    print(f"{out}: {lines} sentences, {words} words; {removed} dev/test sentences removed")
    return {"lines": lines, "words": words, "removed": removed}


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
    p.add_argument("--root", type=Path, default=None, help="directory holding LibriSpeech/ (required for manifests)")
    p.add_argument("--out", type=Path, required=True, help="directory for <subset>.jsonl and lm_text.txt (required)")
    p.add_argument("--subsets", nargs="+", default=["dev-clean", "test-clean"], choices=SUBSETS, metavar="SUBSET",
                   help=f"subsets to prepare, of {', '.join(SUBSETS)} (default: dev-clean test-clean)")
    p.add_argument("--download", action="store_true",
                   help="download, md5-check and unpack missing subsets from --mirror into --root (default: off)")
    p.add_argument("--mirror", default=MIRROR, help=f"where the archives are (default: {MIRROR})")
    p.add_argument("--checksums", type=Path, default=None,
                   help="md5sum-format file of the archives' sums (default: the published ones)")
    p.add_argument("--lm-text", type=Path, default=None,
                   help="instead of manifests: normalise this librispeech-lm-norm.txt.gz into <out>/lm_text.txt")
    p.add_argument("--exclude", type=Path, nargs="*", default=[],
                   help="with --lm-text: manifests whose sentences are removed from the LM text (default: none)")
    p.add_argument("--jobs", type=int, default=8, help="threads reading audio headers / processes normalising "
                   "LM text (default: 8)")
    args = p.parse_args(argv)

    if args.lm_text is not None:
        exclude = {e.text for m in args.exclude for e in read_manifest(m)}
        write_lm_text(args.lm_text, args.out / "lm_text.txt", exclude, args.jobs)
        return 0
    if args.root is None:
        p.error("--root is required to write manifests")
    checksums = read_checksums(args.checksums) if args.checksums else MD5
    for subset in args.subsets:
        if args.download and not (args.root / "LibriSpeech" / subset).is_dir():
            archive = fetch(f"{subset}.tar.gz", args.mirror, args.root / "downloads", checksums)
            extract(archive, args.root)
        entries, skipped = read_subset(subset_dir(args.root, subset), args.jobs)
        if not entries:
            print(f"no utterances found for {subset}", file=sys.stderr)
            return 1
        write_split(args.out / f"{subset}.jsonl", entries, skipped)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
