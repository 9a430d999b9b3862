"""Kneser-Ney estimator: textbook values on a hand-worked corpus, parity with a naive dict implementation of the
formulas, normalisation of every context, pruning, and flashlight's KenLM reading our ARPA files back."""

from __future__ import annotations

import gzip
import json
import math
import random
import shutil
from collections import Counter, defaultdict
from fractions import Fraction

import numpy as np
import pytest
from asr_fixtures import recipe
from conftest import run_script

from speechdraw.asr.lm.ngram import (
    BOS,
    EOS,
    LN10,
    UNK,
    NGramConfig,
    NGramLM,
    kn_discounts,
    parse_memory,
    read_sentences,
    sentence_units,
    train_ngram,
)

# A hand-worked bigram corpus (7 sentences; found by a search for the smallest corpus whose count-of-counts give
# valid discounts at both orders):
#
#   <s> a </s> | <s> b d </s> | <s> c b </s> | <s> c </s> | <s> b c </s> | <s> b c </s> | <s> a c </s>
#
# Bigram counts (raw: 2 is the highest order):
#   <s> a 2   <s> b 3   <s> c 2   a </s> 1   a c 1   b d 1   b </s> 1   b c 2   c b 1   c </s> 4   d </s> 1
#   count-of-counts t1..t4 = 6, 3, 1, 1 -> Y = 6 / (6 + 2*3) = 1/2
#   D1 = 1 - 2 Y t2/t1 = 1 - 1/2 = 1/2;  D2 = 2 - 3 Y t3/t2 = 2 - 1/2 = 3/2;  D3+ = 3 - 4 Y t4/t3 = 1
# Unigram continuation counts (distinct left neighbours):
#   a {<s>} 1   b {<s>, c} 2   c {<s>, a, b} 3   d {b} 1   </s> {a, b, c, d} 4        total 11
#   t1..t4 = 2, 1, 1, 1 -> Y = 2 / 4 = 1/2;  D1 = 1 - 2 Y 1/2 = 1/2;  D2 = 2 - 3 Y 1/1 = 1/2;  D3+ = 3 - 4 Y = 1
#   discount mass 1/2 + 1/2 + 1 + 1/2 + 1 = 7/2 -> gamma() = (7/2) / 11 = 7/22, spread over 6 units (a b c d </s>
#   <unk>): 7/132 each
#   p(a) = (1 - 1/2)/11 + 7/132 = 13/132   p(b) = (2 - 1/2)/11 + 7/132 = 25/132   p(c) = (3 - 1)/11 + 7/132 = 31/132
#   p(d) = 13/132   p(</s>) = (4 - 1)/11 + 7/132 = 43/132   p(<unk>) = 7/132            (sum = 132/132)
# Bigrams, context <s>: a 2, b 3, c 2 (total 7), discounts 3/2 + 1 + 3/2 = 4 -> gamma(<s>) = 4/7
#   p(a | <s>) = (2 - 3/2)/7 + 4/7 * 13/132 = 59/462      p(b | <s>) = (3 - 1)/7 + 4/7 * 25/132 = 13/33
#   p(d | <s>) = 4/7 * 13/132 = 13/231 (unseen: backs off)
# Context c: b 1, </s> 4 (total 5), discounts 1/2 + 1 -> gamma(c) = 3/10
#   p(</s> | c) = 3/5 + 3/10 * 43/132 = 307/440   p(b | c) = 1/10 + 3/10 * 25/132 = 69/440   p(<unk> | c) = 7/440
# Context b: d 1, </s> 1, c 2 (total 4), discounts 1/2 + 1/2 + 3/2 -> gamma(b) = 5/8
#   p(c | b) = (2 - 3/2)/4 + 5/8 * 31/132 = 287/1056
# Sentence "b c": p = 13/33 * 287/1056 * 307/440.
TOY = ["a", "b d", "c b", "c", "b c", "b c", "a c"]
F = Fraction


