"""Beam search with our n-gram LMs on hand-built emissions: the LM resolves an acoustic ambiguity that greedy decoding
gets wrong, N-best lists and their score decomposition, agreement with greedy decoding when no LM is used, settings
round trip."""

from __future__ import annotations

import pytest
import torch

from speechdraw.asr.beam import BeamConfig, BeamSearchDecoder, Hypothesis, decoder_tokens, write_lexicon
from speechdraw.asr.lm.ngram import NGramConfig, train_ngram
from speechdraw.asr.text import TokenSet

TOKENS = TokenSet.characters()
SYMBOLS = decoder_tokens(TOKENS)  # index 0 blank, then "|", "'", a..z
V = len(SYMBOLS)
# "read" is only ever a verb after a pronoun, "red" only an adjective before a noun.
LM_TEXT = ["i read books", "you read the letter", "they read books", "i read the letter", "we read books",
           "the red car", "a red apple", "the red car is fast", "i like the red car", "books are red"] * 3


def emissions(frames: list) -> torch.Tensor:
    """(1, T, V) log-probabilities. A frame is a symbol ("-" for blank; 0.9 on it) or a dict symbol -> probability;
    the remaining mass is spread evenly over the other symbols."""
    x = torch.empty(1, len(frames), V)
    for t, frame in enumerate(frames):
        probs = {frame: 0.9} if isinstance(frame, str) else frame
        rest = (1 - sum(probs.values())) / (V - len(probs))
        row = torch.full((V,), rest)
        for sym, p in probs.items():
            row[0 if sym == "-" else SYMBOLS.index(sym)] = p
        x[0, t] = row.log()
    return x


def spell(text: str) -> list[str]:
    """One frame per character ("|" for a space), with a blank between doubled letters as CTC needs."""
    frames: list[str] = []
    for c in text.replace(" ", "|"):
        if frames and frames[-1] == c:
            frames.append("-")
        frames.append(c)
    return frames


def ambiguous(before: str, after: str) -> torch.Tensor:
    """`before`|r e ? d|`after` where ? is blank with 0.51 and "a" with 0.47: the acoustics say "red" by a hair."""
    return emissions([*spell(before), "|", "r", "e", {"-": 0.51, "a": 0.47}, "d", "|", *spell(after)])


def greedy(log_probs: torch.Tensor) -> tuple[str, list[int]]:
    """Best path: argmax per frame, merge repeats, drop blanks -> (text, start frame of each token)."""
    best = log_probs[0].argmax(-1).tolist()
    out, steps = [], []
    for t, i in enumerate(best):
        if i != 0 and (t == 0 or best[t - 1] != i):
            out.append(SYMBOLS[i])
            steps.append(t)
    return " ".join("".join(out).replace("|", " ").split()), steps


def log10_of_units(lm, units: list[str]) -> float:
    """log10 p(<s> units </s>), unit by unit (the lexicon-free decoder scores tokens as emitted, "|" runs and all)."""
    history = ["<s>"]
    total = 0.0
    for u in [*units, "</s>"]:
        total += lm.logprob10(u, history)
        history.append(u)
    return total


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("lm")
    train_ngram(LM_TEXT, NGramConfig(order=3)).write_arpa(d / "word3.arpa")
    train_ngram(LM_TEXT, NGramConfig(order=6, units="char")).write_arpa(d / "char6.arpa")
    write_lexicon(train_ngram(LM_TEXT, NGramConfig(order=1)).words(), d / "lexicon.txt")
    return d


def test_word_lm_with_lexicon_resolves_the_ambiguity_greedy_gets_wrong(lm_dir):
    verb, adjective = ambiguous("i", "books"), ambiguous("the", "car")
    assert greedy(verb)[0] == "i red books" and greedy(adjective)[0] == "the red car"
    with_lm = BeamSearchDecoder(TOKENS, BeamConfig(lexicon="lexicon.txt", lm="word3.arpa", lm_weight=1.0),
                                base_dir=lm_dir)
    assert with_lm(verb)[0][0].text == "i read books"  # the LM knows "read" after "i"
    assert with_lm(adjective)[0][0].text == "the red car"  # ... and "red" before "car": context, not a bias
    no_lm = BeamSearchDecoder(TOKENS, BeamConfig(lexicon="lexicon.txt", lm="word3.arpa", lm_weight=0.0),
                              base_dir=lm_dir)
    assert no_lm(verb)[0][0].text == "i red books"  # without the LM the acoustics win


def test_char_lm_without_lexicon_resolves_it_too(lm_dir):
    x = ambiguous("i", "books")
    decoder = BeamSearchDecoder(TOKENS, BeamConfig(lm="char6.arpa", lm_weight=1.0), base_dir=lm_dir)
    assert decoder(x)[0][0].text == "i read books"
    assert BeamSearchDecoder(TOKENS, BeamConfig())(x)[0][0].text == "i red books"


