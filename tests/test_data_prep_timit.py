"""data_prep/timit.py on a miniature TIMIT tree in the LDC layout, with NIST SPHERE audio and .PHN/.WRD/.TXT."""

from __future__ import annotations

import pytest
import soundfile as sf
from asr_fixtures import prep, write_audio

from speechdraw.asr.manifest import read_manifest, validate_manifest
from speechdraw.asr.text import TokenSet

timit = prep("timit")

PHN = [(0, 3050, "h#"), (3050, 4559, "sh"), (4559, 5723, "ix"), (5723, 6642, "hv"), (6642, 8772, "eh"),
       (8772, 9190, "dcl"), (9190, 10337, "jh"), (10337, 11517, "ih"), (11517, 12500, "q"), (12500, 13000, "pau"),
       (13000, 13500, "pcl"), (13500, 14000, "p"), (14000, 16000, "h#")]  # fmt: skip
PHN_39 = "sil sh ih hh eh sil jh ih sil p sil"
WRD = [(3050, 5723, "she"), (5723, 10337, "had"), (9190, 14000, "your")]
SPEAKERS = {  # path parts -> which split it should land in
    ("TRAIN", "DR1", "FCJF0"): "train",
    ("TEST", "DR1", "FAKS0"): "dev",  # one of the 50 development speakers
    ("TEST", "DR1", "MDAB0"): "test",  # one of the 24 core test speakers
    ("TEST", "DR2", "MABC0"): None,  # rest of TEST: in neither
}


def write_utterance(directory, name, lowercase=False):
    ext = (lambda e: e.lower()) if lowercase else (lambda e: e)
    wav = directory / f"{name}{ext('.WAV')}"
    write_audio(wav, 1.0, 16_000, fmt="NIST", subtype="PCM_16")  # real TIMIT .WAV files are NIST SPHERE
    (directory / f"{name}{ext('.PHN')}").write_text("".join(f"{a} {b} {p}\n" for a, b, p in PHN))
    (directory / f"{name}{ext('.WRD')}").write_text("".join(f"{a} {b} {w}\n" for a, b, w in WRD))
    (directory / f"{name}{ext('.TXT')}").write_text("0 16000 She had your.\n")


@pytest.fixture
def root(tmp_path):
    for (part, dialect, speaker) in SPEAKERS:
        d = tmp_path / "TIMIT" / part / dialect / speaker
        d.mkdir(parents=True)
        for name in ("SA1", "SI648", "SX43"):
            write_utterance(d, name)
    return tmp_path / "TIMIT"


def test_words_and_folded_phones_per_standard_split(root, tmp_path):
    assert sf.info(str(root / "TRAIN" / "DR1" / "FCJF0" / "SI648.WAV")).format == "NIST"
    out = tmp_path / "out"
    assert timit.main(["--root", str(root), "--out", str(out)]) == 0
    for split, speaker in (("train", "FCJF0"), ("dev", "FAKS0"), ("test", "MDAB0")):
        words = read_manifest(out / f"{split}.jsonl")
        phones = read_manifest(out / f"{split}_phones.jsonl")
        assert [e.extra["id"] for e in words] == [f"{speaker}_SI648", f"{speaker}_SX43"]  # SA sentences left out
        assert {e.speaker for e in words} == {speaker} and words[0].extra["dialect"] == "DR1"
        assert words[0].text == "she had your" and words[0].duration == pytest.approx(1.0)
        assert phones[0].text == PHN_39 and phones[0].audio == words[0].audio
        assert validate_manifest(out / f"{split}.jsonl").ok
        assert validate_manifest(out / f"{split}_phones.jsonl", tokens=TokenSet.phonemes()).ok
    everything = {e.speaker for s in ("train", "dev", "test") for e in read_manifest(out / f"{s}.jsonl")}
    assert "MABC0" not in everything


def test_lowercase_layout_and_keep_sa(tmp_path):
    d = tmp_path / "timit" / "train" / "dr3" / "mxyz0"
    d.mkdir(parents=True)
    write_utterance(d, "sa1", lowercase=True)
    write_utterance(d, "si1000", lowercase=True)
    (tmp_path / "timit" / "test").mkdir()
    assert timit.main(["--root", str(tmp_path / "timit"), "--out", str(tmp_path / "o"), "--keep-sa"]) == 0
    train = read_manifest(tmp_path / "o" / "train.jsonl")
    assert [e.extra["id"] for e in train] == ["MXYZ0_SA1", "MXYZ0_SI1000"]
    assert read_manifest(tmp_path / "o" / "train_phones.jsonl")[1].text == PHN_39


def test_61_to_39_folding_as_lee_and_hon():
    from speechdraw.asr.text import PHONES_39, TIMIT_61_TO_39, fold_timit_phones

    assert len(TIMIT_61_TO_39) == 61 and set(TIMIT_61_TO_39.values()) - {None} == set(PHONES_39)
    assert len(PHONES_39) == 39
    merged = {"ao": "aa", "ax": "ah", "ax-h": "ah", "axr": "er", "el": "l", "em": "m", "en": "n", "nx": "n",
              "eng": "ng", "hv": "hh", "ix": "ih", "ux": "uw", "zh": "sh"}
    assert {p: TIMIT_61_TO_39[p] for p in merged} == merged
    silent = ("bcl", "dcl", "gcl", "pcl", "tcl", "kcl", "pau", "epi", "h#")
    assert {TIMIT_61_TO_39[p] for p in silent} == {"sil"} and TIMIT_61_TO_39["q"] is None
    # SA1 "she had your dark suit" by hand: q deleted, closures -> sil, a pause + closure one sil
    labels = "h# sh ix hv eh dcl jh ih dcl d ah kcl k s ux q en pau gcl g r ix h#".split()
    assert fold_timit_phones(labels) == "sil sh ih hh eh sil jh ih sil d ah sil k s uw n sil g r ih sil".split()
    with pytest.raises(ValueError, match="not a TIMIT phone"):
        fold_timit_phones(["sh", "xx"])