def zipf_corpus(n_sentences: int, vocab: int = 3000, seed: int = 0) -> list[str]:
    """Sentences of Zipf-distributed words ("w" + the rank's digits as letters: wa, wb, ..., wbc): enough rare words
    for every order's count-of-counts."""
    rng = random.Random(seed)
    words = ["w" + "".join("abcdefghij"[int(d)] for d in str(i)) for i in range(vocab)]
    weights = [1 / (i + 1) for i in range(vocab)]
    return [" ".join(rng.choices(words, weights, k=rng.randint(1, 9))) for _ in range(n_sentences)]


def test_discount_formula():
    # t = 10, 4, 2, 1: Y = 10/18 = 5/9; D1 = 1 - 2(5/9)(4/10) = 5/9; D2 = 2 - 3(5/9)(2/4) = 7/6;
    # D3+ = 3 - 4(5/9)(1/2) = 17/9
    assert kn_discounts([10, 4, 2, 1]) == pytest.approx((5 / 9, 7 / 6, 17 / 9), abs=1e-12)
    assert kn_discounts([3, 0, 1, 1]) is None  # undefined: the estimator falls back


def test_toy_corpus_gives_the_textbook_values(tmp_path):
    lm = train_ngram(TOY, NGramConfig(order=2))
    assert lm.stats["count_of_counts"] == [[2, 1, 1, 1], [6, 3, 1, 1]]
    assert lm.stats["discounts"] == [pytest.approx([0.5, 0.5, 1.0]), pytest.approx([0.5, 1.5, 1.0])]
    assert lm.stats["fallback_orders"] == []

    def p(unit, *context):
        return math.exp(lm.logprob(unit, context))

    expected_unigrams = {"a": F(13, 132), "b": F(25, 132), "c": F(31, 132), "d": F(13, 132), EOS: F(43, 132),
                         UNK: F(7, 132)}
    for unit, value in expected_unigrams.items():
        assert p(unit) == pytest.approx(float(value), abs=1e-12)
    assert p("zebra") == pytest.approx(7 / 132, abs=1e-12)  # out of vocabulary: <unk>
    assert p("a", BOS) == pytest.approx(59 / 462, abs=1e-12)
    assert p("b", BOS) == pytest.approx(13 / 33, abs=1e-12)
    assert p("d", BOS) == pytest.approx(13 / 231, abs=1e-12)
    assert p(EOS, "c") == pytest.approx(307 / 440, abs=1e-12)
    assert p("b", "c") == pytest.approx(69 / 440, abs=1e-12)
    assert p("zebra", "c") == pytest.approx(7 / 440, abs=1e-12)
    assert p("c", "b") == pytest.approx(287 / 1056, abs=1e-12)
    assert p("c", "a", "b") == pytest.approx(287 / 1056, abs=1e-12)  # a bigram model ignores older context
    assert lm.score("b c") == pytest.approx(math.log(13 / 33 * 287 / 1056 * 307 / 440), abs=1e-12)
    assert lm.score10("b c") == pytest.approx(math.log10(13 / 33 * 287 / 1056 * 307 / 440), abs=1e-12)

    # The ARPA file holds the same numbers: log10 p and log10 back-off = log10 gamma.
    lines = lm.write_arpa(tmp_path / "toy.arpa").read_text().splitlines()
    rows = {tuple(line.split("\t")[1].split()): line.split("\t") for line in lines if "\t" in line}
    assert float(rows[("a",)][0]) == pytest.approx(math.log10(13 / 132), abs=1e-6)
    assert float(rows[("<s>",)][0]) == -99
    assert float(rows[("<s>",)][2]) == pytest.approx(math.log10(4 / 7), abs=1e-6)
    assert float(rows[("c",)][2]) == pytest.approx(math.log10(3 / 10), abs=1e-6)
    assert float(rows[("b",)][2]) == pytest.approx(math.log10(5 / 8), abs=1e-6)
    assert float(rows[("c", "</s>")][0]) == pytest.approx(math.log10(307 / 440), abs=1e-6)
    assert ("a", "b") not in rows and len(rows) == 7 + 11  # 7 unigrams (a b c d <s> </s> <unk>), 11 seen bigrams


