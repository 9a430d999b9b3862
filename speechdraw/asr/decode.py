"""CTC decoding: greedy (best path) hypotheses, and word timings with confidences from a forced alignment.

    hyps = greedy_decode(log_probs, out_lens, tokens)             # one Hypothesis per utterance
    times = StepTimes.of(feature_config, stack=4)                  # output step -> seconds
    words = word_alignments(log_probs[b, :out_lens[b]], hyps[b].tokens, tokens, times)

A Hypothesis carries token ids (token-set ids, no blank), the output frame at which each token was emitted, the text
and, once aligned, its words. Beam search (the language-model issue) returns the same type.

Word timings: the decoded token sequence is force-aligned to the posteriors (torchaudio.functional.forced_align, a
Viterbi pass over the CTC graph), which gives every token a span of frames; a word runs from its first token's first
frame to its last token's last frame. A word's confidence is the mean posterior of its tokens' aligned frames.

Output steps become seconds in one place, StepTimes: step t stands for the stretch of audio around the centre of the
analysis windows it was computed from, [offset + t * shift, offset + (t + 1) * shift), where shift = hop x stack and
offset = (n_fft - hop) / 2 (FeatureConfig.frame_offset: 11 ms for 25 ms windows in a 512-point FFT at a 10 ms hop).
Word timings, and the subtitle segments built from them, all go through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torchaudio.functional as AF

from speechdraw.asr.features import FeatureConfig
from speechdraw.asr.model import BLANK, from_output_ids, to_output_ids
from speechdraw.asr.text import TokenSet


@dataclass(frozen=True)
class StepTimes:
    """Model output step t stands for [offset + t * shift, offset + (t + 1) * shift) seconds of its input."""

    shift: float  # seconds per output step: hop x stacked frames
    offset: float  # seconds: FeatureConfig.frame_offset

    @classmethod
    def of(cls, features: FeatureConfig, stack: int) -> StepTimes:
        return cls(features.hop / features.sample_rate * stack, features.frame_offset)

    def __call__(self, step: int) -> float:
        """Where step `step` starts (seconds); step + 1 gives where it ends."""
        return self.offset + step * self.shift


@dataclass
class Word:
    word: str
    start: float  # seconds
    end: float  # seconds
    confidence: float  # mean posterior of the word's aligned frames, in [0, 1]


@dataclass
class Hypothesis:
    tokens: list[int]  # token-set ids (no blank)
    timesteps: list[int]  # output frame of each token's first emission
    text: str
    score: float = 0.0  # log-probability of the path (greedy: sum of the best frame log-probs)
    words: list[Word] = field(default_factory=list)


def greedy_decode(log_probs: torch.Tensor, out_lens: torch.Tensor, tokens: TokenSet) -> list[Hypothesis]:
    """(B, T, V) log-probabilities, (B,) lengths -> best-path hypotheses: argmax per frame, merge repeats, drop
    blanks."""
    best, ids = log_probs.float().max(-1)  # (B, T), (B, T)
    best, ids, out_lens = best.cpu(), ids.cpu(), out_lens.cpu()
    hyps = []
    for b in range(ids.shape[0]):
        n = int(out_lens[b])
        seq = ids[b, :n].tolist()
        out, steps, prev = [], [], BLANK
        for t, i in enumerate(seq):
            if i != BLANK and i != prev:
                out.append(i)
                steps.append(t)
            prev = i
        token_ids = from_output_ids(out)
        hyps.append(Hypothesis(token_ids, steps, " ".join(tokens.decode(token_ids).split()),
                               float(best[b, :n].sum())))
    return hyps


def word_alignments(log_probs: torch.Tensor, token_ids: list[int], tokens: TokenSet,
                    times: StepTimes) -> list[Word]:
    """Words of `token_ids` with start/end times and confidences, from (T, V) log-probabilities of one utterance.

    Word boundaries are the space token for character sets; for unit sets (phones) every token is a "word"."""
    if not token_ids:
        return []
    targets = torch.tensor([to_output_ids(token_ids)], dtype=torch.int32)
    emissions = log_probs.float().cpu()[None]  # (1, T, V)
    if emissions.shape[1] < len(token_ids) + sum(a == b for a, b in zip(token_ids, token_ids[1:])):
        return []  # cannot align (only happens for hypotheses not produced from these posteriors)
    labels, scores = AF.forced_align(emissions, targets, blank=BLANK)  # (1, T) each
    spans = AF.merge_tokens(labels[0], scores[0].exp(), blank=BLANK)  # one TokenSpan per target token, in order
    space = tokens.tokens.index(" ") if " " in tokens and not tokens.split_on_space else None
    words, cur = [], []
    for tok, span in zip(token_ids, spans):
        if tok == space:
            if cur:
                words.append(cur)
            cur = []
        else:
            cur.append((tok, span))
            if space is None:
                words.append(cur)
                cur = []
    if cur:
        words.append(cur)
    out = []
    for w in words:
        text = tokens.decode([t for t, _ in w])
        frames = sum(s.end - s.start for _, s in w)
        conf = sum(s.score * (s.end - s.start) for _, s in w) / max(frames, 1)
        out.append(Word(text, times(w[0][1].start), times(w[-1][1].end), float(conf)))  # span.end: exclusive
    return out


def align_words(hyps: list[Hypothesis], log_probs: torch.Tensor, out_lens: torch.Tensor, tokens: TokenSet,
                times: StepTimes) -> list[Hypothesis]:
    """Fill in `words` of each hypothesis (in place) and return the list."""
    for b, h in enumerate(hyps):
        h.words = word_alignments(log_probs[b, :int(out_lens[b])], h.tokens, tokens, times)
    return hyps