@pytest.mark.parametrize("mode", ["lexicon", "lexicon-free"])
def test_nbest_lists_scores_and_timesteps(lm_dir, mode):
    cfg = BeamConfig(lexicon="lexicon.txt" if mode == "lexicon" else "", lm="word3.arpa" if mode == "lexicon"
                     else "char6.arpa", lm_weight=0.8, word_score=-0.5 if mode == "lexicon" else 0.0,
                     nbest=5)
    decoder = BeamSearchDecoder(TOKENS, cfg, base_dir=lm_dir)
    lm = train_ngram(LM_TEXT, NGramConfig(order=3) if mode == "lexicon" else NGramConfig(order=6, units="char"))
    x = ambiguous("i", "books")
    (nbest,) = decoder(x)
    assert 2 <= len(nbest) <= 5 and all(isinstance(h, Hypothesis) for h in nbest)
    assert [h.score for h in nbest] == sorted((h.score for h in nbest), reverse=True)
    assert len({h.text for h in nbest}) == len(nbest)  # distinct transcripts
    assert {"i read books", "i red books"} <= {h.text for h in nbest}
    for h in nbest:
        assert len(h.timesteps) == len(h.tokens)
        assert all(0 <= a < b < x.shape[1] for a, b in zip(h.timesteps, h.timesteps[1:]))
        # The total is the documented sum of its parts (sil_score is 0 here: flashlight adds it per silence frame),
        # and the LM part is our own model's log10 probability of the transcript.
        words = len(h.text.split()) if mode == "lexicon" else 0
        assert h.score == pytest.approx(h.am_score + cfg.lm_weight * h.lm_score + cfg.word_score * words, abs=1e-4)
        units = h.text.split() if mode == "lexicon" else ["|" if c == " " else c for c in TOKENS.decode(h.tokens)]
        assert h.lm_score == pytest.approx(log10_of_units(lm, units), abs=1e-4)
    best = nbest[0]
    assert TOKENS.decode(best.tokens) == "i|read|books".replace("|", " ")
    assert best.timesteps[:4] == [0, 1, 2, 3]  # i | r e


def test_without_lm_the_best_beam_is_the_greedy_path():
    g = torch.Generator().manual_seed(0)
    decoder = BeamSearchDecoder(TOKENS, BeamConfig(beam_size=8, nbest=1))
    for _ in range(10):
        t = int(torch.randint(5, 40, (1,), generator=g))
        path = torch.randint(0, V, (t,), generator=g).tolist()  # blanks, repeats and all
        x = emissions([SYMBOLS[i] if i else "-" for i in path])
        text, steps = greedy(x)
        (best,) = decoder(x)[0]
        assert best.text == text and best.timesteps == steps


def test_batch_with_lengths_matches_single_utterances(lm_dir):
    decoder = BeamSearchDecoder(TOKENS, BeamConfig(lexicon="lexicon.txt", lm="word3.arpa", lm_weight=1.0, nbest=3),
                                base_dir=lm_dir)
    a, b = ambiguous("i", "books"), ambiguous("the", "car is fast")
    batch = torch.zeros(2, b.shape[1], V)
    batch[0, : a.shape[1]], batch[1] = a[0], b[0]
    batch[0, a.shape[1]:] = emissions(["z"] * (b.shape[1] - a.shape[1]))[0]  # padding that would decode as "z"
    out = decoder(batch, torch.tensor([a.shape[1], b.shape[1]]))
    assert [h.text for h in out[0]] == [h.text for h in decoder(a)[0]]
    assert [h.text for h in out[1]] == [h.text for h in decoder(b)[0]]
    assert out[1][0].text == "the red car is fast"


def test_settings_round_trip_and_limits(lm_dir, tmp_path):
    cfg = BeamConfig(lexicon="lexicon.txt", lm="word3.arpa", lm_weight=1.25, word_score=-0.5, nbest=3)
    path = cfg.save(lm_dir / "decoder.json")
    assert BeamConfig.load(path) == cfg
    decoder = BeamSearchDecoder.from_file(path, TOKENS)  # paths resolve against the file's directory
    assert decoder(ambiguous("i", "books"))[0][0].text == "i read books" and decoder.load_seconds > 0
    train_ngram(LM_TEXT, NGramConfig(order=7, units="char")).write_arpa(tmp_path / "char7.arpa")
    with pytest.raises(ValueError, match="order 7"):
        BeamSearchDecoder(TOKENS, BeamConfig(lm="char7.arpa"), base_dir=tmp_path)
    with pytest.raises(ValueError, match="character token set"):
        BeamSearchDecoder(TokenSet.phonemes(), BeamConfig())