def naive_interpolated_kn(sentences: list[str], order: int):
    """The formulas of Chen & Goodman, literally, with dicts and recursion (slow; small corpora only)."""
    seqs = [[BOS, *s.split(), EOS] for s in sentences]
    counts = [Counter() for _ in range(order + 1)]
    for s in seqs:
        for n in range(1, order + 1):
            for i in range(len(s) - n + 1):
                counts[n][tuple(s[i:i + n])] += 1
    adjusted = [Counter() for _ in range(order + 1)]
    adjusted[order] = Counter(counts[order])
    for n in range(1, order):
        left = defaultdict(set)
        for g in counts[n + 1]:
            left[g[1:]].add(g[0])
        for g, c in counts[n].items():
            adjusted[n][g] = c if g[0] == BOS else len(left[g])
    del adjusted[1][(BOS,)]
    discounts = {}
    for n in range(1, order + 1):
        t = [sum(1 for c in adjusted[n].values() if c == k) for k in (1, 2, 3, 4)]
        y = t[0] / (t[0] + 2 * t[1])
        discounts[n] = [k - (k + 1) * y * t[k] / t[k - 1] for k in (1, 2, 3)]
    predictable = len({w for s in seqs for w in s} - {BOS}) + 1  # + <unk>
    total, mass = defaultdict(float), defaultdict(float)
    for n in range(1, order + 1):
        for g, c in adjusted[n].items():
            total[g[:-1]] += c
            mass[g[:-1]] += discounts[n][min(c, 3) - 1]

    def prob(w, context):
        context = tuple(context)[max(0, len(context) - order + 1):] if order > 1 else ()
        n = len(context) + 1
        if n == 1:
            c = adjusted[1].get((w,), 0)
            own = (c - discounts[1][min(c, 3) - 1]) / total[()] if c else 0.0
            return own + mass[()] / total[()] / predictable
        lower = prob(w, context[1:])
        if context not in total:
            return lower  # an unseen context passes everything down
        c = adjusted[n].get(context + (w,), 0)
        own = (c - discounts[n][min(c, 3) - 1]) / total[context] if c else 0.0
        return own + mass[context] / total[context] * lower

    return prob


@pytest.mark.parametrize("order", [3, 4])
def test_matches_the_naive_formulas(order):
    sentences = zipf_corpus(1500)
    lm = train_ngram(sentences, NGramConfig(order=order))
    assert lm.stats["fallback_orders"] == []
    naive = naive_interpolated_kn(sentences, order)
    rng = random.Random(1)
    contexts = [(), (BOS,), ("wa",), ("wf", "wb"), (BOS, "wc", "wa"), ("wb", "nope")]  # seen, unseen, OOV
    for s in rng.sample(sentences, 15):
        units = [BOS, *s.split()]
        k = rng.randrange(1, len(units) + 1)
        contexts.append(tuple(units[max(0, k - order + 1):k]))
    worst = 0.0
    for context in contexts:
        ours = lm.distribution10(context) * LN10
        for i, unit in enumerate(lm.vocab):
            if unit != BOS:
                worst = max(worst, abs(ours[i] - math.log(naive(unit, context))))
    assert worst < 1e-10


def every_context(lm: NGramLM) -> list[tuple[str, ...]]:
    out = [()]
    for n in range(1, lm.order):
        out += [tuple(t.split()) for t in lm.ngram_texts(n) if not t.endswith(EOS)]
    return out


