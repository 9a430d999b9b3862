"""Language models on the synthetic-speech corpus: n-gram training time, ARPA size and load time in flashlight,
OOV rate and perplexity on dev / test / test_accent, the LSTM LM's training time and perplexities, and the word 4-gram
against the LSTM on one basis.

Every model trains on lm_train.txt, which the data builder writes with every dev/test sentence removed.

    python bench/asr_lm.py      # data from ~/speechdraw-runs/data/synth, models to ~/speechdraw-runs/lm
    python bench/asr_lm.py --data DIR --out DIR --lstm-epochs 0      # n-grams only

Models written (what the decoding integration uses): word4.arpa (unpruned 4-gram) + lexicon.txt,
word4_pruned.arpa (singleton 3- and 4-grams pruned), char6.arpa (6-gram: flashlight's KenLM reads orders <= 6),
char10.arpa (perplexity only), rnnlm/release (LSTM LM, recipes/asr/train_lm.py --preset synth, one CPU thread).
ARPA load time: the median of 3 loads of KenLM(path, dictionary) alone, and of building the whole beam decoder
(torchaudio ctc_decoder: KenLM load, plus for the word model scoring every lexicon word into the trie).

Each model's own perplexities have different bases (the n-grams' vocabulary is every training word and they skip or
<unk>-score unseen words; the LSTM's vocabulary is the words seen at least twice, the rest being one <unk> class), so
they are not comparable with each other. `same_basis` compares them like with like: one closed vocabulary (the LSTM's),
every other word replaced by <unk> in the training text and in the evaluation text, a word 4-gram retrained on that
text, and both models scored on every word and </s> of the same sentences (<unk> included, nothing skipped).

The LSTM LM is always trained from scratch: the bench refuses to start when its run directory already exists (a
resumed or re-exported run would report another run's training).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import parse_bench_args, write_record  # noqa: E402

from speechdraw.asr.beam import BeamConfig, BeamSearchDecoder, write_lexicon  # noqa: E402
from speechdraw.asr.lm.ngram import LN10, NGramConfig, read_sentences, sentence_units, train_ngram  # noqa: E402
from speechdraw.asr.lm.rnnlm import evaluate, load_rnnlm  # noqa: E402
from speechdraw.asr.text import TokenSet  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def kenlm_load_and_readback(path: Path, lm, sentences: list[str]) -> tuple[float, float]:
    """(median seconds to load the ARPA into flashlight's KenLM, max |log10 p_KenLM - log10 p_ours| per unit)."""
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import create_word_dict

    seqs = [sentence_units(s, lm.units) for s in sentences]
    words = sorted(set(lm.vocab[3:]) | {u for s in seqs for u in s})
    dictionary = create_word_dict({w: [[w]] for w in [*words, "<unk>", "</s>"]})
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        kenlm = KenLM(str(path), dictionary)
        times.append(time.perf_counter() - t0)
    diff = 0.0
    for seq, ours in zip(seqs, lm.unit_log10probs(sentences)):
        state, theirs = kenlm.start(False), []
        for u in seq:
            state, s = kenlm.score(state, dictionary.get_index(u))
            theirs.append(s)
        theirs.append(kenlm.finish(state)[1])
        diff = max(diff, float(np.max(np.abs(np.array(theirs) - ours))))
    return statistics.median(times), diff


def decoder_load(out: Path, cfg: BeamConfig) -> float:
    times = []
    for _ in range(3):
        times.append(BeamSearchDecoder(TokenSet.characters(), cfg, base_dir=out).load_seconds)
    return statistics.median(times)


def same_basis(train: list[str], evals: dict[str, list[str]], scorer) -> dict:
    """The word 4-gram and the LSTM LM on one closed vocabulary (the LSTM's; every other word -> <unk> in both the
    training and the evaluation text), both scored on every word and </s> of the same sentences."""
    vocab = scorer.vocab

    def closed(sentences: list[str]) -> list[str]:
        return [" ".join(w if w in vocab else "<unk>" for w in s.split()) for s in sentences]

    lm = train_ngram(closed(train), NGramConfig(order=4, units="word"))
    if len(lm.vocab) != len(vocab):  # every kept word occurs in the training text, so both vocabularies are equal
        raise RuntimeError(f"closed vocabularies differ: 4-gram {len(lm.vocab)}, LSTM {len(vocab)}")
    f = {"vocab_size": len(vocab), "unk": "every word outside the LSTM vocabulary (rare in lm_train.txt, or unseen) is "
                                        "one <unk> word for both models"}
    for split, sentences in evals.items():
        mapped = closed(sentences)
        ng, ls = lm.evaluate(mapped), evaluate(scorer.model, vocab, mapped)
        assert ng.oov == ls.oov == 0 and ng.units == ls.units and ng.sentences == ls.sentences  # same tokens scored
        f[f"{split}_words_scored"] = ng.units + ng.sentences  # words and </s>
        f[f"{split}_unk_rate"] = round(sum(s.split().count("<unk>") for s in mapped) / max(ng.units, 1), 5)
        f[f"{split}_word4_perplexity"] = round(ng.perplexity, 3)
        f[f"{split}_lstm_perplexity"] = round(ls.perplexity, 3)
    return f


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="~/speechdraw-runs/data/synth",
                    help="synthetic-speech data directory (default: ~/speechdraw-runs/data/synth)")
    ap.add_argument("--out", default="~/speechdraw-runs/lm", help="where the models go (default: ~/speechdraw-runs/lm)")
    ap.add_argument("--lstm-epochs", type=int, default=10, help="LSTM LM epochs, 0 to skip (default: 10)")
    args = parse_bench_args(ap)
    torch.set_num_threads(1)
    data, out = Path(os.path.expanduser(args.data)), Path(os.path.expanduser(args.out))
    run_dir = out / "rnnlm"
    if args.lstm_epochs and run_dir.exists():
        ap.error(f"{run_dir} exists: the LSTM LM figures must come from a fresh training run; remove it or give "
                 "another --out")
    out.mkdir(parents=True, exist_ok=True)
    train = read_sentences([data / "lm_train.txt"])
    evals = {name: read_sentences([data / f"{name}.jsonl"]) for name in ("dev", "test", "test_accent")}
    figures: dict = {"lm_train_sentences": len(train), "lm_train_words": sum(len(s.split()) for s in train),
                     "load_average_start": round(os.getloadavg()[0], 2)}

    models = {
        "word4": NGramConfig(order=4, units="word"),
        "word4_pruned": NGramConfig(order=4, units="word", prune=(0, 0, 1)),
        "char6": NGramConfig(order=6, units="char"),
        "char10": NGramConfig(order=10, units="char", prune=(0, 0, 0, 0, 0, 1)),
    }
    for name, cfg in models.items():
        lm = train_ngram(train, cfg)
        path = lm.write_arpa(out / f"{name}.arpa")
        f = {"units": cfg.units, "order": cfg.order, "prune": list(cfg.prune),
             "train_seconds": round(lm.stats["train_seconds"], 2), "vocab_size": len(lm.vocab), "ngrams": lm.counts,
             "arpa_mb": round(path.stat().st_size / 1e6, 1)}
        for split, sentences in evals.items():
            ev = lm.evaluate(sentences)
            f[f"{split}_oov_rate"] = round(ev.oov_rate, 5)
            f[f"{split}_perplexity"] = round(ev.perplexity, 3)
            f[f"{split}_perplexity_with_oov"] = round(ev.perplexity_with_oov, 3)
        if cfg.order <= 6:
            load_s, diff = kenlm_load_and_readback(path, lm, evals["test"])
            f["kenlm_load_seconds"] = round(load_s, 3)
            f["kenlm_readback_max_abs_diff_ln"] = float(f"{diff * LN10:.2e}")
        if name == "word4":
            f["lexicon_words"] = write_lexicon(lm.words(), out / "lexicon.txt")
            f["decoder_build_seconds"] = round(decoder_load(out, BeamConfig(lexicon="lexicon.txt", lm=path.name,
                                                                              lm_weight=1.0)), 3)
        if name == "char6":
            f["decoder_build_seconds"] = round(decoder_load(out, BeamConfig(lm=path.name, lm_weight=1.0)), 3)
        figures[name] = f
        print(name, json.dumps(f), flush=True)

    if args.lstm_epochs:
        cmd = [sys.executable, str(REPO / "recipes/asr/train_lm.py"), "--preset", "synth",
               "--data.train_text", str(data / "lm_train.txt"), "--data.dev_text", str(data / "dev.jsonl"),
               "--train.epochs", str(args.lstm_epochs), "--train.run_dir", str(run_dir)]
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env)
        wall = time.perf_counter() - t0
        scorer = load_rnnlm(run_dir / "release")
        release_cfg = json.loads((run_dir / "release" / "config.json").read_text())
        f = {"model": release_cfg["model"], "epochs": args.lstm_epochs, "steps": release_cfg["metrics"]["steps"],
             "train_seconds": round(release_cfg["metrics"]["train_seconds"], 1), "recipe_wall_seconds": round(wall, 1),
             "resumed_existing_run": False, "torch_threads": 1}
        for split, sentences in evals.items():
            t0 = time.perf_counter()
            ev = evaluate(scorer.model, scorer.vocab, sentences)
            f[f"{split}_perplexity"] = round(ev.perplexity_with_oov, 3)  # every word, rare ones as the <unk> class
            f[f"{split}_perplexity_in_vocab"] = round(ev.perplexity, 3)
            f[f"{split}_oov_rate"] = round(ev.oov_rate, 5)
            f[f"{split}_score_seconds"] = round(time.perf_counter() - t0, 2)
        figures["lstm"] = f
        print("lstm", json.dumps(f), flush=True)
        figures["same_basis"] = same_basis(train, evals, scorer)
        print("same_basis", json.dumps(figures["same_basis"]), flush=True)
    figures["load_average_end"] = round(os.getloadavg()[0], 2)

    write_record("asr_lm", figures, allow_dirty=args.allow_dirty,
                 title="Language models on the synthetic corpus: n-gram and LSTM (CPU)",
                 notes="All LMs train on lm_train.txt (dev/test sentences removed). N-gram perplexity: SRILM "
                       "convention, over in-vocabulary words and </s>, OOV words skipped; perplexity_with_oov: OOVs "
                       "scored as <unk>. LSTM perplexity counts every word, with words seen once in training as the "
                       "<unk> class (so it is not the same vocabulary as the n-grams': do not compare those two "
                       "columns). same_basis: the word 4-gram and the LSTM on one closed vocabulary (the LSTM's; "
                       "other words are <unk> in training and evaluation text, the 4-gram retrained on that text), "
                       "both scored on every word and </s> of the same sentences. The LSTM is trained from scratch "
                       "in this run (recipe_wall_seconds). kenlm_load_seconds: "
                       "flashlight's KenLM reading the ARPA file (median of 3); decoder_build_seconds: torchaudio "
                       "ctc_decoder construction (word model: plus the lexicon trie). kenlm_readback: the largest "
                       "per-unit natural-log difference between KenLM and our estimator on test. char10 cannot be "
                       "used for decoding (KenLM in flashlight-text stops at order 6). Threads: 1; the 2-core CPU was "
                       "shared with other processes (load averages in the figures), so times are slower than on an "
                       "idle machine.")


if __name__ == "__main__":
    main()
