"""Train a Kneser-Ney n-gram language model on normalised text and write it as ARPA (speechdraw.asr.lm.ngram).

Word model for lexicon decoding (also writes the lexicon built from its vocabulary), character model for
lexicon-free decoding; optional perplexity and OOV rate on evaluation text (text files or manifests' "text"):

    python recipes/asr/train_ngram.py --text ~/speechdraw-runs/data/lm/lm_train.txt \\
        --out ~/speechdraw-runs/lm/word4.arpa --ngram.order 4 --ngram.prune 0,0,1 \\
        --lexicon ~/speechdraw-runs/lm/lexicon.txt \\
        --eval ~/speechdraw-runs/data/synth/dev.jsonl,~/speechdraw-runs/data/synth/test.jsonl
    python recipes/asr/train_ngram.py --text ~/speechdraw-runs/data/synth/lm_train.txt \\
        --out ~/speechdraw-runs/lm/char6.arpa --ngram.units char --ngram.order 6

The word LM's default text is data_prep/lm_text.py's lm_train.txt: the corpus's Bible text plus WordNet's example
sentences and definitions, chatterbot-corpus dialogue and The Devil's Dictionary, every dev/test sentence removed; the
character LM trains on the Bible text the audio is spoken from (the synthetic-speech builder's lm_train.txt). The
training text must not contain evaluation sentences: an --eval file with sentences in it is reported (a warning, and
"in_training_text" in the report).
Flashlight's KenLM reads orders <= 6; higher orders are for perplexity studies.

Large text (LibriSpeech's librispeech-lm-norm.txt.gz, ~800 M words, normalised first): the text is streamed, counts
go through sorted runs spilled under --tmp_dir once they outgrow --memory, and --ngram.vocab_size keeps the most
frequent words (the published LibriSpeech 4-gram: 200k), the rest counted as <unk>:

    python recipes/asr/train_ngram.py --text lm-norm.txt.gz --out 4gram.arpa --ngram.order 4 \\
        --ngram.vocab_size 200000 --ngram.prune 0,0,1 --memory 32G --tmp_dir /scratch/ngram

--backend lmplz runs KenLM's lmplz (when installed) on the same units instead of the numpy estimator.
Prints (and with --report writes as JSON) training time, vocabulary size, n-grams per order, discounts, ARPA size.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from speechdraw.asr.lm.ngram import (
    NGramConfig,
    NGramLM,
    iter_sentences,
    parse_memory,
    read_sentences,
    train_lmplz,
    train_ngram,
)
from speechdraw.engine.config import parse_config


@dataclass
class Config:
    text: tuple[str, ...] = field(default=(), metadata={"help": "training text files (comma-separated)"})
    out: str = field(default="lm.arpa", metadata={"help": "ARPA file to write"})
    lexicon: str = field(default="", metadata={"help": "also write a lexicon of the word vocabulary here"})
    eval: tuple[str, ...] = field(default=(), metadata={"help": "text files / manifests to report OOV and ppl on"})
    report: str = field(default="", metadata={"help": "write the figures as JSON here"})
    backend: str = field(default="numpy", metadata={"help": "numpy (speechdraw's estimator) or lmplz (KenLM's)"})
    memory: str = field(default="", metadata={
        "help": "memory budget for counting, e.g. 4G: sorted runs beyond it are spilled to --tmp_dir and merged; "
                "empty: count in memory (the model's n-grams are held in memory either way)"})
    tmp_dir: str = field(default="", metadata={"help": "directory for spilled runs (default: the system's temp)"})
    ngram: NGramConfig = field(default_factory=NGramConfig)


def main(argv=None) -> dict:
    cfg, _ = parse_config(Config, argv, description=__doc__)
    if not cfg.text:
        raise SystemExit("give the training text with --text")
    try:
        memory = parse_memory(cfg.memory)
    except ValueError as e:
        print(f"train_ngram: --memory: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if cfg.backend not in ("numpy", "lmplz"):
        print(f"train_ngram: --backend must be numpy or lmplz, got {cfg.backend!r}", file=sys.stderr)
        raise SystemExit(2)
    if cfg.backend == "lmplz" and (shutil.which("lmplz") is None or cfg.ngram.vocab_size):
        why = "lmplz (KenLM's estimator) is not on PATH" if cfg.ngram.vocab_size == 0 else \
            "lmplz refuses <unk> in its text, so --ngram.vocab_size needs --backend numpy"
        print(f"train_ngram: --backend lmplz: {why}", file=sys.stderr)
        raise SystemExit(2)
    evals = {path: read_sentences([os.path.expanduser(path)]) for path in cfg.eval}
    eval_set = {s for ev in evals.values() for s in ev}
    in_training: set[str] = set()

    def training_sentences():  # streamed: the training text is never held whole as strings
        for s in iter_sentences(os.path.expanduser(p) for p in cfg.text):
            if s in eval_set:
                in_training.add(s)
            yield s

    out = Path(os.path.expanduser(cfg.out))
    tmp_dir = os.path.expanduser(cfg.tmp_dir) or None
    if cfg.backend == "numpy":
        lm = train_ngram(training_sentences(), cfg.ngram, memory=memory, tmp_dir=tmp_dir)
        s = lm.stats
        print(f"trained {cfg.ngram.units} {lm.order}-gram on {s['sentences']} sentences ({s['tokens']} units, "
              f"{s['oov_tokens']} as <unk>) in {s['train_seconds']:.2f}s; vocabulary {len(lm.vocab)} "
              f"(with <unk> <s> </s>); {s['spilled_runs']} count runs spilled to disk")
        print(f"n-grams per order: {lm.counts} (before pruning: {s['raw_ngrams']})")
        print("discounts D1 D2 D3+ per order: " + "; ".join(" ".join(f"{d:.3f}" for d in ds)
                                                             for ds in s["discounts"])
              + (f" (fallback at orders {s['fallback_orders']})" if s["fallback_orders"] else ""))
        t0 = time.perf_counter()
        lm.write_arpa(out)
        write_s = time.perf_counter() - t0
    else:
        t0 = time.perf_counter()
        train_lmplz(training_sentences(), cfg.ngram, out, memory=memory, tmp_dir=tmp_dir)
        s = {"train_seconds": time.perf_counter() - t0, "raw_ngrams": None, "discounts": None,
             "fallback_orders": [], "oov_tokens": None, "spilled_runs": None}
        lm = NGramLM.read_arpa(out, units=cfg.ngram.units)
        print(f"lmplz trained {cfg.ngram.units} {lm.order}-gram in {s['train_seconds']:.2f}s (with writing); "
              f"vocabulary {len(lm.vocab)}; n-grams per order: {lm.counts}")
        write_s = 0.0
    overlap = {path: len(set(ev) & in_training) for path, ev in evals.items()}
    for path, n in overlap.items():  # a perplexity on sentences the model was trained on flatters it
        if n:
            print(f"warning: {path}: {n} of its sentences are in the training text; its perplexity is optimistic "
                  f"(data_prep/lm_text.py removes them)", file=sys.stderr)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {write_s:.1f}s")
    report = {"backend": cfg.backend, "units": cfg.ngram.units, "order": lm.order, "prune": list(cfg.ngram.prune),
              "vocab_limit": cfg.ngram.vocab_size, "arpa": str(out), "arpa_mb": out.stat().st_size / 1e6,
              "train_seconds": s["train_seconds"], "write_seconds": write_s, "vocab_size": len(lm.vocab),
              "ngrams": lm.counts, "raw_ngrams": s["raw_ngrams"], "oov_tokens": s["oov_tokens"],
              "spilled_runs": s["spilled_runs"], "discounts": s["discounts"], "fallback_orders": s["fallback_orders"],
              "eval": {}}
    if cfg.lexicon:
        from speechdraw.asr.beam import write_lexicon  # here: beam imports torch, which training the LM does not need

        n = write_lexicon(lm.words(), os.path.expanduser(cfg.lexicon))
        print(f"wrote lexicon {cfg.lexicon} ({n} words)")
        report["lexicon"], report["lexicon_words"] = cfg.lexicon, n
    for path, ev_sentences in evals.items():
        ev = lm.evaluate(ev_sentences)
        print(f"{path}: {ev.sentences} sentences, OOV rate {100 * ev.oov_rate:.2f}%, perplexity {ev.perplexity:.2f} "
              f"(with OOVs as <unk>: {ev.perplexity_with_oov:.2f})")
        report["eval"][path] = {"sentences": ev.sentences, "in_training_text": overlap[path],
                                "units": ev.units, "oov_rate": ev.oov_rate,
                                "perplexity": ev.perplexity, "perplexity_with_oov": ev.perplexity_with_oov}
    if cfg.report:
        Path(cfg.report).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