@pytest.mark.parametrize("prune", [(0,), (0, 0, 1)])
def test_every_context_sums_to_one(prune):
    lm = train_ngram(zipf_corpus(300, vocab=400), NGramConfig(order=3, prune=prune))
    contexts = every_context(lm) + [("wd", "unseen"), ("unseen", "wd")]
    assert len(contexts) > 1000
    keep = np.array([u != BOS for u in lm.vocab])
    sums = np.array([np.sum(10.0 ** lm.distribution10(c)[keep]) for c in contexts])
    assert np.max(np.abs(sums - 1)) < 1e-6


def test_pruning_drops_rare_ngrams_and_keeps_the_model_closed():
    sentences = zipf_corpus(600)
    full = train_ngram(sentences, NGramConfig(order=3))
    pruned = train_ngram(sentences, NGramConfig(order=3, prune=(0, 1, 1)))
    assert pruned.counts[0] == full.counts[0]
    assert pruned.counts[1] < full.counts[1] // 2 and pruned.counts[2] < full.counts[2] // 2
    stored = [set(pruned.ngram_texts(n)) for n in (1, 2, 3)]
    for n in (2, 3):
        for text in stored[n - 1]:
            units = text.split()
            assert " ".join(units[:-1]) in stored[n - 2] and " ".join(units[1:]) in stored[n - 2]
    # A singleton trigram is gone: its probability is now a back-off, and differs from the full model's.
    trigram_counts = Counter(tuple(s[i:i + 3]) for s in ([BOS, *x.split(), EOS] for x in sentences)
                             for i in range(len(s) - 2))
    singleton = next(g for g, c in trigram_counts.items() if c == 1 and BOS not in g)
    assert " ".join(singleton) not in stored[2] and " ".join(singleton) in set(full.ngram_texts(3))
    assert pruned.logprob(singleton[2], singleton[:2]) != pytest.approx(full.logprob(singleton[2], singleton[:2]))
    # Pruning drops n-grams but changes no kept one: each stored probability is the full model's for that n-gram
    # (the highest order is pruned while it is counted, so its sums over the dropped n-grams must still be exact).
    for prune in ((0, 1, 1), (0, 0, 2)):
        pruned = train_ngram(sentences, NGramConfig(order=3, prune=prune))
        for n in (2, 3):
            full_p = dict(zip(full.ngram_texts(n), full.tables[n - 1].log10p))
            kept = pruned.ngram_texts(n)
            assert 0 < len(kept) <= len(full_p) and (n < 3 or len(kept) < len(full_p))
            assert np.allclose([full_p[t] for t in kept], pruned.tables[n - 1].log10p, rtol=0, atol=1e-12)
        assert pruned.stats["raw_ngrams"] == full.stats["raw_ngrams"]


def test_character_units():
    assert sentence_units("the  cat", "char") == list("the|cat")
    lm = train_ngram(["the cat", "the hat"], NGramConfig(order=3, units="char"))
    assert "|" in lm.vocab and " " not in lm.vocab
    assert lm.logprob10("h", ["t"]) > lm.logprob10("a", ["t"])  # "th" was seen twice, "ta" never


def test_perplexity_and_oov_rate_by_hand():
    lm = train_ngram(zipf_corpus(200, vocab=100), NGramConfig(order=2))
    held_out = ["wb wc zzz", "wa qqq"]
    per_unit = lm.unit_log10probs(held_out)  # [w1 w2 zzz </s>], [w0 qqq </s>]
    ev = lm.evaluate(held_out)
    assert (ev.sentences, ev.units, ev.oov) == (2, 5, 2) and ev.oov_rate == pytest.approx(2 / 5)
    in_vocab = per_unit[0][[0, 1, 3]].sum() + per_unit[1][[0, 2]].sum()
    assert ev.perplexity == pytest.approx(10 ** (-in_vocab / 5))  # 3 in-vocabulary words + 2 </s>
    assert ev.perplexity_with_oov == pytest.approx(10 ** (-(per_unit[0].sum() + per_unit[1].sum()) / 7))


