"""WER/CER: edit operations on known cases, parity with a reference edit distance, corpus totals."""

from __future__ import annotations

import random

import torchaudio.functional as AF

from speechdraw.asr.metrics import ErrorRates, cer, char_ops, edit_distance, edit_ops, wer, word_ops


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
