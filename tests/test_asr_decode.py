"""Greedy CTC decoding and word timings on hand-made posteriors whose answers are known, and word times against tone
bursts at known times through the whole transcription pipeline (an acoustic "model" that hears energy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from speechdraw.asr.decode import Hypothesis, StepTimes, align_words, greedy_decode, word_alignments
from speechdraw.asr.features import FeatureConfig, FeatureExtractor
from speechdraw.asr.model import AcousticModelConfig, to_output_ids
from speechdraw.asr.release import SpeechModel
from speechdraw.asr.segment import SegmentConfig
from speechdraw.asr.text import TokenSet
from speechdraw.asr.transcribe import Transcriber

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
    times = StepTimes(shift=0.04, offset=0.011)
    words = word_alignments(lp, TOKENS.encode("cat dog"), TOKENS, times)
    assert [w.word for w in words] == ["cat", "dog"]
    # "cat" occupies steps 2..4, "dog" steps 10..16 (d d _ o _ g g): start of first, end of last token.
    assert math.isclose(words[0].start, 0.011 + 2 * 0.04) and math.isclose(words[0].end, 0.011 + 5 * 0.04)
    assert math.isclose(words[1].start, 0.011 + 10 * 0.04) and math.isclose(words[1].end, 0.011 + 17 * 0.04)
    assert all(math.isclose(w.confidence, 0.9, rel_tol=1e-4) for w in words)

    # A less certain word gets a lower confidence.
    shaky = peaky(frames)
    shaky[2:5] = peaky(list("cat"), p=0.5)
    low = word_alignments(shaky, TOKENS.encode("cat dog"), TOKENS, times)
    assert math.isclose(low[0].confidence, 0.5, rel_tol=1e-4) and low[1].confidence > 0.89

    # align_words fills in the hypotheses that greedy decoding produced.
    hyps = align_words(greedy_decode(lp[None], torch.tensor([len(frames)]), TOKENS), lp[None],
                       torch.tensor([len(frames)]), TOKENS, StepTimes(0.04, 0.0))
    assert isinstance(hyps[0], Hypothesis) and [(w.word, w.start) for w in hyps[0].words] == [("cat", 0.08),
                                                                                                ("dog", 0.4)]


def test_word_timings_edge_cases():
    assert word_alignments(peaky(list("___")), [], TOKENS, StepTimes(0.04, 0.0)) == []
    assert word_alignments(peaky(list("ab")), TOKENS.encode("aab"), TOKENS, StepTimes(0.04, 0.0)) == []  # cannot fit
    phones = TokenSet.phonemes()
    lp = torch.full((6, len(phones) + 1), -10.0)
    for t, s in enumerate([None, "k", None, "ae", "t", None]):
        lp[t, 0 if s is None else phones.encode(s)[0] + 1] = 0.0
    words = word_alignments(lp.log_softmax(-1), phones.encode("k ae t"), phones, StepTimes(0.01, 0.0))
    assert [w.word for w in words] == ["k", "ae", "t"]  # unit token sets: each token is its own item


def test_step_times_from_the_feature_config():
    """A 25 ms window in a 512-point FFT at a 10 ms hop: frame t is centred 16 ms after t * hop and stands for the 10 ms
    around its centre, from 11 ms; four stacked frames stand for the 40 ms around their mean centre (31 ms), from 11 ms
    too."""
    times = StepTimes.of(FeatureConfig(), stack=4)
    assert math.isclose(times.shift, 0.04) and math.isclose(times.offset, 0.011)
    assert math.isclose(times(3), 0.131) and math.isclose(StepTimes.of(FeatureConfig(), stack=3).offset, 0.011)


class EnergyModel(nn.Module):
    """An acoustic "model" that hears energy: a model step (`stack` frames, as AcousticModel stacks them) says "a"
    where the mean power of its frames is at least half the loudest step's, blank elsewhere. Half the power is where
    a window's centre lies on the onset (the Hann window is symmetric), so "a" starts at the first step whose centre
    has passed the onset: an unbiased reference for where the pipeline puts word times."""

    def __init__(self, stack: int):
        super().__init__()
        self.stack = stack
        self.unused = nn.Parameter(torch.zeros(()))  # SpeechModel finds the device from a parameter

    def forward(self, feats: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, _ = feats.shape  # (B, T, n_mels) unnormalised log-mel
        k = self.stack
        power = nn.functional.pad(feats.exp().sum(-1), (0, -T % k))  # (B, T'k)
        power = power.view(B, -1, k).mean(-1)  # (B, T')
        on = power >= 0.5 * power.max(1, keepdim=True).values
        logits = torch.full((B, power.shape[1], len(TOKENS) + 1), -10.0)
        logits[..., 0] = torch.where(on, -10.0, 0.0)  # blank
        logits[..., to_output_ids(TOKENS.encode("a"))[0]] = torch.where(on, 0.0, -10.0)
        return logits.log_softmax(-1), (lens + k - 1) // k


@pytest.mark.parametrize("stack", [3, 4])
def test_word_times_match_tone_bursts(stack):
    """1 kHz bursts at known times, transcribed by the whole pipeline (segmenter, features, the energy model, forced
    alignment, file times): the word's start and end fall within half a model step of the burst's, and over onsets
    spread across a step the mean error is within 2 ms (the window-centre offset left out makes it 11 ms early)."""
    sr = 16_000
    fc = FeatureConfig(cmvn="none")
    speech = SpeechModel(EnergyModel(stack), FeatureExtractor(fc), TOKENS, fc, AcousticModelConfig(stack=stack),
                         {}, None)
    shift = fc.hop_ms / 1000 * stack
    starts, ends = [], []
    rng = np.random.default_rng(0)
    for m in range(stack):  # margins 10 ms apart move the chunk's (and so the step grid's) start over a whole step
        tr = Transcriber(speech, segment=SegmentConfig(margin=0.2 + 0.01 * m))
        for onset in 1.0 + np.arange(0.0, 0.010, 0.002):
            x = (rng.standard_normal(3 * sr) * 1e-3).astype(np.float32)
            a, b = int(onset * sr), int((onset + 0.6) * sr)
            x[a:b] += 0.3 * np.sin(2 * np.pi * 1000 * np.arange(b - a) / sr).astype(np.float32)
            t = tr.transcribe_array(x, sr)
            assert t.text == "a", t.text
            starts.append(t.words[0].start - a / sr)
            ends.append(t.words[0].end - b / sr)
    for err in (np.array(starts), np.array(ends)):
        assert np.abs(err).max() <= shift / 2 + 0.003, err
        assert abs(err.mean()) <= 0.002, err.mean()