def kenlm_log10probs(path, vocab, sentences, units):
    """Score with flashlight's KenLM (what the beam search uses): start(0) is <s>, finish() adds </s>."""
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import create_word_dict

    seqs = [sentence_units(s, units) for s in sentences]
    words = sorted(set(vocab[3:]) | {u for s in seqs for u in s})
    dictionary = create_word_dict({w: [[w]] for w in [*words, UNK, EOS]})
    kenlm = KenLM(str(path), dictionary)
    out = []
    for seq in seqs:
        state, scores = kenlm.start(False), []
        for u in seq:
            state, s = kenlm.score(state, dictionary.get_index(u))
            scores.append(s)
        state, s = kenlm.finish(state)
        out.append(np.array([*scores, s]))
    return out, kenlm, dictionary


@pytest.mark.parametrize("units,order,prune", [("word", 3, (0,)), ("word", 4, (0, 0, 1)), ("char", 6, (0, 0, 0, 1))])
def test_kenlm_reads_back_the_estimators_probabilities(tmp_path, units, order, prune):
    train = zipf_corpus(2000, seed=0)
    held_out = zipf_corpus(100, seed=7) + ["wb wc neverseen wd", "unknownword"]  # OOVs score as <unk>
    lm = train_ngram(train, NGramConfig(order=order, units=units, prune=prune))
    path = lm.write_arpa(tmp_path / "lm.arpa")
    theirs, kenlm, dictionary = kenlm_log10probs(path, lm.vocab, held_out, units)
    ours = lm.unit_log10probs(held_out)
    diff = max(np.max(np.abs(a - b)) for a, b in zip(ours, theirs))
    assert diff * LN10 < 1e-4  # natural-log difference (float32 storage and 7-digit ARPA values)
    # Our own reader gives the same model back.
    again = NGramLM.read_arpa(path)
    assert again.units == units and again.counts == lm.counts
    assert max(np.max(np.abs(a - b)) for a, b in zip(again.unit_log10probs(held_out), ours)) < 1e-6
    # KenLM's scores are log10: 10**score over every unit after <s> sums to one.
    start = kenlm.start(False)
    total = sum(10 ** kenlm.score(start, dictionary.get_index(u))[1] for u in lm.vocab if u not in (BOS, EOS))
    total += 10 ** kenlm.finish(start)[1]
    assert total == pytest.approx(1.0, abs=1e-5)


def test_train_ngram_recipe(tmp_path):
    text = tmp_path / "train.txt"
    text.write_text("\n".join(zipf_corpus(400, vocab=300)) + "\n")
    manifest = tmp_path / "dev.jsonl"
    manifest.write_text("".join(json.dumps({"audio": "x.flac", "text": s}) + "\n" for s in zipf_corpus(50, seed=3)))
    out, lexicon, report = tmp_path / "lm" / "word3.arpa", tmp_path / "lm" / "lexicon.txt", tmp_path / "r.json"
    proc = run_script(["recipes/asr/train_ngram.py", "--text", str(text), "--out", str(out), "--ngram.order", "3",
                       "--ngram.prune", "0,0,1", "--lexicon", str(lexicon), "--eval", str(manifest),
                       "--report", str(report)])
    assert "n-grams per order" in proc.stdout and "perplexity" in proc.stdout
    figures = json.loads(report.read_text())
    # Short Zipf sentences recur: dev sentences also in the training text are counted and warned about.
    in_train = len(set(zipf_corpus(50, seed=3)) & set(zipf_corpus(400, vocab=300)))
    assert figures["eval"][str(manifest)]["in_training_text"] == in_train > 0
    assert f"{in_train} of its sentences are in the training text" in proc.stderr
    lm = NGramLM.read_arpa(out)
    assert figures["ngrams"] == lm.counts and figures["vocab_size"] == len(lm.vocab)
    assert figures["eval"][str(manifest)]["perplexity"] == pytest.approx(lm.perplexity(read_sentences([manifest])))
    lines = lexicon.read_text().splitlines()
    assert len(lines) == len(lm.words()) and "wbc\tw b c" in lines


