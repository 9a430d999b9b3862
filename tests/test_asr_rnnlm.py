"""LSTM language model: the recipe learns a small text (perplexity far below a unigram model's), its release loads
back weights-only and scores the same, and N-best rescoring changes the 1-best when the LSTM prefers another text."""

from __future__ import annotations

import json
import math
import random
from collections import Counter

import pytest
import torch
from conftest import run_script

from speechdraw.asr.beam import Hypothesis
from speechdraw.asr.lm.rnnlm import (
    LSTMLM,
    LSTMScorer,
    RNNLMConfig,
    Vocabulary,
    evaluate,
    load_rnnlm,
    make_batch,
    rescore,
    unit_logprobs,
)


def grammar_text(n: int, seed: int) -> list[str]:
    """A small language where "read" follows a pronoun and "red" precedes a noun."""
    rng = random.Random(seed)
    subj, obj = ["i", "you", "we", "they"], ["books", "the letter", "a story", "the news"]
    noun, adj = ["car", "apple", "door", "hat"], ["fast", "sweet", "open", "new"]
    forms = [lambda: f"{rng.choice(subj)} read {rng.choice(obj)}",
             lambda: f"the red {rng.choice(noun)} is {rng.choice(adj)}",
             lambda: f"{rng.choice(subj)} like the red {rng.choice(noun)}",
             lambda: f"{rng.choice(subj)} {rng.choice(['write', 'want'])} {rng.choice(obj)}"]
    return [rng.choice(forms)() for _ in range(n)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("rnnlm")
    train, dev = d / "train.txt", d / "dev.jsonl"
    train.write_text("\n".join(grammar_text(600, seed=0)) + "\n")
    dev.write_text("".join(json.dumps({"text": s}) + "\n" for s in grammar_text(100, seed=1)))
    run_script(["recipes/asr/train_lm.py", "--preset", "tiny", "--data.train_text", str(train),
                "--data.dev_text", str(dev), "--train.run_dir", str(d / "run")])
    return d


def test_recipe_learns_the_text_far_below_a_unigram_model(trained):
    metrics = json.loads((trained / "run" / "release" / "config.json").read_text())["metrics"]
    train = (trained / "train.txt").read_text().split("\n")
    dev = [json.loads(line)["text"] for line in (trained / "dev.jsonl").read_text().splitlines()]
    counts = Counter(u for s in train if s for u in [*s.split(), "</s>"])
    total = sum(counts.values())
    dev_units = [u for s in dev for u in [*s.split(), "</s>"]]
    unigram_ppl = math.exp(-sum(math.log(counts[u] / total) for u in dev_units) / len(dev_units))
    assert metrics["dev_oov_rate"] == 0
    assert metrics["dev_perplexity"] < 0.5 * unigram_ppl, (metrics["dev_perplexity"], unigram_ppl)


def test_release_round_trip_scores_the_same(trained):
    state = torch.load(trained / "run" / "release" / "model.pt", weights_only=True)  # plain tensors only
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    scorer = load_rnnlm(trained / "run" / "release")
    dev = [json.loads(line)["text"] for line in (trained / "dev.jsonl").read_text().splitlines()]
    ev = evaluate(scorer.model, scorer.vocab, dev)
    metrics = json.loads((trained / "run" / "release" / "config.json").read_text())["metrics"]
    assert ev.perplexity_with_oov == pytest.approx(metrics["dev_perplexity"], rel=1e-9)
    # The scorer's sentence log-probability is the sum of the per-unit ones, </s> included.
    (units,) = unit_logprobs(scorer.model, [scorer.vocab.encode("i read books")])
    assert len(units) == 4 and scorer(["i read books"])[0] == pytest.approx(float(units.sum()))


def test_rescoring_changes_the_one_best_when_the_lstm_prefers_another_text(trained):
    scorer = load_rnnlm(trained / "run" / "release")
    nbest = [Hypothesis(tokens=[], timesteps=[], text="i red books", score=-10.0),
             Hypothesis(tokens=[], timesteps=[], text="i read books", score=-10.4)]
    lstm = scorer([h.text for h in nbest])
    assert lstm[1] - lstm[0] > 2.0  # the LSTM strongly prefers "read" after "i"
    assert rescore(nbest, lstm, weight=0.0)[0].hypothesis.text == "i red books"
    best = rescore(nbest, lstm, weight=0.5)[0]
    assert best.hypothesis.text == "i read books"
    assert best.score == pytest.approx(-10.4 + 0.5 * lstm[1]) and best.first_pass == -10.4


def test_rescore_arithmetic_and_ties():
    nbest = [Hypothesis([], [], "a b", -1.0), Hypothesis([], [], "a", -2.0), Hypothesis([], [], "c d e", -3.0)]
    out = rescore(nbest, [-4.0, -2.0, -1.0], weight=1.0, length_bonus=0.5)
    # a b: -1 - 4 + 1 = -4;  a: -2 - 2 + 0.5 = -3.5;  c d e: -3 - 1 + 1.5 = -2.5
    assert [r.hypothesis.text for r in out] == ["c d e", "a", "a b"]
    assert [r.score for r in out] == pytest.approx([-2.5, -3.5, -4.0])
    tied = rescore(nbest[:2], [-1.0, 0.0], weight=1.0)  # -2 and -2: first-pass order kept
    assert [r.hypothesis.text for r in tied] == ["a b", "a"]
    with pytest.raises(ValueError):
        rescore(nbest, [0.0], weight=1.0)


def test_vocabulary_and_batching_are_consistent(tmp_path):
    vocab = Vocabulary.build(["a b b", "b c", "b"], "word", min_count=2)
    assert vocab.symbols == ("<unk>", "<s>", "</s>", "b") and vocab.encode("b a zz") == [3, 0, 0]
    assert Vocabulary.load(vocab.save(tmp_path / "v.txt"), "word") == vocab
    chars = Vocabulary.build(["ab a"], "char")
    assert chars.encode("a b") == [chars.symbols.index(c) for c in "a|b"]
    inputs, targets = make_batch([[3, 4], [5]])
    assert inputs.tolist() == [[1, 3, 4], [1, 5, 0]] and targets.tolist() == [[3, 4, 2], [5, 2, -100]]
    with pytest.raises(ValueError):
        LSTMScorer(LSTMLM(RNNLMConfig(vocab_size=10, embed=8, hidden=8)), vocab)  # vocabulary size mismatch


@pytest.mark.parametrize("head", ["full", "adaptive"])
def test_scores_are_normalised_and_independent_of_batching(head):
    torch.manual_seed(0)
    cfg = RNNLMConfig(vocab_size=40, embed=16, hidden=16, layers=2, tie_weights=head == "full",
                      adaptive_cutoffs=(10, 25) if head == "adaptive" else ())
    model = LSTMLM(cfg).eval()
    seqs = [[3], [3, 4, 5, 3, 3, 39], [4, 5]]
    inputs, targets = make_batch(seqs)
    with torch.no_grad():
        dist = model.log_probs(inputs)  # (B, T, V)
        picked = model(inputs, targets)  # (B, T)
    assert torch.allclose(dist.exp().sum(-1), torch.ones(inputs.shape), atol=1e-5)
    real = targets != -100
    assert torch.allclose(picked[real], dist.gather(-1, targets.clamp(min=0)[..., None])[..., 0][real], atol=1e-5)
    assert torch.all(picked[~real] == 0)
    # Right padding never changes a sentence's scores: alone or batched with longer ones, the same numbers.
    for seq, lp in zip(seqs, unit_logprobs(model, seqs)):
        assert torch.allclose(unit_logprobs(model, [seq])[0], lp, atol=1e-6)
