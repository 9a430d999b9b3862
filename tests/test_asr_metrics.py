"""WER/CER: edit operations on known cases, parity with a reference edit distance and with the pure-Python loop the
vectorised alignment replaced (same sub/del/ins on every tie), the aligned path, corpus totals."""

from __future__ import annotations

import random

import pytest
import torchaudio.functional as AF

from speechdraw.asr.metrics import (
    ErrorRates,
    align,
    aligned_text,
    cer,
    char_ops,
    confusions,
    edit_distance,
    edit_ops,
    edit_ops_reference,
    wer,
    word_ops,
)

# (ref, hyp, word (sub, del, ins), char (sub, del, ins)) as the pure-Python implementation before the vectorised one
# counted them (commit 9e1279b): equally cheap alignments with different splits, repeats, empty sides, reorderings.
TRICKY = [
    ("the mat", "mat today", (2, 0, 0), (5, 0, 2)),
    ("the cat sat on the mat", "a cat sat on mat today", (3, 0, 0), (6, 2, 2)),
    ("a b c", "c b a", (2, 0, 0), (2, 0, 0)),
    ("a a a", "a a", (0, 1, 0), (0, 2, 0)),
    ("a b a b", "b a b a", (0, 1, 1), (4, 0, 0)),
    ("", "x y", (0, 0, 2), (0, 0, 3)),
    ("x y", "", (0, 2, 0), (0, 3, 0)),
    ("the the the", "the", (0, 2, 0), (0, 8, 0)),
    ("one two three four", "one too three for four", (1, 0, 1), (1, 0, 4)),
    ("c b a", "b a a a c b", (0, 1, 4), (2, 0, 6)),  # the most substitutions would be (2, 0, 3): not what it chose
    ("a c c a c", "b a a c b b c a", (0, 1, 4), (2, 0, 6)),
    ("c b c b c", "a a a b b a c b", (1, 1, 4), (3, 0, 6)),
    ("i am here", "i'm here", (1, 1, 0), (1, 1, 0)),
    ("new york city", "newyork city", (1, 1, 0), (0, 1, 0)),
    ("a b c d e", "e d c b a", (4, 0, 0), (4, 0, 0)),
]


reference_ops = edit_ops_reference  # the definition the vectorised version must reproduce


@pytest.mark.parametrize("ref,hyp,words,chars", TRICKY)
def test_tricky_cases_count_as_before(ref, hyp, words, chars):
    w, c = word_ops(ref, hyp), char_ops(ref, hyp)
    assert (w.substitutions, w.deletions, w.insertions) == words
    assert (c.substitutions, c.deletions, c.insertions) == chars


def test_same_splits_as_the_pure_python_loop_and_a_consistent_path():
    rng = random.Random(1)
    for _ in range(1500):
        a = [rng.choice("abc") for _ in range(rng.randint(0, 10))]
        b = [rng.choice("abc") for _ in range(rng.randint(0, 10))]
        ops = edit_ops(a, b)
        assert (ops.substitutions, ops.deletions, ops.insertions) == reference_ops(a, b), (a, b)
        pairs = align(a, b)  # the path the counts belong to
        assert [x for x, _ in pairs if x is not None] == a and [y for _, y in pairs if y is not None] == b
        assert sum(x is not None and y is not None and x != y for x, y in pairs) == ops.substitutions
        assert sum(y is None for _, y in pairs) == ops.deletions
        assert sum(x is None for x, _ in pairs) == ops.insertions
        assert all(x is not None or y is not None for x, y in pairs)


def test_aligned_text_and_confusions():
    pairs = align("the cat sat on the mat".split(), "the bat sat on mat today".split())
    assert aligned_text(pairs) == "the (cat->bat) sat on (the->mat) (mat->today)"
    pairs = align("a b c d".split(), "a c d e".split())
    assert aligned_text(pairs) == "a (b->*) c d (*->e)"
    assert confusions(pairs) == {("b", None): 1, (None, "e"): 1}
    assert aligned_text(align([], ["x"])) == "(*->x)" and align([], []) == []


def test_known_cases():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3 and edit_distance("abc", "") == 3 and edit_distance("", "") == 0
    ops = word_ops("the cat sat on the mat", "the cat sat on mat")
    assert (ops.substitutions, ops.deletions, ops.insertions, ops.ref_len) == (0, 1, 0, 6)
    ops = word_ops("the cat sat", "the cat sat down")
    assert (ops.substitutions, ops.deletions, ops.insertions, ops.ref_len) == (0, 0, 1, 3)
    ops = word_ops("the mat", "mat today")  # two substitutions or a deletion + an insertion: same cost, 2 errors
    assert ops.errors == 2
    ops = word_ops("a b c", "a x c")
    assert (ops.substitutions, ops.deletions, ops.insertions) == (1, 0, 0)
    assert char_ops("ab  c", " ab c ").errors == 0  # whitespace runs collapse
    assert char_ops("ab c", "abc").deletions == 1  # a lost space is a character error


def test_parity_with_torchaudio_edit_distance():
    rng = random.Random(0)
    for _ in range(200):
        a = [rng.choice("abc") for _ in range(rng.randint(0, 9))]
        b = [rng.choice("abc") for _ in range(rng.randint(0, 9))]
        ops = edit_ops(a, b)
        assert ops.errors == AF.edit_distance(a, b)
        assert ops.ref_len == len(a)
        assert len(a) - ops.deletions - ops.substitutions + ops.insertions + ops.substitutions == len(b)


def test_rates_are_corpus_totals_not_averages():
    refs = ["a b c d", "e"]
    hyps = ["a b c d", "f"]
    # 1 error in 5 reference words overall (an average of per-utterance rates would say 0.5).
    assert wer(refs, hyps) == 1 / 5
    assert cer(refs, hyps) == 1 / (7 + 1)
    r = ErrorRates.empty()
    for a, b in zip(refs, hyps):
        r.add(a, b)
    back = ErrorRates.from_counts(r.counts())
    assert (back.wer, back.cer, back.utterances) == (r.wer, r.cer, 2)
    assert wer(["x"], ["x y z"]) == 2.0  # insertions can push WER above 1
