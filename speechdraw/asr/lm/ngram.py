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

import gzip
import json
import math
import re
import subprocess
import tempfile
import time
from collections import defaultdict
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
    vocab_size: int = field(default=0, metadata={
        "help": "keep only the most frequent units (ties by name), the others count as <unk>; 0 keeps every unit "
                "(the published LibriSpeech 4-gram uses the 200k most frequent words)"})
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
        if self.vocab_size < 0:
            raise ValueError("vocab_size must be >= 0 (0: no limit)")
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

    def ngram_units(self, n: int, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """(R, n) unit ids of the order-n n-grams at `rows` of its table, first unit first (context rows followed
        down the lower tables: no text of a lower order is built)."""
        v = len(self.vocab)
        keys = self.tables[n - 1].keys[rows]
        out = np.empty((len(keys), n), dtype=np.int64)
        for k in range(n, 1, -1):  # the last unit, then the context's last unit one order down ...
            out[:, k - 1] = keys % v
            keys = self.tables[k - 2].keys[keys // v]
        out[:, 0] = keys
        return out

    def ngram_texts(self, n: int, rows: np.ndarray | slice = slice(None)) -> list[str]:
        """The stored n-grams of order n (at `rows`; default all) as space-separated units, in table order."""
        vocab = self.vocab
        return [" ".join([vocab[u] for u in units]) for units in self.ngram_units(n, rows).tolist()]

    def write_arpa(self, path: str | Path, block: int = 1 << 18) -> Path:
        """Write the model as an ARPA file (log10 values, 7 significant digits: KenLM stores float32 anyway). Lines
        are formatted `block` n-grams at a time, so writing needs memory for one block, not for a whole order."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\\data\\\n")
            for n, t in enumerate(self.tables, start=1):
                f.write(f"ngram {n}={len(t)}\n")
            for n, t in enumerate(self.tables, start=1):
                f.write(f"\n\\{n}-grams:\n")
                for start in range(0, len(t), block):
                    rows = slice(start, start + block)
                    texts = self.ngram_texts(n, rows)
                    p = [_fmt(x) for x in t.log10p[rows].tolist()]
                    if n < self.order:
                        bo = [_fmt(x) for x in t.log10bo[rows].tolist()]
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


def parse_memory(text: str | int | None) -> int | None:
    """'2G', '512M', '64k', '100000' (bytes) -> bytes; '' / None / 0 -> None (no budget: everything in memory)."""
    if text in (None, "", 0, "0"):
        return None
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)[bB]?\s*", str(text))
    if not m:
        raise ValueError(f"memory budget {text!r}: expected a size such as 2G, 512M, 64k or a number of bytes")
    scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


class _UnitStream:
    """The training text as one stream of unit ids, <s> u1 .. uk </s> per sentence (empty sentences dropped).

    Ids are provisional (order of first appearance, <unk> <s> </s> first) until `remap` turns them into vocabulary
    ids. Held in memory, or appended to a file in `tmp_dir` once it outgrows `limit` bytes (then read back through a
    memory map), so the text is tokenised once whatever the number of passes over it.
    data: (L,) int32 provisional ids; lengths: (S,) int64 sentence lengths with <s> and </s>
    """

    def __init__(self, sentences: Iterable[str], units: str, limit: int | None, tmp_dir: Path):
        index: dict[str, int] = defaultdict()
        index.default_factory = index.__len__  # a new unit gets the next id
        for special in (UNK, BOS, EOS):
            index[special]
        lookup = index.__getitem__
        parts: list[np.ndarray] = []
        held, file, buf, lengths = 0, None, [], []
        counts = np.zeros(0, dtype=np.int64)

        def flush():
            nonlocal held, file, counts
            chunk = np.array(buf, dtype=np.int32)
            buf.clear()
            c = np.bincount(chunk, minlength=len(index))
            c[:len(counts)] += counts
            counts = c
            if file is None and limit is not None and held + chunk.nbytes > limit // 4:
                file = open(tmp_dir / "units.int32", "wb")
                for part in parts:
                    part.tofile(file)
                parts.clear()
            if file is None:
                parts.append(chunk)
                held += chunk.nbytes
            else:
                chunk.tofile(file)

        for sentence in sentences:
            u = sentence_units(sentence, units)
            if not u:
                continue
            buf.append(BOS_ID)
            buf.extend(map(lookup, u))
            buf.append(EOS_ID)
            lengths.append(len(u) + 2)
            if len(buf) >= 1 << 20:
                flush()
        flush()
        if file is None:
            self.data = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
        else:
            file.close()
            self.data = np.memmap(tmp_dir / "units.int32", dtype=np.int32, mode="r")
        self.units = list(index)  # provisional id -> unit
        self.counts = counts  # (U,) occurrences of each provisional id
        self.lengths = np.array(lengths, dtype=np.int64)
        self.ends = np.cumsum(self.lengths)

    def chunks(self, max_units: int, remap: np.ndarray):
        """(ids, seg_pos) of consecutive runs of whole sentences, about max_units units each (at least one sentence).

        ids: (L,) int64 vocabulary ids; seg_pos: (L,) int64 position of each unit within its sentence
        """
        first = 0
        while first < len(self.lengths):
            start = self.ends[first] - self.lengths[first]
            last = max(int(np.searchsorted(self.ends, start + max_units, side="right")), first + 1)
            ids = remap[self.data[start:self.ends[last - 1]]]
            lengths = self.lengths[first:last]
            seg_pos = np.arange(len(ids), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            yield ids, seg_pos
            first = last


def _sum_duplicates(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct keys and the summed counts of each (integer sums: exact)."""
    order = np.argsort(keys, kind="stable")
    keys, counts = keys[order], counts[order]
    first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, dtype=np.int64)
    return keys[first], np.add.reduceat(counts, first) if len(keys) else counts


class _RunMerger:
    """Counts of int64 keys gathered as sorted runs: runs held in memory up to `limit` bytes, then merged into one run
    written to disk; `result()` merges every run (from disk block by block) into the sorted distinct keys and their
    total counts, exactly what one np.unique over all the keys would give."""

    def __init__(self, limit: int | None, tmp_dir: Path, name: str):
        self.limit, self.tmp_dir, self.name = limit, tmp_dir, name
        self.held: list[tuple[np.ndarray, np.ndarray]] = []
        self.held_bytes = 0
        self.files: list[Path] = []

    def add(self, keys: np.ndarray, counts: np.ndarray):
        self.held.append((keys, counts))
        self.held_bytes += keys.nbytes + counts.nbytes
        if self.limit is not None and self.held_bytes > self.limit:
            self._spill()

    def _merged_held(self) -> tuple[np.ndarray, np.ndarray]:
        if len(self.held) == 1:
            return self.held[0]
        return _sum_duplicates(np.concatenate([k for k, _ in self.held] or [np.zeros(0, np.int64)]),
                               np.concatenate([c for _, c in self.held] or [np.zeros(0, np.int64)]))

    def _spill(self):
        keys, counts = self._merged_held()
        path = self.tmp_dir / f"{self.name}.run{len(self.files)}.npy"
        np.save(path, np.stack([keys, counts]))  # (2, M) int64
        self.files.append(path)
        self.held, self.held_bytes = [], 0

    def blocks(self):
        """The sorted distinct keys and their total counts, block by block in key order: (keys, counts) pairs. Runs
        on disk are merged block by block and removed afterwards, so the whole result need never be in memory."""
        if not self.files:
            yield self._merged_held()
            return
        if self.held:
            self._spill()
        runs = [np.load(path, mmap_mode="r") for path in self.files]
        pos = [0] * len(runs)
        block = max(1024, (self.limit or 0) // (32 * len(runs)))
        while True:
            live = [i for i, r in enumerate(runs) if pos[i] < r.shape[1]]
            if not live:
                break
            # Every key <= the smallest last key of the runs' next blocks is in those blocks: merge them, go on.
            bound = min(runs[i][0, min(pos[i] + block, runs[i].shape[1]) - 1] for i in live)
            keys, counts = [], []
            for i in live:
                r = runs[i]
                stop = pos[i] + int(np.searchsorted(r[0, pos[i]:pos[i] + block], bound, side="right"))
                keys.append(np.asarray(r[0, pos[i]:stop]))
                counts.append(np.asarray(r[1, pos[i]:stop]))
                pos[i] = stop
            yield _sum_duplicates(np.concatenate(keys), np.concatenate(counts))
        del runs
        for path in self.files:
            path.unlink()

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        out = list(self.blocks())
        return np.concatenate([k for k, _ in out]), np.concatenate([c for _, c in out])


@dataclass
class _TopOrder:
    """What the estimate needs from every n-gram of the highest order when that order is pruned: the n-grams that
    survive the pruning threshold, and sums over all of them (so the pruned ones never have to be held at once).

    keys, counts: (K,) the kept n-grams (raw count > threshold), sorted; total: (C,) raw counts summed per context
    row (order n - 1); by_count: (3, C) per context, how many n-grams were seen once, twice, three times or more;
    continuations: (C,) per order-(n - 1) row, how many n-grams have it as their suffix; count_of_counts: how many
    n-grams were seen 1, 2, 3, 4 times; distinct: how many n-grams there were before pruning.
    """

    keys: np.ndarray
    counts: np.ndarray
    total: np.ndarray
    by_count: np.ndarray
    continuations: np.ndarray
    count_of_counts: list[int]
    distinct: int


def _top_order(blocks, rows: int, suffix_of, threshold: int) -> _TopOrder:
    """Summarise the merged blocks of the highest order (see _TopOrder); `rows` is the size of the order below,
    `suffix_of(context, unit)` the order-below row of each n-gram's suffix."""
    total = np.zeros(rows, dtype=np.int64)
    by_count = np.zeros((3, rows), dtype=np.int64)
    continuations = np.zeros(rows, dtype=np.int64)
    coc, distinct, kept_keys, kept_counts = np.zeros(4, dtype=np.int64), 0, [], []
    for keys, counts, ctx, unit in blocks:
        distinct += len(keys)
        total += np.bincount(ctx, weights=counts, minlength=rows).astype(np.int64)
        for j, hit in enumerate((counts == 1, counts == 2, counts >= 3)):
            by_count[j] += np.bincount(ctx[hit], minlength=rows)
        continuations += np.bincount(suffix_of(ctx, unit), minlength=rows)
        coc += np.bincount(np.minimum(counts, 5), minlength=6)[1:5]
        keep = counts > threshold
        kept_keys.append(keys[keep])
        kept_counts.append(counts[keep])
    return _TopOrder(np.concatenate(kept_keys), np.concatenate(kept_counts), total, by_count, continuations,
                     [int(c) for c in coc], distinct)


def train_ngram(sentences: Iterable[str], cfg: NGramConfig, memory: int | None = None,
                tmp_dir: str | Path | None = None) -> NGramLM:
    """Estimate an interpolated modified Kneser-Ney model from normalised sentences (see the module docstring).

    Counting streams: the text is tokenised once into a unit stream, then each order is counted chunk by chunk into
    sorted runs that are merged (spilled to files in `tmp_dir` when they outgrow `memory` bytes). `memory` bounds
    what grows with the text (the unit stream, chunks and runs in memory); the distinct n-grams themselves, with
    their counts and probabilities, are held in memory (about 90 bytes each at 100 M words; prune to keep them
    small). When the highest order is pruned, only its surviving n-grams are held: the rest are summed block by
    block as the sorted runs merge (count-of-counts, per-context totals, continuation counts), giving exactly the
    model that estimating everything and then pruning gives. Whatever `memory`, the counts, and so the model, are
    exactly those of counting all at once.

    `stats` of the result: train_seconds, raw n-gram counts per order before pruning, count_of_counts and discounts
    per order, which orders used the fallback discounts, training units mapped to <unk> by the vocabulary limit,
    runs spilled to disk.
    """
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ngram-", dir=tmp_dir) as tmp:
        tmp = Path(tmp)
        stream = _UnitStream(sentences, cfg.units, memory, tmp)
        if not len(stream.lengths):
            raise ValueError("no training text")
        # ---- vocabulary: every unit seen, or the vocab_size most frequent ones (ties by name); the rest -> <unk>.
        seen = [(u, int(c)) for u, c in zip(stream.units[3:], stream.counts[3:].tolist())]
        if cfg.vocab_size and len(seen) > cfg.vocab_size:
            seen = sorted(seen, key=lambda uc: (-uc[1], uc[0]))[:cfg.vocab_size]
        vocab = [UNK, BOS, EOS] + sorted(u for u, _ in seen)
        index = {u: i for i, u in enumerate(vocab)}
        remap = np.array([index.get(u, UNK_ID) for u in stream.units], dtype=np.int64)  # provisional -> vocab id
        v, n_max = len(vocab), cfg.order
        chunk_units = (memory // 128) if memory is not None else len(stream.data)

        # ---- count: for every order, the distinct n-grams, their raw counts and suffix rows. What an n-gram holds
        # is what the estimate cannot recompute cheaply: its context row and unit are keys // v and keys % v, made
        # where needed (held for every n-gram they would cost 16 bytes each).
        raw = [np.bincount(remap, weights=stream.counts, minlength=v).astype(np.int64)]
        top: _TopOrder | None = None  # set when the highest order is pruned while it is counted
        suffix = [np.zeros(v, dtype=np.int64)]
        starts_bos = [np.arange(v) == BOS_ID]
        keys_of = [np.arange(v, dtype=np.int64)]  # keys_of[n - 1]: sorted keys of the order-n table
        spilled = 0
        for n in range(2, n_max + 1):
            runs = _RunMerger(None if memory is None else memory // 2, tmp, f"order{n}")
            for ids, seg_pos in stream.chunks(max(chunk_units, 1), remap):
                prev = ids  # prev[i]: row of the (k-1)-gram ending at i (garbage where it would cross a sentence start)
                for k in range(2, n + 1):
                    pos = np.flatnonzero(seg_pos >= k - 1)  # positions where a k-gram ends
                    key = prev[pos - 1] * v + ids[pos]
                    if k == n:
                        runs.add(*np.unique(key, return_counts=True))
                    else:  # every k-gram of the text is in the (complete) order-k table
                        cur = np.zeros(len(ids), dtype=np.int64)
                        cur[pos] = np.searchsorted(keys_of[k - 1], key)
                        prev = cur
            spilled += len(runs.files)

            def suffix_of(ctx: np.ndarray, u: np.ndarray, n: int = n) -> np.ndarray:
                if n == 2:
                    return u.copy()  # the unigram row of a unit is its id
                # w2..wn = (suffix row of the context w1..w(n-1)) * V + wn, looked up one order down
                return np.searchsorted(keys_of[n - 2], suffix[n - 2][ctx] * v + u)

            if n == n_max and cfg.threshold(n) > 0:
                # The highest order is pruned: keep only its surviving n-grams, and sums over all of them.
                top = _top_order(((k, c, k // v, k % v) for k, c in runs.blocks()), len(keys_of[n - 2]), suffix_of,
                                 cfg.threshold(n))
                keys, counts = top.keys, top.counts
            else:
                keys, counts = runs.result()
            keys_of.append(keys)
            raw.append(counts.astype(np.int64))
            ctx = keys // v
            suffix.append(suffix_of(ctx, keys - ctx * v))
            starts_bos.append(starts_bos[n - 2][ctx])
            del ctx
        n_sentences, n_units = len(stream.lengths), int(stream.lengths.sum())
        del stream

    # ---- adjusted counts: continuation counts below the top order, except n-grams starting with <s>.
    adjusted = []
    for n in range(1, n_max + 1):
        if n == n_max:
            a = raw[n - 1].astype(np.int64)
        else:
            a = np.bincount(suffix[n], minlength=len(raw[n - 1])) if top is None or n + 1 < n_max else \
                top.continuations  # distinct left extensions (of the pruned ones too)
            a = np.where(starts_bos[n - 1], raw[n - 1], a)
        adjusted.append(a)
    adjusted[0][BOS_ID] = 0  # <s> is never predicted: no mass, no count-of-counts
    # Raw counts are needed from here on only for pruning (raw count <= threshold) and the stats.
    keep = [np.ones(v, dtype=bool)] + [raw[n - 1] > cfg.threshold(n) for n in range(2, n_max + 1)]
    n_raw, oov_tokens = [len(r) for r in raw], int(raw[0][UNK_ID])
    del raw, starts_bos

    # ---- discounts and interpolated probabilities, bottom up.
    stats: dict = {"units": cfg.units, "order": n_max, "vocab_size": v, "sentences": n_sentences,
                   "tokens": n_units - 2 * n_sentences, "oov_tokens": oov_tokens,
                   "raw_ngrams": n_raw[:-1] + [top.distinct if top else n_raw[-1]],
                   "spilled_runs": spilled,
                   "count_of_counts": [], "discounts": [], "fallback_orders": []}
    prob: list[np.ndarray] = []  # prob[n - 1][row]: interpolated p(unit | context) of each order-n n-gram
    for n in range(1, n_max + 1):
        a = adjusted[n - 1]
        coc = top.count_of_counts if top and n == n_max else [int(np.sum(a == k)) for k in (1, 2, 3, 4)]
        d = kn_discounts(coc)
        if d is None:
            d = cfg.discount_fallback
            stats["fallback_orders"].append(n)
        stats["count_of_counts"].append(coc)
        stats["discounts"].append([float(x) for x in d])
        disc = np.array([0.0, *d])[np.minimum(a, 3)]  # by adjusted count: 0 -> 0, 1 -> D1, 2 -> D2, 3+ -> D3+
        if n == 1:
            total = a.sum()
            g = disc.sum() / total
            p = (a - disc) / total + g / (v - 1)  # uniform over the v - 1 predictable units (all but <s>)
            p[BOS_ID] = 0.0
            stats["unigram_gamma"] = float(g)
        else:
            n_ctx = len(prob[n - 2])
            ctx = keys_of[n - 1] // v
            if top and n == n_max:  # sums over every n-gram of the order, the pruned ones included
                total, dsum = top.total.astype(np.float64), np.asarray(d) @ top.by_count.astype(np.float64)
            else:
                total = np.bincount(ctx, weights=a, minlength=n_ctx)
                dsum = np.bincount(ctx, weights=disc, minlength=n_ctx)
            with np.errstate(invalid="ignore", divide="ignore"):
                gamma_ctx = np.where(total > 0, dsum / total, 1.0)
            # p = (a - disc) / total[ctx] + gamma_ctx[ctx] * prob[n - 2][suffix], in place (same values, less memory)
            p = a - disc
            del disc
            p /= total[ctx]
            lower = prob[n - 2][suffix[n - 1]]
            lower *= gamma_ctx[ctx]
            p += lower
            del lower, ctx
        adjusted[n - 1] = None  # done with: its order's probabilities are made
        prob.append(p)

    # ---- prune (raw counts <= threshold: `keep`), closing over prefixes and suffixes of what is kept. Top down, so
    # an order's mask is final when it is read; its kept keys and suffix rows are taken once, here.
    kept_keys: list[np.ndarray] = [keys_of[0]] * n_max
    kept_suffix: list[np.ndarray | None] = [None] * n_max
    for n in range(n_max, 1, -1):
        kept_keys[n - 1], kept_suffix[n - 1] = keys_of[n - 1][keep[n - 1]], suffix[n - 1][keep[n - 1]]
        keep[n - 2][kept_keys[n - 1] // v] = True
        keep[n - 2][kept_suffix[n - 1]] = True
    keep[0][:] = True
    new_row = [np.cumsum(k) - 1 for k in keep]

    # ---- tables with back-off weights re-derived so every context's distribution sums to one.
    kept_p = [prob[n - 1][keep[n - 1]] for n in range(1, n_max + 1)]
    del prob
    kept_ctx = [new_row[n - 2][kept_keys[n - 1] // v] if n > 1 else None for n in range(1, n_max + 1)]
    kept_suf = [new_row[n - 2][kept_suffix[n - 1]] if n > 1 else None for n in range(1, n_max + 1)]
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
        keys = kept_keys[0] if n == 1 else kept_ctx[n - 1] * v + kept_keys[n - 1] % v
        with np.errstate(divide="ignore"):
            lp = np.log10(kept_p[n - 1])
        if n == 1:
            lp[BOS_ID] = BOS_LOG10
        tables.append(OrderTable(keys.astype(np.int64), lp, log10bo[n - 1]))
    stats["ngrams"] = [len(t) for t in tables]
    stats["train_seconds"] = time.perf_counter() - t0
    return NGramLM(vocab, tables, cfg.units, stats)


def iter_sentences(paths: Iterable[str | Path]):
    """Sentences from text files (one per line) or JSON-lines manifests (their "text" field), .gz read as gzip, one
    at a time, blank lines skipped. The text is expected to be normalised already (speechdraw.asr.text.normalize)."""
    for path in paths:
        path = Path(path)
        gz = path.suffix == ".gz"
        with (gzip.open if gz else open)(path, "rt", encoding="utf-8") as f:
            if Path(path.stem if gz else path.name).suffix == ".jsonl":
                yield from (t for t in (json.loads(line)["text"].strip() for line in f if line.strip()) if t)
            else:
                yield from (t for t in (line.strip() for line in f) if t)


def read_sentences(paths: Iterable[str | Path]) -> list[str]:
    """Every sentence of iter_sentences(paths), as a list."""
    return list(iter_sentences(paths))


# --------------------------------------------------------------------------------------------------- KenLM's lmplz


def train_lmplz(sentences: Iterable[str], cfg: NGramConfig, out: str | Path, memory: int | None = None,
                tmp_dir: str | Path | None = None, lmplz: str = "lmplz") -> Path:
    """Estimate the same model with KenLM's `lmplz` (Heafield et al. 2013; disk-based, multi-threaded) and write the
    ARPA file to `out`. The units are piped to it one sentence a line; `memory` is its -S, `tmp_dir` its -T.

    What agrees with train_ngram (tests/test_asr_ngram.py, with lmplz built from KenLM's source): without pruning,
    the same n-grams, and on word text probabilities and back-offs within 2e-5 in log10 (lmplz computes in float32).
    What does not: lmplz's count-of-counts take one n-gram per order below the highest at its raw instead of its
    adjusted count (the final flush of lm/builder/adjust_counts.cc), which moves the discounts by ~1e-6 on word text
    but visibly where the t_k are small (a character 5-gram on 40k characters: D3+ 2.858 here, 2.841 there); lmplz's
    --prune gives a pruned context's dropped mass to its back-off instead of re-deriving back-offs (pruned models
    differ); lmplz refuses <unk> in its text, so a vocabulary limit (cfg.vocab_size) is not available here.
    """
    if cfg.vocab_size:
        raise ValueError("lmplz refuses <unk> in its text, so a vocabulary limit needs the numpy estimator")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(out.name + ".tmp")
    cmd = [lmplz, "-o", str(cfg.order), "--arpa", str(tmp_out),
           "--discount_fallback", *(f"{d:g}" for d in cfg.discount_fallback)]
    if any(cfg.prune):
        cmd += ["--prune", *(str(cfg.threshold(n)) for n in range(1, cfg.order + 1))]
    if memory is not None:
        cmd += ["-S", f"{max(memory // 2**20, 1)}M"]
    if tmp_dir:
        cmd += ["-T", str(tmp_dir)]
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, text=True,
                                encoding="utf-8")
        try:
            for sentence in sentences:
                units = sentence_units(sentence, cfg.units)
                if units:
                    proc.stdin.write(" ".join(units) + "\n")
        except BrokenPipeError:
            pass  # lmplz stopped early: its exit status and log say why
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
        rc = proc.wait()
        if rc != 0:
            log.seek(0)
            lines = [line.strip() for line in log.read().splitlines() if line.strip()]
            tmp_out.unlink(missing_ok=True)
            raise RuntimeError(f"lmplz failed (exit {rc}): {lines[-1] if lines else 'no output'}")
    tmp_out.replace(out)
    return out
