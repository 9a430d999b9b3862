"""Word and character error rates from Levenshtein alignments, and the aligned error report.

    WER = (substitutions + deletions + insertions) / reference words
    CER = the same over characters; spaces count as characters (the model emits them, and a missed word boundary is
          an error a reader sees), and both strings are compared after `normalize`-style whitespace collapsing.
Rates are totals over a corpus (sum of errors / sum of reference lengths), never an average of per-utterance rates.

The alignment is the minimum-cost one with unit costs; among equally cheap alignments, the one found by walking back
from the end preferring a match or substitution, then a deletion, then an insertion (so sub/del/ins counts are
deterministic). It is computed one reference token at a time with the hypothesis axis vectorised in numpy (memory
O(len(hyp)) for counts, one byte per cell when the path is asked for): bench/wer_alignment.py measures it against the
pure-Python loop it replaced and against rapidfuzz / jiwer, whose paths break ties differently (same totals, other
sub/del/ins splits), which is why the counts are not taken from them.

    ops = word_ops("the cat sat", "the bat sat down")       # EditOps(substitutions=1, deletions=0, insertions=1, 3)
    align("the cat sat".split(), "the bat sat down".split())
    # [('the', 'the'), ('cat', 'bat'), ('sat', 'sat'), (None, 'down')]
    aligned_text(...)                                     # "the (cat->bat) sat (*->down)"  (icefall's errs-* style)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

MATCH, DEL, INS = 0, 1, 2  # moves into a cell of the alignment table (a substitution is a MATCH of unequal tokens)


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


def _ids(ref: Sequence[Hashable], hyp: Sequence[Hashable]) -> tuple[np.ndarray, np.ndarray]:
    vocab: dict = {}
    r = np.fromiter((vocab.setdefault(x, len(vocab)) for x in ref), np.int64, len(ref))
    h = np.fromiter((vocab.setdefault(x, len(vocab)) for x in hyp), np.int64, len(hyp))
    return r, h


def _table(ref: Sequence[Hashable], hyp: Sequence[Hashable], keep_moves: bool):
    """The alignment DP row by row. Returns (subs, dels, ins) of the preferred path to (n, m), and the (n+1, m+1)
    uint8 moves table (None unless keep_moves).

    Row i holds, for each j, the cost and sub/del/ins counts of the preferred path aligning ref[:i] with hyp[:j].
    A cell comes from its diagonal (match/substitution) unless the cell above (deletion) is strictly cheaper; then a
    run of insertions from the left replaces it only when strictly cheaper. The insertion runs are a prefix minimum:
    cell j takes the base of the last k <= j where base_cost[k] - k reaches the running minimum, plus j - k
    insertions."""
    r, h = _ids(ref, hyp)
    n, m = len(r), len(h)
    j = np.arange(m + 1)  # (m+1,)
    cost, subs, dels, ins = j.copy(), np.zeros(m + 1, np.int64), np.zeros(m + 1, np.int64), j.copy()
    moves = np.empty((n + 1, m + 1), np.uint8) if keep_moves else None
    if keep_moves:
        moves[0] = INS
    for i in range(1, n + 1):
        neq = (h != r[i - 1]).astype(np.int64)  # (m,)
        diag, up = cost[:-1] + neq, cost[1:] + 1  # (m,) candidates for cells 1..m
        use_up = np.concatenate(([True], up < diag))  # (m+1,): cell 0 can only come from above
        base = np.concatenate(([cost[0] + 1], np.where(use_up[1:], up, diag)))
        b_subs = np.concatenate(([subs[0]], np.where(use_up[1:], subs[1:], subs[:-1] + neq)))
        b_dels = np.concatenate(([dels[0] + 1], np.where(use_up[1:], dels[1:] + 1, dels[:-1])))
        b_ins = np.concatenate(([ins[0]], np.where(use_up[1:], ins[1:], ins[:-1])))
        key = base - j
        src = np.maximum.accumulate(np.where(key == np.minimum.accumulate(key), j, 0))  # (m+1,) k of each cell
        run = j - src  # insertions after the base cell
        cost, subs, dels, ins = base[src] + run, b_subs[src], b_dels[src], b_ins[src] + run
        if keep_moves:
            moves[i] = np.where(run > 0, INS, np.where(use_up, DEL, MATCH))
    return (int(subs[m]), int(dels[m]), int(ins[m])), moves


def edit_ops(ref: Sequence, hyp: Sequence) -> EditOps:
    """Minimum-cost alignment of hyp to ref (unit costs); ties prefer substitutions, then deletions."""
    (s, d, k), _ = _table(ref, hyp, keep_moves=False)
    return EditOps(s, d, k, len(ref))


def edit_ops_reference(ref: Sequence, hyp: Sequence) -> tuple[int, int, int]:
    """(substitutions, deletions, insertions) by the plain pure-Python DP this module used before the numpy version
    (one row at a time, counts carried along; ties keep the diagonal, then the deletion): the definition edit_ops must
    reproduce (tests/test_asr_metrics.py) and the baseline of bench/wer_alignment.py."""
    m = len(hyp)
    prev = [(j, 0, 0, j) for j in range(m + 1)]  # (cost, sub, del, ins) per hypothesis prefix
    for i in range(1, len(ref) + 1):
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
    return prev[m][1:]


def align(ref: Sequence, hyp: Sequence) -> list[tuple]:
    """The alignment behind `edit_ops` as (ref token | None, hyp token | None) pairs, in order: equal tokens are a
    match, unequal a substitution, (x, None) a deletion, (None, y) an insertion."""
    _, moves = _table(ref, hyp, keep_moves=True)
    i, j, out = len(ref), len(hyp), []
    while i or j:
        mv = moves[i, j]
        if mv == MATCH:
            i, j = i - 1, j - 1
            out.append((ref[i], hyp[j]))
        elif mv == DEL:
            i -= 1
            out.append((ref[i], None))
        else:
            j -= 1
            out.append((None, hyp[j]))
    return out[::-1]


def aligned_text(pairs: list[tuple]) -> str:
    """icefall's errs-* line: matches as the word, (ref->hyp) substitutions, (ref->*) deletions, (*->hyp) insertions."""
    return " ".join(a if a == b else f"({'*' if a is None else a}->{'*' if b is None else b})" for a, b in pairs)


def confusions(pairs: list[tuple]) -> Counter:
    """(ref, hyp) -> count over the errors of an alignment; None stands for the missing side."""
    return Counter((a, b) for a, b in pairs if a != b)


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
        self.add_ops(w, c)
        return w, c

    def add_ops(self, w: EditOps, c: EditOps) -> None:
        self.words, self.chars, self.utterances = self.words + w, self.chars + c, self.utterances + 1

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
