"""The word LM's training sources, one by one and together: OOV rate and perplexity of a word 4-gram trained on each
source alone and on the whole LM text, on every evaluation set of the synthetic corpus and on our own everyday
held-out set (data_prep/lm_text.py writes all of them).

    python data_prep/lm_text.py --fetch --synth ~/speechdraw-runs/data/synth --out ~/speechdraw-runs/data/lm
    python bench/lm_sources.py     # --synth ~/speechdraw-runs/data/synth --lm-text ~/speechdraw-runs/data/lm

Rows: `<source>` = a 4-gram on sources/<source>.txt alone (`bible` is the default LM before this text existed);
`all` = on lm_train.txt (every source: the default word LM now). Columns: dev, test, test_accent and any other
evaluation manifest of --synth (every *.jsonl but train.jsonl), and `everyday_dev` / `everyday_test`
(heldout/everyday_*.txt: WordNet example sentences and chatterbot dialogue lines held out of every source; the choice
of sources was made on dev and everyday_dev only). Perplexity counts every word and </s> but skips
OOV words (as KenLM reports it); `perplexity_with_oov` scores them as <unk>.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import parse_bench_args, write_record  # noqa: E402

from speechdraw.asr.lm.ngram import NGramConfig, read_sentences, train_ngram  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synth", default="~/speechdraw-runs/data/synth",
                    help="synthetic-speech corpus (default: ~/speechdraw-runs/data/synth)")
    ap.add_argument("--lm-text", default="~/speechdraw-runs/data/lm",
                    help="data_prep/lm_text.py's output directory (default: ~/speechdraw-runs/data/lm)")
    ap.add_argument("--order", type=int, default=4, help="n-gram order (default: 4, the recipe's word LM)")
    ap.add_argument("--name", default="lm_sources", help="record name (default: lm_sources)")
    args = parse_bench_args(ap)
    synth, lm_dir = Path(os.path.expanduser(args.synth)), Path(os.path.expanduser(args.lm_text))
    manifest = json.loads((lm_dir / "sources.json").read_text())

    evals = {p.stem: read_sentences([p]) for p in sorted(synth.glob("*.jsonl")) if p.name != "train.jsonl"}
    for part in ("dev", "test"):
        evals[f"everyday_{part}"] = read_sentences([lm_dir / "heldout" / f"everyday_{part}.txt"])
    trains = {s["source"]: lm_dir / "sources" / f"{s['source']}.txt" for s in manifest["sources"]}
    trains["all"] = lm_dir / "lm_train.txt"

    figures: dict = {"order": args.order, "sources": manifest["sources"], "lm_train": manifest["lm_train"],
                     "eval_sentences": {k: len(v) for k, v in evals.items()}, "models": {}}
    for name, path in trains.items():
        train = read_sentences([path])
        lm = train_ngram(train, NGramConfig(order=args.order, units="word"))
        f = {"train_sentences": len(train), "train_words": sum(len(s.split()) for s in train),
             "vocab_size": len(lm.vocab), "ngrams": lm.counts, "train_seconds": round(lm.stats["train_seconds"], 2)}
        for split, sentences in evals.items():
            ev = lm.evaluate(sentences)
            f[split] = {"oov_rate": round(ev.oov_rate, 5), "perplexity": round(ev.perplexity, 2),
                        "perplexity_with_oov": round(ev.perplexity_with_oov, 2)}
        figures["models"][name] = f
        print(f"{name:17s} vocab {len(lm.vocab):7d}  " + "  ".join(
            f"{k} oov {100 * v['oov_rate']:.2f}% ppl {v['perplexity']:.1f}" for k, v in f.items()
            if isinstance(v, dict)), flush=True)  # fmt: skip

    write_record(args.name, figures, title="Word LM sources: OOV and perplexity per source and per test set",
                 notes="data_prep/lm_text.py output; each row a word n-gram trained on that source alone, 'all' on "
                       "the whole LM text (the default word LM)", allow_dirty=args.allow_dirty)


if __name__ == "__main__":
    main()
