"""data_prep/synth_speech.py: the split rules on their own, then a real espeak-ng build of a handful of sentences."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from asr_fixtures import prep

from speechdraw.asr.audio import load_audio
from speechdraw.asr.manifest import read_manifest, validate_manifest
from speechdraw.asr.text import word_count

synth = prep("synth_speech")

TEXT = """The quick brown fox jumps over the lazy dog near the river bank. She sold 12 sea shells by the sea shore.
Peter Piper picked a peck of pickled peppers yesterday. How much wood would a woodchuck chuck today?
Dr. Smith arrived at 3:30 pm with a small brown bag. Every good boy deserves fudge and a glass of milk.
A journey of a thousand miles begins with a single step. All that glitters is not gold, they say.
Too short. The early bird catches the worm but the second mouse gets the cheese.
Actions speak louder than words in almost every situation. Better late than never, said the old man slowly.
Birds of a feather flock together in the cold northern winter. Curiosity killed the cat but satisfaction brought it
back. Don't count your chickens before they hatch in the spring. Fortune favors the bold and the brave.

Where there's smoke there is usually a fire somewhere close. You can't judge a book by its cover alone.
"""


def plan(**overrides):
    fields = dict(seed=0, dev_utts=2, test_utts=2, test_accent="en-gb-scotland", min_words=5, max_words=30,
                  speed=(140, 200), pitch=(30, 70), sentences_sha256="x",
                  train_accents=tuple(a for a in synth.ACCENTS if a != "en-gb-scotland"))  # fmt: skip
    fields.update(overrides)
    return synth.Plan(**fields)


def test_splits_are_disjoint_and_utterances_follow_the_voice_rules():
    sentences = [f"sentence number {i} has a few words" for i in range(40)] + ["too short", "a b c d"]
    p = plan(dev_utts=5, test_utts=4)
    s = synth.split_sentences(sentences, p)
    assert (len(s.dev), len(s.test), len(s.test_accent), len(s.train)) == (5, 4, 4, 27)
    held = set(s.dev) | set(s.test) | set(s.test_accent)
    assert len(held) == 13 and not held & set(s.train) and not held & set(s.lm)
    assert "too short" in s.lm and "too short" not in s.train  # LM text keeps short sentences; utterances don't
    assert synth.split_sentences(sentences, p) == s  # deterministic

    train = [synth.utterance(p, s, "train", i) for i in range(60)]
    assert {u.variant for u in train} <= set(synth.TRAIN_VARIANTS) and "en-gb-scotland" not in {u.voice for u in train}
    assert len({u.text for u in train}) == 27  # cycles through the pool
    for split in ("dev", "test"):
        utts = [synth.utterance(p, s, split, i) for i in range(len(getattr(s, split)))]
        assert {u.variant for u in utts} <= set(synth.HELDOUT_VARIANTS)
        assert not set(synth.HELDOUT_VARIANTS) & set(synth.TRAIN_VARIANTS)
    accent = [synth.utterance(p, s, "test_accent", i) for i in range(4)]
    assert {u.voice for u in accent} == {"en-gb-scotland"} and {u.variant for u in accent} <= set(synth.CORE_VARIANTS)
    assert set(synth.CORE_VARIANTS) < set(synth.TRAIN_VARIANTS)  # test_accent's voices are all heard in training
    assert synth.utterance(p, s, "train", 7) == train[7]
    assert all(140 <= u.speed <= 200 and 30 <= u.pitch <= 70 for u in train)

    with pytest.raises(ValueError, match="need 13"):
        synth.split_sentences(sentences[:12], p)


def test_en_gb_is_spoken_under_a_name_that_takes_variants(tmp_path):
    cmd = synth.espeak_command("en-gb", "f2", 150, 40, "hello", tmp_path / "x.wav")
    assert cmd[:3] == ["espeak-ng", "-v", "en+f2"] and cmd[-1] == "hello"


needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (apt-get install -y espeak-ng)")


@needs_espeak
def test_every_voice_variant_is_one_espeak_knows(tmp_path):
    # espeak-ng falls back to the bare voice for a variant it does not know, silently: the check must catch that.
    variants = synth.TRAIN_VARIANTS + synth.HELDOUT_VARIANTS
    synth.check_voices(("en-us",), variants, tmp_path, variants)
    with pytest.raises(SystemExit, match="'nosuchvariant'"):
        synth.check_voices(("en-us",), variants, tmp_path, ("f1", "nosuchvariant"))


@needs_espeak
def test_build_small_corpus_end_to_end_and_resume(tmp_path, capsys):
    src = tmp_path / "source.txt"
    src.write_text(TEXT)
    out = tmp_path / "synth"
    argv = ["--source", str(src), "--out", str(out), "--hours", "0.004", "--dev-utts", "2", "--test-utts", "2",
            "--jobs", "2"]  # fmt: skip
    assert synth.main(argv) == 0

    manifests = {split: read_manifest(out / f"{split}.jsonl") for split in synth.SPLITS}
    assert [len(manifests[s]) for s in ("dev", "test", "test_accent")] == [2, 2, 2]
    assert sum(e.duration for e in manifests["train"]) >= 0.004 * 3600
    for split, entries in manifests.items():
        assert validate_manifest(out / f"{split}.jsonl", decode=True).ok
        for e in entries:
            info = sf.info(e.audio)
            assert (info.samplerate, info.channels, info.format) == (16_000, 1, "FLAC")
            assert 5 <= word_count(e.text) <= 30
            assert {"voice", "variant", "speed", "pitch"} <= e.extra.keys() and e.speaker.startswith(e.extra["voice"])
        wave = load_audio(entries[0].audio)
        assert wave.shape[0] == pytest.approx(entries[0].duration * 16_000, abs=1)
        assert wave.abs().max() > 0.05  # speech, not silence

    # The split rules, checked on what was written.
    text = {split: {e.text for e in entries} for split, entries in manifests.items()}
    lm = set((out / "lm_train.txt").read_text().splitlines())
    for held in ("dev", "test", "test_accent"):
        assert not text[held] & text["train"] and not text[held] & lm
    assert text["train"] <= lm and "too short" in lm  # short sentences feed the LM, not the audio
    assert "doctor smith arrived at three thirty p m with a small brown bag" in lm | text["dev"] | text["test"] | \
        text["test_accent"]  # fmt: skip
    variants = {split: {e.extra["variant"] for e in entries} for split, entries in manifests.items()}
    assert not (variants["dev"] | variants["test"]) & variants["train"]
    accents = {split: {e.extra["voice"] for e in entries} for split, entries in manifests.items()}
    assert accents["test_accent"] == {"en-gb-scotland"} and "en-gb-scotland" not in accents["train"]
    summary = json.loads((out / "corpus.json").read_text())
    assert summary["splits"]["dev"]["utterances"] == 2
    assert summary["overlap_with_train_and_lm_text"]["test"] == {"train": 0, "lm_train": 0}

    # Re-running changes nothing; a deleted file is re-made identically (synthesis is deterministic).
    before = {p: p.stat().st_mtime_ns for p in (out / "audio").rglob("*.flac")}
    manifest_bytes = (out / "train.jsonl").read_bytes()
    victim = manifests["dev"][1].audio
    samples, _ = sf.read(victim)
    (out / "audio" / "dev" / victim.rsplit("/", 1)[-1]).unlink()
    assert synth.main(argv) == 0
    after = {p: p.stat().st_mtime_ns for p in (out / "audio").rglob("*.flac")}
    assert after.keys() == before.keys()
    assert {p for p in before if before[p] != after[p]} == {out / "audio" / "dev" / victim.rsplit("/", 1)[-1]}
    assert np.array_equal(sf.read(victim)[0], samples)
    assert (out / "train.jsonl").read_bytes() == manifest_bytes

    # Different settings must not mix with an existing corpus.
    with pytest.raises(SystemExit, match="seed"):
        synth.main([*argv, "--seed", "1"])
