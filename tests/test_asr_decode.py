"""Greedy CTC decoding and word timings on hand-made posteriors whose answers are known."""

from __future__ import annotations

import math

import torch

from speechdraw.asr.decode import Hypothesis, align_words, greedy_decode, word_alignments
from speechdraw.asr.model import to_output_ids
from speechdraw.asr.text import TokenSet

TOKENS = TokenSet.characters()


def peaky(frames: list[str], p: float = 0.9) -> torch.Tensor:
    """(T, V) log-probabilities: each frame puts `p` on its symbol ("_" = blank), the rest spread evenly."""
    V = len(TOKENS) + 1
    lp = torch.full((len(frames), V), math.log((1 - p) / (V - 1)))
    for t, s in enumerate(frames):
        lp[t, 0 if s == "_" else to_output_ids(TOKENS.encode(s))[0]] = math.log(p)
    return lp


def test_greedy_merges_repeats_drops_blanks_and_respects_lengths():
    a = peaky(list("_hhe_ll_lo_ _w") + ["_"])  # "hello w": "ll" then blank then "l" is a real double letter
    b = peaky(list("ok") + list("zzzzzzzzzzzzz"))  # only 2 valid frames; the rest is padding
    hyps = greedy_decode(torch.stack([a, b]), torch.tensor([15, 2]), TOKENS)
    assert [h.text for h in hyps] == ["hello w", "ok"]
    assert hyps[0].tokens == TOKENS.encode("hello w")
    assert hyps[0].timesteps == [1, 3, 5, 8, 9, 11, 13]
    assert hyps[1].timesteps == [0, 1]
    assert math.isclose(hyps[1].score, 2 * math.log(0.9), rel_tol=1e-5)


def test_word_timings_and_confidences_from_forced_alignment():
    frames = list("__cat__") + [" "] + list("__dd_o_gg__")
    lp = peaky(frames)
    words = word_alignments(lp, TOKENS.encode("cat dog"), TOKENS, frame_shift=0.04)
    assert [w.word for w in words] == ["cat", "dog"]
    # "cat" occupies frames 2..4, "dog" frames 10..16 (d d _ o _ g g): start of first, end of last token.
    assert math.isclose(words[0].start, 2 * 0.04) and math.isclose(words[0].end, 5 * 0.04)
    assert math.isclose(words[1].start, 10 * 0.04) and math.isclose(words[1].end, 17 * 0.04)
    assert all(math.isclose(w.confidence, 0.9, rel_tol=1e-4) for w in words)

    # A less certain word gets a lower confidence.
    shaky = peaky(frames)
    shaky[2:5] = peaky(list("cat"), p=0.5)
    low = word_alignments(shaky, TOKENS.encode("cat dog"), TOKENS, frame_shift=0.04)
    assert math.isclose(low[0].confidence, 0.5, rel_tol=1e-4) and low[1].confidence > 0.89

    # align_words fills in the hypotheses that greedy decoding produced.
    hyps = align_words(greedy_decode(lp[None], torch.tensor([len(frames)]), TOKENS), lp[None],
                       torch.tensor([len(frames)]), TOKENS, 0.04)
    assert isinstance(hyps[0], Hypothesis) and [(w.word, w.start) for w in hyps[0].words] == [("cat", 0.08),
                                                                                                ("dog", 0.4)]


def test_word_timings_edge_cases():
    assert word_alignments(peaky(list("___")), [], TOKENS, 0.04) == []
    assert word_alignments(peaky(list("ab")), TOKENS.encode("aab"), TOKENS, 0.04) == []  # cannot fit
    phones = TokenSet.phonemes()
    lp = torch.full((6, len(phones) + 1), -10.0)
    for t, s in enumerate([None, "k", None, "ae", "t", None]):
        lp[t, 0 if s is None else phones.encode(s)[0] + 1] = 0.0
    words = word_alignments(lp.log_softmax(-1), phones.encode("k ae t"), phones, 0.01)
    assert [w.word for w in words] == ["k", "ae", "t"]  # unit token sets: each token is its own item
