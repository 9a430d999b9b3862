"""Interpolated modified Kneser-Ney n-gram language models, estimated here and written as ARPA.

KenLM's estimator (`lmplz`) cannot be installed in this project's environments, so this module does its job: read
normalised sentences, count, discount, interpolate, prune, and write an ARPA file that flashlight's KenLM reader (the
one inside torchaudio's `ctc_decoder`) loads for beam search. The estimator is numpy throughout: an n-gram is an int64
key `context_row * V + unit`, where `context_row` is the row of its first n-1 units in the table one order down, so
every order is one `np.unique` over the corpus positions and every lookup a `searchsorted`.

The model (Chen & Goodman 1998, as lmplz builds it; Heafield et al. 2013):
  * Sentences are padded with one <s> and one </s>. Units are words (`units="word"`) or characters (`units="char"`,
    the word boundary written "|" as in tokens.txt, so a character ARPA scores exactly the symbols the lexicon-free
    decoder emits).
  * Adjusted counts a(.): raw counts at the highest order and for n-grams that begin with <s> (they cannot be extended
    to the left); otherwise the continuation count N1+(. w_1..w_n), the number of distinct units seen before it.
  * Three discounts per order from the count-of-counts t_k of the adjusted counts:
        Y = t1 / (t1 + 2 t2),   D_k = k - (k + 1) Y t_{k+1} / t_k   (k = 1, 2, 3; D_3 serves every count >= 3).
    If they cannot be computed (a t_k is 0 or a D_k falls outside [0, k], which only happens on toy corpora) the
    configured fallback (0.5, 1, 1.5) is used, as `lmplz --discount_fallback` does; `stats` records it.
  * Interpolation, with c a context, w a unit and c' the context without its first unit:
        p(w | c) = (a(c w) - D(a(c w))) / sum_x a(c x)  +  gamma(c) p(w | c'),
        gamma(c) = (D1 N1(c .) + D2 N2(c .) + D3 N3+(c .)) / sum_x a(c x),
    and at the bottom p(w) = (a(w) - D(a(w))) / sum_x a(x) + gamma() / |V|, uniform over the predictable vocabulary
    (every unit, </s> and <unk>; <s> is never predicted and gets log10 p = -99 as placeholder).
  * <unk> is in the vocabulary with count 0, so it gets gamma() / |V| plus nothing: the probability an unseen unit has.

ARPA represents a back-off model: p(w | c) is stored for the n-grams kept, and p(w | c) = bo(c) p(w | c') otherwise
(bo(c) = 1 when c itself is not stored). Storing the interpolated p(c w) for every seen n-gram and bo(c) = gamma(c)
makes the ARPA model exactly the interpolated one. Pruning (`prune`, lmplz's per-order thresholds on raw counts)
drops n-grams, keeps the prefixes and suffixes of every n-gram kept (a stored n-gram's context and its back-off n-gram
must exist), and then re-derives every back-off weight so that each context's distribution still sums to one:
        bo(c) = (1 - sum_{w kept after c} p(w | c)) / (1 - sum_{w kept after c} p(w | c')).
Without pruning this formula gives gamma(c) back, so one code path serves both.

Logarithms: ARPA files, KenLM and flashlight's decoder speak log10 (flashlight's KenLM.score returns log10 p, checked
by experiment in tests/test_asr_ngram.py). Methods named *10 return log10; the others natural log.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

UNK, BOS, EOS = "<unk>", "<s>", "</s>"
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2  # fixed ids: every vocabulary starts <unk>, <s>, </s>
WORD_BOUNDARY = "|"  # a space between words, as a character unit (tokens.txt writes it the same way)
LN10 = math.log(10.0)
BOS_LOG10 = -99.0  # <s> is never predicted; ARPA convention for its unigram probability

# ----------------------------------------------------------------------------------------------------------- config


@dataclass
class NGramConfig:
    order: int = field(default=4, metadata={"help": "n-gram order, 1-10"})
    units: str = field(default="word", metadata={"help": "word, or char (each character a unit, space as '|')"})
    prune: tuple[int, ...] = field(default=(0,), metadata={
        "help": "lmplz-style thresholds per order from unigrams: n-grams seen <= t times are dropped; the last value "
                "repeats; unigrams are never pruned (first value must be 0); e.g. 0,0,1 drops singleton 3+-grams"})
    discount_fallback: tuple[float, float, float] = field(default=(0.5, 1.0, 1.5), metadata={
        "help": "D1, D2, D3+ used for an order whose count-of-counts give no valid discounts"})

    def __post_init__(self):
        if not 1 <= self.order <= 10:
            raise ValueError(f"order must be 1-10, got {self.order}")
        if self.units not in ("word", "char"):
            raise ValueError(f"units must be word or char, got {self.units!r}")
        self.prune = tuple(int(t) for t in self.prune) or (0,)
        if self.prune[0] != 0:
            raise ValueError("unigrams are never pruned: the first prune threshold must be 0")
        if any(t < 0 for t in self.prune):
            raise ValueError("prune thresholds must be >= 0")
        self.discount_fallback = tuple(float(d) for d in self.discount_fallback)
        if len(self.discount_fallback) != 3:
            raise ValueError("discount_fallback holds D1, D2, D3+")

    def threshold(self, n: int) -> int:
        """Raw-count threshold for order n (n-grams seen <= it are pruned)."""
        return self.prune[min(n, len(self.prune)) - 1]


def sentence_units(sentence: str, units: str) -> list[str]:
    """'the cat' -> ['the', 'cat'] (word) or ['t', 'h', 'e', '|', 'c', 'a', 't'] (char)."""
    if units == "word":
        return sentence.split()
    return list(" ".join(sentence.split()).replace(" ", WORD_BOUNDARY))


def kn_discounts(count_of_counts: Sequence[int]) -> tuple[float, float, float] | None:
    """Chen & Goodman's D1, D2, D3+ from t1..t4 (the numbers of n-grams with adjusted count 1, 2, 3, 4), or None
    when they are undefined or out of range (then the caller falls back)."""
    t1, t2, t3, t4 = (float(t) for t in count_of_counts[:4])
    if min(t1, t2, t3) <= 0:
        return None
    y = t1 / (t1 + 2 * t2)
    d = (1 - 2 * y * t2 / t1, 2 - 3 * y * t3 / t2, 3 - 4 * y * t4 / t3)
    if not all(0 < dk <= k for k, dk in enumerate(d, start=1)):
        return None
    return d


# ----------------------------------------------------------------------------------------------------------- model


@dataclass
class OrderTable:
    """The stored n-grams of one order n, sorted by key.

    keys:    (M,) int64, context_row * V + unit, context_row indexing the table of order n-1 (for n = 1: the unit id,
             so the unigram table's row of a unit is its vocabulary id)
    log10p:  (M,) float64, log10 p(unit | context)
    log10bo: (M,) float64, log10 back-off weight of this n-gram used as a context (0 at the highest order)
    """

    keys: np.ndarray
    log10p: np.ndarray
    log10bo: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class LMEval:
    """Totals of scoring sentences (as SRILM and KenLM's `query` report them)."""

    sentences: int
    units: int  # units scored, excluding </s> (words for a word LM)
    oov: int  # of those, units outside the vocabulary (scored as <unk>)
    log10prob: float  # sum over in-vocabulary units and every </s>
    log10prob_oov: float  # sum of the <unk> probabilities given to the OOV units

    @property
    def oov_rate(self) -> float:
        return self.oov / max(self.units, 1)

    @property
    def perplexity(self) -> float:
        """Over in-vocabulary units and </s>, OOV units skipped (SRILM's `ppl`)."""
        return 10 ** (-self.log10prob / max(self.units - self.oov + self.sentences, 1))

    @property
    def perplexity_with_oov(self) -> float:
        """Over every unit and </s>, OOVs at their <unk> probability (KenLM's "including OOVs")."""
        return 10 ** (-(self.log10prob + self.log10prob_oov) / max(self.units + self.sentences, 1))


class NGramLM:
    """A back-off n-gram model (what an ARPA file holds), queried the way KenLM queries it.

    vocab[0:3] are <unk>, <s>, </s>; tables[n - 1] is the order-n table.
    """

    def __init__(self, vocab: Sequence[str], tables: Sequence[OrderTable], units: str, stats: dict | None = None):
        self.vocab = list(vocab)
        if self.vocab[:3] != [UNK, BOS, EOS]:
            raise ValueError("an NGramLM vocabulary starts with <unk>, <s>, </s>")
        self.index = {u: i for i, u in enumerate(self.vocab)}
        self.tables = list(tables)
        self.units = units
        self.stats = stats or {}
        if not np.array_equal(self.tables[0].keys, np.arange(len(self.vocab))):
            raise ValueError("the unigram table must hold every vocabulary entry, in vocabulary order")

    @property
    def order(self) -> int:
        return len(self.tables)

    @property
    def counts(self) -> list[int]:
        """Number of stored n-grams per order, unigrams first."""
        return [len(t) for t in self.tables]

    def words(self) -> list[str]:
        """The vocabulary without <unk>, <s>, </s> (for a word model: the lexicon's words)."""
        return self.vocab[3:]

    def units_of(self, sentence: str) -> list[str]:
        return sentence_units(sentence, self.units)

    # ---- scoring

    def _log10_stream(self, ids: np.ndarray, seg_pos: np.ndarray) -> np.ndarray:
        """log10 p(ids[i] | the units before it in its segment), for every position i.

        ids:     (L,) int64 unit ids, segments concatenated
        seg_pos: (L,) int64 position of each unit within its segment (history never crosses a segment start)
        """
        v, n_max = len(self.vocab), self.order
        rows = [ids]  # rows[n - 1][i]: row of the n-gram ending at i in table n, -1 if not stored
        for n in range(2, n_max + 1):
            table, prev = self.tables[n - 1], rows[-1]
            row = np.full(len(ids), -1, dtype=np.int64)
            cand = np.flatnonzero(seg_pos >= n - 1)
            cand = cand[prev[cand - 1] >= 0]
            key = prev[cand - 1] * v + ids[cand]
            pos = np.minimum(np.searchsorted(table.keys, key), max(len(table) - 1, 0))
            hit = table.keys[pos] == key if len(table) else np.zeros(len(cand), dtype=bool)
            row[cand[hit]] = pos[hit]
            rows.append(row)
        # The longest stored n-gram ending at i gives the probability ...
        log10p = self.tables[0].log10p[ids].copy()
        longest = np.ones(len(ids), dtype=np.int64)
        for n in range(2, n_max + 1):
            hit = rows[n - 1] >= 0
            log10p[hit] = self.tables[n - 1].log10p[rows[n - 1][hit]]
            longest[hit] = n
        # ... times the back-off weights of every longer context that was stored (length k >= longest order).
        for k in range(1, n_max):
            pos = np.flatnonzero(seg_pos >= k)
            ctx = rows[k - 1][pos - 1]
            use = (ctx >= 0) & (longest[pos] <= k)
            log10p[pos[use]] += self.tables[k - 1].log10bo[ctx[use]]
        return log10p

    def _encode(self, sentences: Sequence[Sequence[str]], bos: bool = True,
                eos: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit sequences -> (ids, seg_pos, predicted mask) of the padded, concatenated segments."""
        head, tail = [BOS_ID] * bos, [EOS_ID] * eos
        flat: list[int] = []
        for units in sentences:
            flat.extend(head + [self.index.get(u, UNK_ID) for u in units] + tail)
        lengths = np.array([len(u) + bos + eos for u in sentences], dtype=np.int64)
        ids = np.array(flat, dtype=np.int64)
        starts = np.cumsum(lengths) - lengths
        seg_pos = np.arange(len(ids), dtype=np.int64) - np.repeat(starts, lengths)
        predicted = np.ones(len(ids), dtype=bool)
        if bos:
            predicted[starts[lengths > 0]] = False
        return ids, seg_pos, predicted

    def unit_log10probs(self, sentences: Iterable[str]) -> list[np.ndarray]:
        """Per sentence: log10 p of each unit and of the final </s> (len(units) + 1 values), from <s>."""
        seqs = [self.units_of(s) for s in sentences]
        if not seqs:
            return []
        ids, seg_pos, predicted = self._encode(seqs)
        scores = self._log10_stream(ids, seg_pos)[predicted]
        return np.split(scores, np.cumsum([len(u) + 1 for u in seqs])[:-1])

    def score10(self, sentence: str) -> float:
        """log10 p(<s> sentence </s>)."""
        return float(self.unit_log10probs([sentence])[0].sum())

    def score(self, sentence: str) -> float:
        """Natural log p(<s> sentence </s>)."""
        return self.score10(sentence) * LN10

    def logprob10(self, unit: str, context: Sequence[str] = ()) -> float:
        """log10 p(unit | context); the context may start with <s>. An out-of-vocabulary unit is <unk>."""
        ids, seg_pos, _ = self._encode([[*context, unit]], bos=False, eos=False)
        return float(self._log10_stream(ids, seg_pos)[-1])

    def logprob(self, unit: str, context: Sequence[str] = ()) -> float:
        """Natural log p(unit | context)."""
        return self.logprob10(unit, context) * LN10

    def distribution10(self, context: Sequence[str] = ()) -> np.ndarray:
        """(V,) log10 p(u | context) for every vocabulary entry u (<s>'s entry is meaningless); the rest sums to 1."""
        ctx = [self.index.get(u, UNK_ID) for u in context]
        k, v = len(ctx), len(self.vocab)
        ids = np.concatenate([np.tile(np.array(ctx, dtype=np.int64), (v, 1)),
                              np.arange(v, dtype=np.int64)[:, None]], axis=1)  # (V, k + 1): context + each unit
        seg_pos = np.tile(np.arange(k + 1, dtype=np.int64), v)
        return self._log10_stream(ids.reshape(-1), seg_pos).reshape(v, k + 1)[:, -1]

    def evaluate(self, sentences: Iterable[str]) -> LMEval:
        """Perplexity and OOV rate over sentences (each scored from <s> to </s>)."""
        seqs = [self.units_of(s) for s in sentences]
        seqs = [s for s in seqs if s]
        if not seqs:
            return LMEval(0, 0, 0, 0.0, 0.0)
        ids, seg_pos, predicted = self._encode(seqs)
        scores = self._log10_stream(ids, seg_pos)[predicted]
        oov_mask = np.array([u not in self.index for s in seqs for u in [*s, EOS]], dtype=bool)
        return LMEval(sentences=len(seqs), units=sum(len(s) for s in seqs), oov=int(oov_mask.sum()),
                      log10prob=float(scores[~oov_mask].sum()), log10prob_oov=float(scores[oov_mask].sum()))

    def oov_rate(self, sentences: Iterable[str]) -> float:
        return self.evaluate(sentences).oov_rate

    def perplexity(self, sentences: Iterable[str]) -> float:
        return self.evaluate(sentences).perplexity

    # ---- ARPA

    def ngram_texts(self, n: int) -> list[str]:
        """The stored n-grams of order n as space-separated units, in table order."""
        texts = list(self.vocab)
        for k in range(2, n + 1):
            keys = self.tables[k - 1].keys
            v = len(self.vocab)
            ctx, unit = (keys // v).tolist(), (keys % v).tolist()
            texts = [f"{texts[c]} {self.vocab[u]}" for c, u in zip(ctx, unit)]
        return texts

    def write_arpa(self, path: str | Path) -> Path:
        """Write the model as an ARPA file (log10 values, 7 significant digits: KenLM stores float32 anyway)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\\data\\\n")
            for n, t in enumerate(self.tables, start=1):
                f.write(f"ngram {n}={len(t)}\n")
            for n, t in enumerate(self.tables, start=1):
                f.write(f"\n\\{n}-grams:\n")
                texts = self.ngram_texts(n)
                p = [_fmt(x) for x in t.log10p.tolist()]
                if n < self.order:
                    bo = [_fmt(x) for x in t.log10bo.tolist()]
                    f.writelines(f"{a}\t{b}\t{c}\n" for a, b, c in zip(p, texts, bo))
                else:
                    f.writelines(f"{a}\t{b}\n" for a, b in zip(p, texts))
            f.write("\n\\end\\\n")
        tmp.replace(path)
        return path

    @classmethod
    def read_arpa(cls, path: str | Path, units: str | None = None) -> NGramLM:
        """Read an ARPA file (ours or any other). `units` None: char if '|' is a unigram and every unigram is one
        character, else word. A missing <unk> gets log10 p = -100, as KenLM gives it."""
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        sections: list[list[list[str]]] = []
        for line in lines:
            line = line.strip()
            if not line or line.startswith("ngram ") or line in ("\\data\\", "\\end\\"):
                continue
            if line.startswith("\\") and line.endswith("-grams:"):
                sections.append([])
                continue
            if sections:
                sections[-1].append(line.split())
        if not sections:
            raise ValueError(f"{path}: no n-gram sections; not an ARPA file")
        order = len(sections)
        uni = sections[0]
        vocab_in_file = [parts[1] for parts in uni]
        vocab = [UNK, BOS, EOS] + [u for u in vocab_in_file if u not in (UNK, BOS, EOS)]
        index = {u: i for i, u in enumerate(vocab)}
        v = len(vocab)
        p1 = np.full(v, -100.0)
        bo1 = np.zeros(v)
        for parts in uni:
            i = index[parts[1]]
            p1[i] = float(parts[0])
            bo1[i] = float(parts[2]) if len(parts) > 2 else 0.0
        tables = [OrderTable(np.arange(v, dtype=np.int64), p1, bo1)]
        for n in range(2, order + 1):
            rows = sections[n - 1]
            ids = np.array([[index[u] for u in parts[1:n + 1]] for parts in rows], dtype=np.int64).reshape(-1, n)
            p = np.array([float(parts[0]) for parts in rows])
            bo = np.array([float(parts[n + 1]) if len(parts) > n + 1 else 0.0 for parts in rows])
            ctx = ids[:, 0]
            for k in range(2, n):  # follow the context through the lower tables
                lower = tables[k - 1]
                key = ctx * v + ids[:, k - 1]
                pos = np.minimum(np.searchsorted(lower.keys, key), len(lower) - 1)
                if not np.all(lower.keys[pos] == key):
                    raise ValueError(f"{path}: a {n}-gram's context is not among the {k}-grams")
                ctx = pos
            keys = ctx * v + ids[:, n - 1]
            order_idx = np.argsort(keys, kind="stable")
            tables.append(OrderTable(keys[order_idx], p[order_idx], bo[order_idx]))
        if units is None:
            units = "char" if WORD_BOUNDARY in index and all(len(u) == 1 for u in vocab[3:]) else "word"
        return cls(vocab, tables, units)


def _fmt(x: float) -> str:
    return "0" if x == 0 else f"{x:.7g}"


# ------------------------------------------------------------------------------------------------------- estimator


def train_ngram(sentences: Iterable[str], cfg: NGramConfig) -> NGramLM:
    """Estimate an interpolated modified Kneser-Ney model from normalised sentences (see the module docstring).

    `stats` of the result: train_seconds, raw n-gram counts per order before pruning, count_of_counts and discounts
    per order, which orders used the fallback discounts.
    """
    t0 = time.perf_counter()
    seqs = [u for u in (sentence_units(s, cfg.units) for s in sentences) if u]
    if not seqs:
        raise ValueError("no training text")
    vocab = [UNK, BOS, EOS] + sorted({u for s in seqs for u in s} - {UNK, BOS, EOS})
    index = {u: i for i, u in enumerate(vocab)}
    v, n_max = len(vocab), cfg.order

    # The corpus as one stream: <s> u1 .. uk </s> per sentence; seg_pos = position inside the sentence.
    lengths = np.array([len(s) + 2 for s in seqs], dtype=np.int64)
    ids = np.fromiter((i for s in seqs for i in (BOS_ID, *(index[u] for u in s), EOS_ID)), dtype=np.int64,
                      count=int(lengths.sum()))
    seg_pos = np.arange(len(ids), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)

    # ---- count: for every order, the distinct n-grams, their raw counts, context row and suffix row.
    raw = [np.bincount(ids, minlength=v)]
    context = [np.zeros(v, dtype=np.int64)]  # unigrams have the empty context
    unit = [np.arange(v, dtype=np.int64)]
    suffix = [np.zeros(v, dtype=np.int64)]
    starts_bos = [np.arange(v) == BOS_ID]
    prev = ids  # prev[i]: row of the (n-1)-gram ending at i (-1 where it would cross the sentence start)
    for n in range(2, n_max + 1):
        pos = np.flatnonzero(seg_pos >= n - 1)  # positions where an n-gram ends
        key = prev[pos - 1] * v + ids[pos]
        keys, first, inverse, counts = np.unique(key, return_index=True, return_inverse=True, return_counts=True)
        cur = np.full(len(ids), -1, dtype=np.int64)
        cur[pos] = inverse
        rep = pos[first]  # one position where each distinct n-gram ends
        raw.append(counts)
        context.append(keys // v)
        unit.append(keys % v)
        suffix.append(prev[rep])  # the (n-1)-gram ending at the same place: the n-gram without its first unit
        starts_bos.append(ids[rep - (n - 1)] == BOS_ID)
        prev = cur

    # ---- adjusted counts: continuation counts below the top order, except n-grams starting with <s>.
    adjusted = []
    for n in range(1, n_max + 1):
        if n == n_max:
            a = raw[n - 1].astype(np.int64)
        else:
            a = np.bincount(suffix[n], minlength=len(raw[n - 1]))  # distinct left extensions
            a = np.where(starts_bos[n - 1], raw[n - 1], a)
        adjusted.append(a)
    adjusted[0][BOS_ID] = 0  # <s> is never predicted: no mass, no count-of-counts

    # ---- discounts and interpolated probabilities, bottom up.
    stats: dict = {"units": cfg.units, "order": n_max, "vocab_size": v, "sentences": len(seqs),
                   "tokens": int(len(ids) - 2 * len(seqs)), "raw_ngrams": [len(r) for r in raw],
                   "count_of_counts": [], "discounts": [], "fallback_orders": []}
    prob: list[np.ndarray] = []  # prob[n - 1][row]: interpolated p(unit | context) of each order-n n-gram
    for n in range(1, n_max + 1):
        a = adjusted[n - 1]
        coc = [int(np.sum(a == k)) for k in (1, 2, 3, 4)]
        d = kn_discounts(coc)
        if d is None:
            d = cfg.discount_fallback
            stats["fallback_orders"].append(n)
        stats["count_of_counts"].append(coc)
        stats["discounts"].append([float(x) for x in d])
        disc = np.select([a == 0, a == 1, a == 2], [0.0, d[0], d[1]], default=d[2])
        if n == 1:
            total = a.sum()
            g = disc.sum() / total
            p = (a - disc) / total + g / (v - 1)  # uniform over the v - 1 predictable units (all but <s>)
            p[BOS_ID] = 0.0
            stats["unigram_gamma"] = float(g)
        else:
            n_ctx = len(prob[n - 2])
            total = np.bincount(context[n - 1], weights=a, minlength=n_ctx)
            dsum = np.bincount(context[n - 1], weights=disc, minlength=n_ctx)
            with np.errstate(invalid="ignore", divide="ignore"):
                gamma_ctx = np.where(total > 0, dsum / total, 1.0)
            p = (a - disc) / total[context[n - 1]] + gamma_ctx[context[n - 1]] * prob[n - 2][suffix[n - 1]]
        prob.append(p)

    # ---- prune (raw counts <= threshold), closing over prefixes and suffixes of what is kept.
    keep = [np.ones(v, dtype=bool)] + [raw[n - 1] > cfg.threshold(n) for n in range(2, n_max + 1)]
    for n in range(n_max, 1, -1):
        keep[n - 2][context[n - 1][keep[n - 1]]] = True
        keep[n - 2][suffix[n - 1][keep[n - 1]]] = True
    keep[0][:] = True
    new_row = [np.cumsum(k) - 1 for k in keep]

    # ---- tables with back-off weights re-derived so every context's distribution sums to one.
    kept_p = [prob[n - 1][keep[n - 1]] for n in range(1, n_max + 1)]
    kept_ctx = [new_row[n - 2][context[n - 1][keep[n - 1]]] if n > 1 else None for n in range(1, n_max + 1)]
    kept_suf = [new_row[n - 2][suffix[n - 1][keep[n - 1]]] if n > 1 else None for n in range(1, n_max + 1)]
    log10bo = []
    for n in range(1, n_max + 1):
        if n == n_max:
            log10bo.append(np.zeros(len(kept_p[n - 1])))
            continue
        m = len(kept_p[n - 1])
        child_p = np.bincount(kept_ctx[n], weights=kept_p[n], minlength=m)
        child_lower = np.bincount(kept_ctx[n], weights=kept_p[n - 1][kept_suf[n]], minlength=m)
        num, den = 1.0 - child_p, 1.0 - child_lower
        if np.any(num <= 0) or np.any(den <= 0):
            raise FloatingPointError(f"order {n}: a context's kept continuations carry all of its probability")
        log10bo.append(np.log10(num / den))
    tables = []
    for n in range(1, n_max + 1):
        keys = unit[0] if n == 1 else kept_ctx[n - 1] * v + unit[n - 1][keep[n - 1]]
        with np.errstate(divide="ignore"):
            lp = np.log10(kept_p[n - 1])
        if n == 1:
            lp[BOS_ID] = BOS_LOG10
        tables.append(OrderTable(keys.astype(np.int64), lp, log10bo[n - 1]))
    stats["ngrams"] = [len(t) for t in tables]
    stats["train_seconds"] = time.perf_counter() - t0
    return NGramLM(vocab, tables, cfg.units, stats)


def read_sentences(paths: Iterable[str | Path]) -> list[str]:
    """Sentences from text files (one per line) or JSON-lines manifests (their "text" field), blank lines skipped.
    The text is expected to be normalised already (speechdraw.asr.text.normalize)."""
    out: list[str] = []
    for path in paths:
        path = Path(path)
        with open(path, encoding="utf-8") as f:
            if path.suffix == ".jsonl":
                out.extend(t for t in (json.loads(line)["text"].strip() for line in f if line.strip()) if t)
            else:
                out.extend(t for t in (line.strip() for line in f) if t)
    return out