# ---- at scale: streamed counting, vocabulary limit, KenLM's lmplz


def test_streamed_counting_with_a_tiny_memory_budget_gives_the_same_arpa(tmp_path):
    sentences = zipf_corpus(3000, vocab=2000, seed=5)
    for cfg in (NGramConfig(order=4), NGramConfig(order=4, prune=(0, 0, 1), vocab_size=500)):
        whole = train_ngram(sentences, cfg)
        spill_dir = tmp_path / "spill"
        spill_dir.mkdir(exist_ok=True)
        streamed = train_ngram(iter(sentences), cfg, memory=parse_memory("8k"), tmp_dir=spill_dir)
        assert whole.stats["spilled_runs"] == 0
        assert streamed.stats["spilled_runs"] >= 3 * 10  # several sorted runs per order merged back from disk
        assert not list(spill_dir.iterdir())  # spilled runs and the unit stream are removed afterwards
        a, b = whole.write_arpa(tmp_path / "whole.arpa"), streamed.write_arpa(tmp_path / "streamed.arpa")
        assert a.read_bytes() == b.read_bytes()
        assert streamed.stats["raw_ngrams"] == whole.stats["raw_ngrams"]


def test_arpa_written_block_by_block_is_the_same_file_and_reads_back(tmp_path):
    """write_arpa formats a few n-grams at a time (memory for a block, not an order): blocks of 7 lines give the bytes
    one block per order gives, every n-gram's text is its units followed down the context rows, and the file reads
    back to the same tables."""
    lm = train_ngram(zipf_corpus(600, vocab=400, seed=4), NGramConfig(order=4, prune=(0, 0, 1)))
    one = lm.write_arpa(tmp_path / "one.arpa", block=10**9)
    small = lm.write_arpa(tmp_path / "small.arpa", block=7)
    assert one.read_bytes() == small.read_bytes()
    back = NGramLM.read_arpa(small)
    for n in range(1, 5):
        texts = lm.ngram_texts(n)
        assert texts == back.ngram_texts(n) and len(texts) == lm.counts[n - 1] > 7
        assert [" ".join(lm.vocab[u] for u in row) for row in lm.ngram_units(n, slice(3, 9)).tolist()] == texts[3:9]
        np.testing.assert_allclose(back.tables[n - 1].log10p, lm.tables[n - 1].log10p, atol=1e-6)


def test_vocabulary_limit_counts_the_other_words_as_unk(tmp_path):
    sentences = zipf_corpus(1500, vocab=800, seed=2)
    counts = Counter(w for s in sentences for w in s.split())
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    kept = set(ranked[:200])
    lm = train_ngram(sentences, NGramConfig(order=3, vocab_size=200))
    assert set(lm.words()) == kept and len(lm.vocab) == 203
    assert lm.stats["oov_tokens"] == sum(c for w, c in counts.items() if w not in kept) > 0
    # The same model as training on the text with those words written as <unk>.
    replaced = [" ".join(w if w in kept else UNK for w in s.split()) for s in sentences]
    same = train_ngram(replaced, NGramConfig(order=3))
    assert lm.write_arpa(tmp_path / "a.arpa").read_bytes() == same.write_arpa(tmp_path / "b.arpa").read_bytes()
    # <unk> is now a frequent word (with n-grams of its own), far likelier than an unseen unit would be.
    assert any(UNK in t.split() for t in lm.ngram_texts(3))
    dropped = ranked[250]
    assert lm.logprob10(dropped, ["wa"]) == lm.logprob10(UNK, ["wa"]) > math.log10(1 / len(lm.vocab))
    assert parse_memory("1.5G") == 3 * 2**29 and parse_memory("") is None
    with pytest.raises(ValueError, match="memory budget"):
        parse_memory("lots")


