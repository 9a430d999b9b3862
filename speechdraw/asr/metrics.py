"""Word and character error rates from Levenshtein alignments.

    WER = (substitutions + deletions + insertions) / reference words
    CER = the same over characters; spaces count as characters (the model emits them, and a missed word boundary is
          an error a reader sees), and both strings are compared after `normalize`-style whitespace collapsing.
Rates are totals over a corpus (sum of errors / sum of reference lengths), never an average of per-utterance rates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class EditOps:
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    ref_len: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        return self.errors / self.ref_len if self.ref_len else float(self.errors > 0)

    def __add__(self, other: EditOps) -> EditOps:
        return EditOps(self.substitutions + other.substitutions, self.deletions + other.deletions,
                       self.insertions + other.insertions, self.ref_len + other.ref_len)


def edit_ops(ref: Sequence, hyp: Sequence) -> EditOps:
    """Minimum-cost alignment of hyp to ref (unit costs); ties prefer substitutions, then deletions."""
    n, m = len(ref), len(hyp)
    # prev[j] = (cost, subs, dels, ins) of aligning ref[:i-1] with hyp[:j]; one row at a time keeps memory O(m).
    prev = [(j, 0, 0, j) for j in range(m + 1)]
    for i in range(1, n + 1):
        cur = [(i, 0, i, 0)]
        for j in range(1, m + 1):
            c, s, d, k = prev[j - 1]
            best = (c, s, d, k) if ref[i - 1] == hyp[j - 1] else (c + 1, s + 1, d, k)
            c, s, d, k = prev[j]
            if c + 1 < best[0]:
                best = (c + 1, s, d + 1, k)
            c, s, d, k = cur[j - 1]
            if c + 1 < best[0]:
                best = (c + 1, s, d, k + 1)
            cur.append(best)
        prev = cur
    _, s, d, k = prev[m]
    return EditOps(s, d, k, n)


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    return edit_ops(ref, hyp).errors


def word_ops(ref: str, hyp: str) -> EditOps:
    return edit_ops(ref.split(), hyp.split())


def char_ops(ref: str, hyp: str) -> EditOps:
    return edit_ops(" ".join(ref.split()), " ".join(hyp.split()))


@dataclass
class ErrorRates:
    """Corpus totals; add utterances one at a time."""

    words: EditOps
    chars: EditOps
    utterances: int = 0

    @classmethod
    def empty(cls) -> ErrorRates:
        return cls(EditOps(), EditOps(), 0)

    def add(self, ref: str, hyp: str) -> tuple[EditOps, EditOps]:
        w, c = word_ops(ref, hyp), char_ops(ref, hyp)
        self.words, self.chars, self.utterances = self.words + w, self.chars + c, self.utterances + 1
        return w, c

    @property
    def wer(self) -> float:
        return self.words.rate

    @property
    def cer(self) -> float:
        return self.chars.rate

    def counts(self) -> list[int]:
        """Flat integer counts (for all-reducing across ranks)."""
        w, c = self.words, self.chars
        return [w.substitutions, w.deletions, w.insertions, w.ref_len,
                c.substitutions, c.deletions, c.insertions, c.ref_len, self.utterances]

    @classmethod
    def from_counts(cls, v: Sequence[float]) -> ErrorRates:
        v = [int(round(x)) for x in v]
        return cls(EditOps(*v[0:4]), EditOps(*v[4:8]), v[8])


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    r = ErrorRates.empty()
    for a, b in zip(refs, hyps, strict=True):
        r.add(a, b)
    return r.wer


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    r = ErrorRates.empty()
    for a, b in zip(refs, hyps, strict=True):
        r.add(a, b)
    return r.cer
