"""data_prep/synth_speech.py: the split rules on their own, then a real espeak-ng build of a handful of sentences."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from asr_fixtures import prep

from speechdraw.asr import augment
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
    utt = synth.Utterance("x", "dev", "hello", "en-gb", "f2", 150, 40)
    cmd = synth.synth_command(utt, tmp_path / "x.wav")
    assert cmd[:3] == ["espeak-ng", "-v", "en+f2"] and "hello" not in cmd  # the text goes to stdin


def test_other_synthesizers_only_in_their_own_splits_and_test_voice_never_in_train():
    sentences = [f"sentence number {i} has a few words" for i in range(40)]
    p = plan(dev_utts=5, test_utts=4)
    s = synth.split_sentences(sentences, p)
    train = [synth.utterance(p, s, "train", i) for i in range(20)]
    other = [synth.utterance(p, s, "train_other", i) for i in range(200)]
    test_voice = [synth.utterance(p, s, "test_voice", i) for i in range(4)]
    assert {u.synth for u in train} == {"espeak-ng"}
    assert {u.speaker for u in other} == set(synth.OTHER_TRAIN_VOICES)  # every other voice, and only those
    assert {u.speaker for u in test_voice} == {synth.TEST_VOICE} and synth.TEST_VOICE not in synth.OTHER_TRAIN_VOICES
    assert [u.text for u in test_voice] == s.test  # test's sentences, so the voice is the only thing that changed
    # The two parts of train start from opposite ends of the sentence pool: no sentence twice while it lasts.
    assert not {u.text for u in train} & {u.text for u in other[:7]}
    assert other[0].text == s.train[-1] and all(u.pitch is None and 140 <= u.speed <= 200 for u in other)
    assert synth.utterance(p, s, "test", 3) == synth.utterance(plan(dev_utts=5, test_utts=4, test_voice="flite+kal"),
                                                              s, "test", 3)  # new fields leave test alone


needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (apt-get install -y espeak-ng)")
needs_others = pytest.mark.skipif(shutil.which("flite") is None or shutil.which("text2wave") is None,
                                  reason="apt-get install -y flite festival festvox-kallpc16k")
DASHED = "-h -v the quick brown fox jumps over the lazy dog"  # argv would read: help, then verbose


@needs_espeak
@needs_others
@pytest.mark.parametrize("voice", ["espeak-ng+en-us", *synth.OTHER_TRAIN_VOICES, synth.TEST_VOICE])
def test_every_synthesizer_speaks_a_sentence_that_starts_with_a_dash(tmp_path, voice):
    synth_name, name = voice.split("+")
    utt = synth.Utterance("x", "test", DASHED, name, "", 175, 50 if synth_name == "espeak-ng" else None, synth_name)
    out = synth.audio_path(tmp_path, utt)
    uid, seconds = synth.make((utt, str(tmp_path)))
    info = sf.info(out)
    assert (uid, info.samplerate, info.channels) == ("x", 16_000, 1)  # kal's 8 kHz, espeak's 22.05 kHz resampled
    assert seconds > 2.0  # ten words spoken (a parsed option gives no audio or a help text instead)
    wave = load_audio(out)
    assert wave.abs().max() > 0.05
    # Slower speech lasts longer: the rate reaches every synthesizer.
    slow = synth.Utterance("y", "test", DASHED, name, "", 120, utt.pitch, synth_name)
    assert synth.make((slow, str(tmp_path)))[1] > 1.2 * seconds


@needs_others
def test_a_voice_flite_or_festival_lacks_is_refused(tmp_path):
    synth.check_other_voices(synth.OTHER_TRAIN_VOICES + (synth.TEST_VOICE,), tmp_path)
    with pytest.raises(SystemExit, match="no voice 'nosuch'"):  # flite would fall back to kal without a word
        synth.check_other_voices(("flite+nosuch",), tmp_path)
    with pytest.raises(SystemExit, match="festival\\+nosuch"):
        synth.check_other_voices(("festival+nosuch",), tmp_path)


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
    argv = ["--source", str(src), "--out", str(out), "--hours", "0.004", "--dev-utts", "2", "--test-utts", "4",
            "--jobs", "2"]  # fmt: skip
    assert synth.main(argv) == 0

    manifests = {split: read_manifest(out / f"{split}.jsonl") for split in synth.SPLITS}
    assert [len(manifests[s]) for s in synth.SPLITS if s != "train"] == [2] + [4] * 6 + [2] * 3
    assert sum(e.duration for e in manifests["train"]) >= 0.004 * 3600
    for split, entries in manifests.items():
        assert validate_manifest(out / f"{split}.jsonl", decode=True).ok
        for e in entries:
            info = sf.info(e.audio)
            assert (info.samplerate, info.channels, info.format) == (16_000, 1, "FLAC")
            assert 5 <= word_count(e.text) <= 30
            assert {"synth", "voice", "variant", "speed", "pitch"} <= e.extra.keys()
            assert e.speaker in (f"{e.extra['voice']}+{e.extra['variant']}", f"{e.extra['synth']}+{e.extra['voice']}")
        wave = load_audio(entries[0].audio)
        assert wave.shape[0] == pytest.approx(entries[0].duration * 16_000, abs=1)
        assert wave.abs().max() > 0.05  # speech, not silence

    # The split rules, checked on what was written.
    text = {split: {e.text for e in entries} for split, entries in manifests.items()}
    lm = set((out / "lm_train.txt").read_text().splitlines())
    for held in ("dev", "test", "test_accent", "test_voice", *synth.HARDER_SETS, *synth.DEV_HARDER_SETS):
        assert not text[held] & text["train"] and not text[held] & lm
    assert text["test_voice"] == text["test"]
    speakers = {split: {e.speaker for e in entries} for split, entries in manifests.items()}
    assert speakers["test_voice"] == {"flite+rms"} and "flite+rms" not in speakers["train"]
    synths = {e.extra["synth"] for e in manifests["train"]}
    assert synths == {"espeak-ng", "flite"} or synths == {"espeak-ng", "flite", "festival"}
    assert text["train"] <= lm and "too short" in lm  # short sentences feed the LM, not the audio
    assert "doctor smith arrived at three thirty p m with a small brown bag" in lm | text["dev"] | text["test"] | \
        text["test_accent"]  # fmt: skip
    variants = {split: {e.extra["variant"] for e in entries} for split, entries in manifests.items()}
    assert not (variants["dev"] | variants["test"]) & variants["train"]
    accents = {split: {e.extra["voice"] for e in entries} for split, entries in manifests.items()}
    assert accents["test_accent"] == {"en-gb-scotland"} and "en-gb-scotland" not in accents["train"]
    check_harder_sets(manifests)
    check_dev_harder_sets(manifests)
    summary = json.loads((out / "corpus.json").read_text())
    assert summary["splits"]["dev"]["utterances"] == 2
    assert summary["overlap_with_train_and_lm_text"]["test"] == {"train": 0, "lm_train": 0}

    # Re-running changes nothing; a deleted file is re-made identically (synthesis is deterministic).
    before = {p: p.stat().st_mtime_ns for p in (out / "audio").rglob("*.flac")}
    manifest_bytes, noisy_bytes = (out / "train.jsonl").read_bytes(), (out / "test_noisy.jsonl").read_bytes()
    victim = manifests["dev"][1].audio
    samples, _ = sf.read(victim)
    (out / "audio" / "dev" / victim.rsplit("/", 1)[-1]).unlink()
    assert synth.main(argv) == 0
    after = {p: p.stat().st_mtime_ns for p in (out / "audio").rglob("*.flac")}
    assert after.keys() == before.keys()
    assert {p for p in before if before[p] != after[p]} == {out / "audio" / "dev" / victim.rsplit("/", 1)[-1]}
    assert np.array_equal(sf.read(victim)[0], samples)
    assert (out / "train.jsonl").read_bytes() == manifest_bytes

    # A corpus started before the other synthesizers and harder sets existed continues under the upgraded plan; its
    # files are kept as they are (here a finished corpus: nothing at all is made again).
    old_plan = json.loads((out / "plan.json").read_text())
    del old_plan["other_train_voices"], old_plan["test_voice"], old_plan["noisy_snrs"]
    (out / "plan.json").write_text(json.dumps(old_plan))
    assert synth.main(argv) == 0
    assert json.loads((out / "plan.json").read_text())["test_voice"] == "flite+rms"
    assert {p: p.stat().st_mtime_ns for p in (out / "audio").rglob("*.flac")} == after
    assert [(out / f"{s}.jsonl").read_bytes() for s in ("train", "test_noisy")] == [manifest_bytes, noisy_bytes]

    # Different settings must not mix with an existing corpus.
    with pytest.raises(SystemExit, match="seed"):
        synth.main([*argv, "--seed", "1"])

    # --sample: a few utterances of each evaluation set, exactly the full build's (same bytes), and nothing else.
    sample = tmp_path / "sample"
    assert synth.main([*argv[:3], str(sample), "--dev-utts", "2", "--test-utts", "4", "--sample", "2"]) == 0
    assert not (sample / "train.jsonl").exists() and not (sample / "dev.jsonl").exists()
    assert json.loads((sample / "plan.json").read_text())["sample"] == 2
    for split in ("test", "test_accent", "test_voice", *synth.HARDER_SETS):
        entries = read_manifest(sample / f"{split}.jsonl")
        assert len(entries) == 2 and {e.text for e in entries} <= text[split] and not {e.text for e in entries} & lm
        for e in entries:
            name = e.audio.rsplit("/", 1)[-1]
            assert (out / "audio" / split / name).read_bytes() == (sample / "audio" / split / name).read_bytes()


def check_dev_harder_sets(manifests):
    """dev_noisy / dev_reverb / dev_phone: dev's utterances through the training side's channels, not test's."""
    dev = {e.audio.rsplit("/", 1)[-1].removesuffix(".flac"): e for e in manifests["dev"]}
    for split in synth.DEV_HARDER_SETS:
        for e in manifests[split]:
            src = dev[e.extra["source"]]  # a dev utterance, not a test one
            assert (e.text, e.speaker, e.duration) == (src.text, src.speaker, src.duration)
            assert not np.allclose(sf.read(e.audio)[0], sf.read(src.audio)[0], atol=1e-3)
    assert [e.extra["snr_db"] for e in manifests["dev_noisy"]] == [0, 5]
    assert {e.extra["noise"] for e in manifests["dev_noisy"]} <= set(augment.TRAIN_NOISE_KINDS)
    for e in manifests["dev_reverb"]:
        lo, hi = zip(*augment.ROOM_SIZES["train"])
        assert all(lo[k] - 0.01 <= e.extra["room"][k] <= hi[k] + 0.01 for k in range(3))
    for e in manifests["dev_phone"]:
        assert e.extra["phone_codec"] in augment.PHONE_CODECS and e.extra["codec"] in synth.LOSSY
    # Every dev_noisy noise kind, babble included, draws its talkers from dev.
    p = plan(dev_utts=40, test_utts=4)
    s = synth.split_sentences([f"sentence number {i} has five words" for i in range(60)], p)
    talkers = [t for i in range(40) for t in synth.degraded(p, s, "dev_noisy", i).channel.get("talkers", [])]
    assert talkers and all(t.startswith("dev-") for t in talkers)


