"""Hotwords (speechdraw.asr.beam: read_hotwords, BeamSearchDecoder(hotwords=...), `transcribe --hotwords`): a word the
plain decoder misses is recovered with the hotword, and a hotword does not appear where it was not said. First on
hand-built emissions (a real name, exact control of the acoustics), then with the really trained speech model on real
speech, through the command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from asr_recipe_fixtures import SENTENCES, needs_espeak
from conftest import run_script
from test_asr_beam import emissions, spell
from transcribe_fixtures import SR, noise

from speechdraw.asr.beam import DEFAULT_HOTWORD_BONUS, BeamConfig, BeamSearchDecoder, read_hotwords, write_lexicon
from speechdraw.asr.lm.ngram import NGramConfig, train_ngram
from speechdraw.asr.text import TokenSet

TOKENS = TokenSet.characters()
LM_TEXT = ["i met the man today", "i met the woman today", "we met the man at noon", "the man met us today",
           "i saw the sea today", "you saw the man", "i met a man"] * 3


def blurred(text: str, seed: int, unsure: str = "zebulun", p: float = 0.4) -> torch.Tensor:
    """(1, T, V): one frame per character of `text`, 0.55 on its symbol (`p` in the word `unsure`: a name the
    acoustic model is unsure of) and 0.12 on each of three random other letters."""
    rng = np.random.default_rng(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    frames = []
    for word in text.split():
        for sym in spell(word):
            others = [c for c in rng.choice(list(letters), 4, replace=False) if c != sym][:3]
            frames.append(sym if sym == "-" else {sym: p if word == unsure else 0.55, **{c: 0.12 for c in others}})
        frames.append("|")
    return emissions(frames[:-1])


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("hotword-lm")
    train_ngram(LM_TEXT, NGramConfig(order=3)).write_arpa(d / "word3.arpa")
    write_lexicon(train_ngram(LM_TEXT, NGramConfig(order=1)).words(), d / "lexicon.txt")
    return d


def test_read_hotwords(tmp_path):
    f = tmp_path / "hot.txt"
    f.write_text("# names\nZebulun 4.0\n\nNew York\nmax 2.5\nstrange 1e999\n")
    with pytest.raises(ValueError, match=r"hot.txt:6: the bonus must be a finite number"):
        read_hotwords(f)
    f.write_text("# names\nZebulun 4.0\n\nNew York\nmax 2.5\n")
    assert read_hotwords(f) == {"zebulun": 4.0, "new york": DEFAULT_HOTWORD_BONUS, "max": 2.5}
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match="no hotwords"):
        read_hotwords(tmp_path / "empty.txt")
    with pytest.raises(ValueError, match="cannot read"):
        read_hotwords(tmp_path / "missing.txt")


def test_a_name_the_plain_decoder_misses_is_recovered(lm_dir):
    """The name is outside the lexicon: the plain decoder cannot write it. With the hotword it is written, with the
    LM and without one."""
    cfg = BeamConfig(lexicon="lexicon.txt", lm="word3.arpa", lm_weight=1.0, word_score=0.5, nbest=3)
    said = [blurred("i met zebulun today", seed) for seed in range(4)]
    plain = BeamSearchDecoder(TOKENS, cfg, base_dir=lm_dir)
    hot = BeamSearchDecoder(TOKENS, cfg, base_dir=lm_dir, hotwords={"zebulun": DEFAULT_HOTWORD_BONUS})
    for x in said:
        assert "zebulun" not in plain(x)[0][0].text
        assert hot(x)[0][0].text == "i met zebulun today"
    no_lm = BeamSearchDecoder(TOKENS, BeamConfig(lexicon="lexicon.txt", nbest=3), base_dir=lm_dir,
                              hotwords={"zebulun": DEFAULT_HOTWORD_BONUS})
    assert no_lm(said[0])[0][0].text == "i met zebulun today"


def test_a_hotword_does_not_appear_where_it_was_not_said(lm_dir):
    cfg = BeamConfig(lexicon="lexicon.txt", lm="word3.arpa", lm_weight=1.0, word_score=0.5)
    plain = BeamSearchDecoder(TOKENS, cfg, base_dir=lm_dir)
    hot = BeamSearchDecoder(TOKENS, cfg, base_dir=lm_dir, hotwords={"zebulun": DEFAULT_HOTWORD_BONUS, "sea": 3.0})
    for seed, text in enumerate(["i met the man today", "we met the woman at noon", "you saw the man",
                                 "the man met us today"]):
        x = blurred(text, seed)
        assert hot(x)[0][0].text == plain(x)[0][0].text == text
    # The bonus is what the total score says: the same path scores `bonus` more with the hotword.
    x = blurred("i saw the sea today", 9)
    (p,), (h,) = plain(x)[:1], hot(x)[:1]
    assert p[0].text == h[0].text == "i saw the sea today"
    assert h[0].score - p[0].score == pytest.approx(3.0, abs=1e-3)


def test_hotwords_need_a_lexicon_and_spellable_words(lm_dir):
    with pytest.raises(ValueError, match="hotwords need lexicon beam search"):
        BeamSearchDecoder(TOKENS, BeamConfig(), hotwords={"zebulun": 2.0})
    with pytest.raises(ValueError, match="not in the model's token set"):
        BeamSearchDecoder(TOKENS, BeamConfig(lexicon="lexicon.txt"), base_dir=lm_dir, hotwords={"zoë": 2.0})


@needs_espeak
def test_hotword_with_the_real_model_cli(release, pieces, tmp_path):
    """The trained model, real speech. "fridge" stands for a rare name: it is left out of the lexicon and the LM, so
    the plain decoder writes another word there; with `--hotwords` it is written, and in the other sentences, which
    do not say it, it does not appear. The subtitle options ride along (karaoke cues, narrow lines)."""
    target = next(i for i, p in enumerate(pieces) if "fridge" in p.text.split())
    others = [i for i in range(len(pieces)) if i != target][:8]
    text = [s.replace(" fridge", "") for s in SENTENCES]  # "milk is in the": every other word stays known
    train_ngram(text, NGramConfig(order=3)).write_arpa(tmp_path / "word3.arpa")
    write_lexicon(train_ngram(text, NGramConfig(order=1)).words(), tmp_path / "lexicon.txt")
    assert "fridge" not in (tmp_path / "lexicon.txt").read_text()
    (tmp_path / "hot.txt").write_text("fridge\n")
    audio = tmp_path / "in"
    audio.mkdir()
    rng = np.random.default_rng(0)
    for i in [target, *others]:
        x = np.concatenate([np.zeros(4000, np.float32), pieces[i].wave, np.zeros(4000, np.float32)])
        sf.write(str(audio / f"{i:02d}.flac"), x + noise(len(x), rng), SR)

    def run(out, *extra):
        run_script(["-m", "speechdraw", "transcribe", str(audio), "--model", str(release), "--lm",
                    str(tmp_path / "word3.arpa"), "--lexicon", str(tmp_path / "lexicon.txt"), "--lm-weight", "0.5",
                    "--format", "all", "--output-dir", str(out), "--quiet", "--device", "cpu", *extra])
        return {i: json.loads((out / f"{i:02d}.json").read_text())["text"] for i in [target, *others]}

    plain = run(tmp_path / "plain")
    hot = run(tmp_path / "hot", "--hotwords", str(tmp_path / "hot.txt"), "--highlight-words", "--max-line-width",
              "12")
    print("plain:", plain[target], "| hotword:", hot[target])
    assert "fridge" not in plain[target].split()
    assert hot[target] == pieces[target].text
    for i in others:
        assert "fridge" not in hot[i].split() and hot[i] == plain[i], (pieces[i].text, hot[i])
    vtt = (tmp_path / "hot" / f"{target:02d}.vtt").read_text()
    assert "<u>fridge</u>" in vtt
    assert all(len(line.replace("<u>", "").replace("</u>", "")) <= 12 for line in vtt.splitlines()[2:]
               if line and "-->" not in line)