def test_train_ngram_recipe_streams_gzip_text_under_a_budget(tmp_path, capsys):
    train_ngram_recipe = recipe("train_ngram")  # in this process: each bad command line costs no interpreter start
    sentences = zipf_corpus(1000, vocab=600, seed=4)
    text = tmp_path / "train.txt.gz"
    with gzip.open(text, "wt") as f:
        f.write("\n".join(sentences) + "\n")
    base = ["--text", str(text), "--ngram.order", "3", "--ngram.vocab_size", "300"]
    train_ngram_recipe.main([*base, "--out", str(tmp_path / "mem.arpa")])
    report = train_ngram_recipe.main([*base, "--out", str(tmp_path / "disk.arpa"), "--memory", "16k",
                                      "--tmp_dir", str(tmp_path)])
    assert (tmp_path / "mem.arpa").read_bytes() == (tmp_path / "disk.arpa").read_bytes()
    assert report["spilled_runs"] > 0 and report["vocab_size"] == 303 and report["oov_tokens"] > 0
    assert "spilled to disk" in capsys.readouterr().out
    for bad, why in ((["--memory", "lots"], "--memory"), (["--backend", "srilm"], "--backend"),
                     (["--backend", "lmplz"], "lmplz")):
        with pytest.raises(SystemExit) as stop:
            train_ngram_recipe.main([*base, "--out", str(tmp_path / "x.arpa"), *bad])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and why in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.arpa").exists()


def arpa_entries(path) -> dict[tuple[str, ...], tuple[float, float]]:
    """{n-gram: (log10 p, log10 back-off)} of an ARPA file (back-off 0 where none is written)."""
    out = {}
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            out[tuple(parts[1].split())] = (float(parts[0]), float(parts[2]) if len(parts) > 2 else 0.0)
    return out


@pytest.mark.skipif(shutil.which("lmplz") is None, reason="KenLM's lmplz is not installed")
@pytest.mark.parametrize("units,order,exact_orders", [("word", 3, 3), ("word", 4, 4), ("char", 5, 2)])
def test_lmplz_backend_agrees_with_ours(tmp_path, units, order, exact_orders):
    """lmplz computes in float32, hence 2e-5 in log10. Its count-of-counts also take one n-gram per order below the
    highest at its raw count rather than its adjusted count (the final flush in lm/builder/adjust_counts.cc); on word
    text, where the t_k are large, that moves the discounts by ~1e-6, but the character 5-gram's t3/t4 are small (8)
    and its order-3/4 discounts differ in the third digit: there only the orders with the fallback discounts agree
    (probabilities up to order 2, back-offs of unigrams: a bigram's back-off is made of order-3 discounts)."""
    text = tmp_path / "train.txt"
    text.write_text("\n".join(zipf_corpus(2000, seed=6)) + "\n")
    outs = {}
    for backend in ("numpy", "lmplz"):
        outs[backend] = tmp_path / f"{backend}.arpa"
        run_script(["recipes/asr/train_ngram.py", "--text", str(text), "--out", str(outs[backend]), "--backend",
                    backend, "--ngram.order", str(order), "--ngram.units", units, "--memory", "64M"])
    ours, theirs = arpa_entries(outs["numpy"]), arpa_entries(outs["lmplz"])
    assert set(ours) == set(theirs)  # the same n-grams (every one seen: no pruning)
    # The same probabilities and back-offs (<s>'s p is a placeholder in both).
    compared = [g for g in ours if len(g) <= exact_orders]
    assert len(compared) > 100
    diff_p = max(abs(ours[g][0] - theirs[g][0]) for g in compared if g != (BOS,))
    diff_bo = max(abs(ours[g][1] - theirs[g][1]) for g in compared if exact_orders == order or len(g) < exact_orders)
    assert diff_p < 2e-5 and diff_bo < 2e-5