def check_harder_sets(manifests):
    """test_noisy / test_reverb / test_phone: test's utterances, same lengths, through what each line says."""
    test = {e.audio.rsplit("/", 1)[-1].removesuffix(".flac"): e for e in manifests["test"]}
    for split in synth.HARDER_SETS:
        for e in manifests[split]:
            src = test[e.extra["source"]]
            assert (e.text, e.speaker, e.extra["variant"]) == (src.text, src.speaker, src.extra["variant"])
            clean, noisy = sf.read(src.audio)[0], sf.read(e.audio)[0]
            assert len(noisy) == len(clean) and e.duration == src.duration
            assert not np.allclose(noisy, clean, atol=1e-3)
    noisy = manifests["test_noisy"]
    assert [e.extra["snr_db"] for e in noisy] == [0, 5, 10, 20]
    assert {e.extra["noise"] for e in noisy} <= set(augment.TEST_NOISE_KINDS)
    assert not set(augment.TEST_NOISE_KINDS) & set(augment.TRAIN_NOISE_KINDS)
    for e in noisy:
        # The file is a * clean + b * noise with the noise the line names (made again from the utterance's seed);
        # the least-squares a, b give the SNR actually in the file.
        clean, mixed = sf.read(test[e.extra["source"]].audio)[0], sf.read(e.audio)[0]
        talkers = [sf.read(test[t].audio)[0] for t in e.extra.get("talkers", [])]
        noise = augment.make_noise(e.extra["noise"], len(clean), 16_000, np.random.default_rng(e.extra["seed"]),
                                   talkers or None)  # fmt: skip
        (a, b), *_ = np.linalg.lstsq(np.stack([clean, noise], 1), mixed, rcond=None)
        assert np.abs(mixed - a * clean - b * noise).max() < 1e-3  # nothing else in it
        snr = 10 * np.log10(np.sum((a * clean) ** 2) / np.sum((b * noise) ** 2))
        assert snr == pytest.approx(e.extra["snr_db"], abs=0.5)
    for e in manifests["test_reverb"]:
        assert 0.3 <= e.extra["rt60"] <= 1.0 and 1.0 <= e.extra["distance"] <= 3.0
        lo, hi = zip(*augment.ROOM_SIZES["test"])  # (L, W, H) lower and upper bounds
        assert all(lo[k] - 0.01 <= e.extra["room"][k] <= hi[k] + 0.01 for k in range(3))  # a held-out room size
    for e in manifests["test_phone"]:
        # Telephone band: next to nothing above 3.4 kHz is left of what the clean audio had there.
        clean, phone = sf.read(test[e.extra["source"]].audio)[0], sf.read(e.audio)[0]
        def high(x):
            spec = np.abs(np.fft.rfft(x)) ** 2
            return spec[np.fft.rfftfreq(len(x), 1 / 16_000) > 4000].sum() / spec.sum()
        assert high(phone) < 0.05 * high(clean)
        assert e.extra["phone_codec"] in augment.PHONE_CODECS and e.extra["codec"] in synth.LOSSY
