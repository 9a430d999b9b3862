"""LSTM language model over words or characters, and N-best rescoring with it.

    vocab = Vocabulary.build(sentences, units="word", min_count=2)
    model = LSTMLM(RNNLMConfig(units="word", vocab_size=len(vocab)))      # trained by recipes/asr/train_lm.py
    scorer = load_rnnlm("runs/rnnlm/release")                              # LSTMScorer: texts -> natural-log probs
    best = rescore(nbest, scorer([h.text for h in nbest]), weight=0.5)[0].hypothesis

A sentence is scored as p(u_1 .. u_k </s> | <s>): the LSTM reads <s> u_1 .. u_k and predicts u_1 .. u_k </s>. Units
are those of the n-gram models (speechdraw.asr.lm.ngram.sentence_units): words, or characters with "|" for a space.
Word vocabularies keep words seen at least `min_count` times (and at most `max_size` of them); the rest map to <unk>,
which training therefore sees and learns a probability for (the class of all rare words).

Rescoring: new score = first-pass score + weight * log p_LSTM(text) + length_bonus * words. The first-pass score is
the beam's (acoustic log-probability + lm_weight * n-gram log10 probability + insertion terms); the weight and bonus
are tuned on dev.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from speechdraw.asr.lm.ngram import BOS, EOS, UNK, LMEval, sentence_units

UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
IGNORE = -100  # target padding


# ------------------------------------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class Vocabulary:
    """symbols[i] <-> id i; symbols[0:3] are <unk>, <s>, </s>."""

    symbols: tuple[str, ...]
    units: str  # word or char

    def __post_init__(self):
        if self.symbols[:3] != (UNK, BOS, EOS):
            raise ValueError("a vocabulary starts with <unk>, <s>, </s>")
        object.__setattr__(self, "_index", {s: i for i, s in enumerate(self.symbols)})

    @classmethod
    def build(cls, sentences: Iterable[str], units: str = "word", *, min_count: int = 1,
              max_size: int = 0) -> Vocabulary:
        """The units seen at least min_count times, most frequent first (ties alphabetically), at most max_size."""
        counts = Counter(u for s in sentences for u in sentence_units(s, units))
        for special in (UNK, BOS, EOS):
            counts.pop(special, None)
        kept = sorted((u for u, c in counts.items() if c >= min_count), key=lambda u: (-counts[u], u))
        if max_size:
            kept = kept[:max_size]
        return cls((UNK, BOS, EOS, *kept), units)

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, unit: str) -> bool:
        return unit in self._index

    def encode(self, sentence: str) -> list[int]:
        """Unit ids of a sentence (no <s>/</s>); unknown units are <unk>."""
        return [self._index.get(u, UNK_ID) for u in sentence_units(sentence, self.units)]

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text("\n".join(self.symbols) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, units: str) -> Vocabulary:
        return cls(tuple(Path(path).read_text(encoding="utf-8").splitlines()), units)


# ------------------------------------------------------------------------------------------------------------ model


@dataclass
class RNNLMConfig:
    units: str = field(default="word", metadata={"help": "word or char"})
    vocab_size: int = field(default=0, metadata={"help": "set from the vocabulary by the recipe"})
    embed: int = field(default=256, metadata={"help": "embedding size (= hidden when weights are tied)"})
    hidden: int = field(default=256, metadata={"help": "LSTM units per layer"})
    layers: int = field(default=2, metadata={"help": "LSTM layers"})
    dropout: float = field(default=0.2, metadata={"help": "dropout on embeddings, between layers and before output"})
    tie_weights: bool = field(default=True, metadata={"help": "share the embedding and output matrices"})
    adaptive_cutoffs: tuple[int, ...] = field(default=(), metadata={
        "help": "adaptive softmax cluster boundaries over ids (vocabularies are frequency-sorted); () = full softmax"})

    def __post_init__(self):
        if self.units not in ("word", "char"):
            raise ValueError(f"units must be word or char, got {self.units!r}")
        self.adaptive_cutoffs = tuple(int(c) for c in self.adaptive_cutoffs)
        if self.adaptive_cutoffs and self.tie_weights:
            raise ValueError("an adaptive softmax has no single output matrix to tie: set tie_weights false")
        if self.tie_weights and self.embed != self.hidden:
            raise ValueError("tie_weights needs embed == hidden")


class LSTMLM(nn.Module):
    """Embedding -> LSTM -> softmax over the vocabulary (full, or adaptive (Grave et al. 2017): frequent units in a
    head, rarer ones in smaller tail clusters; on a CPU the full softmax over ~10k words costs most of a step)."""

    def __init__(self, cfg: RNNLMConfig):
        super().__init__()
        if cfg.vocab_size < 4:
            raise ValueError("vocab_size must be set (at least <unk> <s> </s> and one unit)")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed)
        self.lstm = nn.LSTM(cfg.embed, cfg.hidden, num_layers=cfg.layers, batch_first=True,
                            dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.drop = nn.Dropout(cfg.dropout)
        if cfg.adaptive_cutoffs:
            cutoffs = [c for c in cfg.adaptive_cutoffs if c < cfg.vocab_size - 1]
            self.out = nn.AdaptiveLogSoftmaxWithLoss(cfg.hidden, cfg.vocab_size, cutoffs, div_value=4.0)
        else:
            self.out = nn.Linear(cfg.hidden, cfg.vocab_size)
            if cfg.tie_weights:
                self.out.weight = self.embed.weight  # fewer parameters, and better perplexity for small data

    def hidden_states(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs (B, T) unit ids starting with <s> -> (B, T, H). Right padding is harmless: the LSTM only looks
        back, so padded steps never affect real ones."""
        h, _ = self.lstm(self.drop(self.embed(inputs)))
        return self.drop(h)

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """inputs, targets (B, T) -> (B, T) natural-log p(target | inputs up to here); 0 where target is IGNORE.
        The same quantity in training (its negative sum is the loss) and in scoring."""
        h = self.hidden_states(inputs)  # (B, T, H)
        real = targets != IGNORE
        if isinstance(self.out, nn.AdaptiveLogSoftmaxWithLoss):
            picked = self.out(h[real], targets[real]).output  # (N,) only the real positions
        else:
            picked = self.out(h[real]).log_softmax(-1).gather(-1, targets[real][:, None])[:, 0]  # (N,)
        out = torch.zeros(targets.shape, dtype=picked.dtype, device=picked.device)
        out[real] = picked
        return out

    def log_probs(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs (B, T) -> (B, T, V) natural-log distributions of the next unit."""
        h = self.hidden_states(inputs)
        if isinstance(self.out, nn.AdaptiveLogSoftmaxWithLoss):
            return self.out.log_prob(h.reshape(-1, h.shape[-1])).reshape(*h.shape[:2], -1)
        return self.out(h).log_softmax(-1)


def make_batch(sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-id sequences -> inputs (B, T) = <s> u_1..u_k (padded with <unk>), targets (B, T) = u_1..u_k </s>
    (padded with IGNORE); T = longest k + 1."""
    t = max(len(s) for s in sequences) + 1
    inputs = torch.full((len(sequences), t), UNK_ID, dtype=torch.long)
    targets = torch.full((len(sequences), t), IGNORE, dtype=torch.long)
    for b, s in enumerate(sequences):
        inputs[b, : len(s) + 1] = torch.tensor([BOS_ID, *s])
        targets[b, : len(s) + 1] = torch.tensor([*s, EOS_ID])
    return inputs, targets


def loss_sum(target_logprobs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy (nats) over the real target positions (the output of LSTMLM.forward is already 0
    elsewhere); the engine divides by their count."""
    return -target_logprobs.sum()


@torch.no_grad()
def unit_logprobs(model: LSTMLM, sequences: Sequence[Sequence[int]], *, batch_tokens: int = 8000,
                  device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """Per sequence: natural-log p of each unit and of </s> (len + 1 values, CPU float64). Batches by length."""
    model.eval()
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    out: list[torch.Tensor | None] = [None] * len(sequences)
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (len(sequences[order[end]]) + 1) * (end - start + 1) <= batch_tokens:
            end += 1
        idx = order[start:end]
        inputs, targets = make_batch([sequences[i] for i in idx])
        picked = model(inputs.to(device), targets.to(device)).double().cpu()  # (B, T)
        for b, i in enumerate(idx):
            out[i] = picked[b, : len(sequences[i]) + 1]
        start = end
    return out  # type: ignore[return-value]


def evaluate(model: LSTMLM, vocab: Vocabulary, sentences: Iterable[str], **kw) -> LMEval:
    """Totals in the n-gram module's convention (log10; OOV = unit outside the vocabulary, scored as <unk>), so
    `.perplexity` skips OOV units and `.perplexity_with_oov` counts them at the <unk> class's probability."""
    sentences = [s for s in sentences if sentence_units(s, vocab.units)]
    seqs = [vocab.encode(s) for s in sentences]
    if not seqs:
        return LMEval(0, 0, 0, 0.0, 0.0)
    scores = unit_logprobs(model, seqs, **kw)
    in_vocab = oov = 0.0
    n_oov = 0
    for s, lp in zip(sentences, scores):
        mask = torch.tensor([u not in vocab for u in sentence_units(s, vocab.units)] + [False])
        oov += float(lp[mask].sum())
        in_vocab += float(lp[~mask].sum())
        n_oov += int(mask.sum())
    return LMEval(sentences=len(seqs), units=sum(len(s) for s in seqs), oov=n_oov, log10prob=in_vocab / math.log(10),
                  log10prob_oov=oov / math.log(10))


# -------------------------------------------------------------------------------------------------------- rescoring


class LSTMScorer:
    """texts -> natural-log p(text </s> | <s>) under a trained LSTM LM."""

    def __init__(self, model: LSTMLM, vocab: Vocabulary, device: torch.device | str = "cpu"):
        if model.cfg.units != vocab.units or model.cfg.vocab_size != len(vocab):
            raise ValueError("the model and the vocabulary do not belong together")
        self.model, self.vocab, self.device = model.to(device).eval(), vocab, device

    def __call__(self, texts: Iterable[str]) -> list[float]:
        texts = list(texts)
        seqs = [self.vocab.encode(t) for t in texts]
        return [float(lp.sum()) for lp in unit_logprobs(self.model, seqs, device=self.device)]


def load_rnnlm(release_dir: str | os.PathLike, device: torch.device | str = "cpu") -> LSTMScorer:
    """A release written by recipes/asr/train_lm.py (kind "rnnlm": model.pt, config.json, vocab.txt)."""
    from speechdraw.engine.release import load_release

    release = load_release(release_dir, kind="rnnlm")
    cfg = RNNLMConfig(**release.model_config)
    model = LSTMLM(cfg)
    model.load_state_dict(release.state_dict, strict=True)
    return LSTMScorer(model, Vocabulary.load(release.path("vocab.txt"), cfg.units), device)


@dataclass
class Rescored:
    hypothesis: object  # the first-pass hypothesis (speechdraw.asr.beam.Hypothesis: .text and .score are used)
    first_pass: float  # its first-pass score
    lm_logprob: float  # natural-log probability of its text under the rescoring LM
    score: float  # first_pass + weight * lm_logprob + length_bonus * words


def rescore(nbest: Sequence, lm_logprobs: Sequence[float], *, weight: float,
            length_bonus: float = 0.0) -> list[Rescored]:
    """Re-rank an N-best list (objects with .text and .score) with precomputed LM log-probabilities (one per
    hypothesis; compute them once and call this per weight when tuning). Best first; ties keep first-pass order."""
    if len(nbest) != len(lm_logprobs):
        raise ValueError(f"{len(nbest)} hypotheses but {len(lm_logprobs)} LM scores")
    out = [Rescored(h, h.score, lp, h.score + weight * lp + length_bonus * len(h.text.split()))
           for h, lp in zip(nbest, lm_logprobs)]
    return sorted(out, key=lambda r: -r.score)  # sorted() is stable


def rescore_nbest(nbests: Sequence[Sequence], scorer: LSTMScorer, *, weight: float,
                  length_bonus: float = 0.0) -> list:
    """Per utterance, the best hypothesis of its N-best list after rescoring (None for an empty list). The LSTM
    scores every hypothesis of every utterance in one call, so it batches across utterances."""
    texts = [h.text for nbest in nbests for h in nbest]
    scores = scorer(texts) if texts else []
    out, i = [], 0
    for nbest in nbests:
        lp = scores[i : i + len(nbest)]
        i += len(nbest)
        out.append(rescore(nbest, lp, weight=weight, length_bonus=length_bonus)[0].hypothesis if nbest else None)
    return out
