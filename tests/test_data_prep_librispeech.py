"""data_prep/librispeech.py on a miniature LibriSpeech tree in the real layout, with real FLAC files."""

from __future__ import annotations

import pytest
from asr_fixtures import prep, write_audio

from speechdraw.asr.manifest import read_manifest, validate_manifest

librispeech = prep("librispeech")

CHAPTERS = {  # (subset, speaker, chapter): [(utterance number, transcript as LibriSpeech writes it, seconds)]
    ("dev-clean", "84", "121123"): [(0, "GO DO YOU HEAR", 1.2),
                                    (1, "BUT IN LESS THAN FIVE MINUTES THE STAIRCASE", 2.0)],
    ("dev-clean", "174", "50561"): [(2, "FORGOTTEN TOO THE NAME OF GILLIAN THE LOVELY CAPTIVE", 1.5)],
    ("test-clean", "1089", "134686"): [(0, "HE HOPED THERE WOULD BE STEW FOR DINNER", 0.8)],
}


@pytest.fixture
def root(tmp_path):
    for (subset, speaker, chapter), utts in CHAPTERS.items():
        chapter_dir = tmp_path / "corpora" / "LibriSpeech" / subset / speaker / chapter
        lines = []
        for n, text, seconds in utts:
            utt_id = f"{speaker}-{chapter}-{n:04d}"
            write_audio(chapter_dir / f"{utt_id}.flac", seconds)
            lines.append(f"{utt_id} {text}\n")
        (chapter_dir / f"{speaker}-{chapter}.trans.txt").write_text("".join(lines))
    return tmp_path / "corpora"


def test_manifests_per_subset(root, tmp_path, capsys):
    out = tmp_path / "out"
    assert librispeech.main(["--root", str(root), "--out", str(out), "--subsets", "dev-clean", "test-clean"]) == 0
    dev = read_manifest(out / "dev-clean.jsonl")
    assert [e.extra["id"] for e in dev] == ["174-50561-0002", "84-121123-0000", "84-121123-0001"]
    first = dev[1]
    assert first.text == "go do you hear" and first.speaker == "84" and first.duration == pytest.approx(1.2)
    assert first.audio.endswith("LibriSpeech/dev-clean/84/121123/84-121123-0000.flac")
    test = read_manifest(out / "test-clean.jsonl")
    assert [e.text for e in test] == ["he hoped there would be stew for dinner"]
    assert validate_manifest(out / "dev-clean.jsonl").ok and validate_manifest(out / "test-clean.jsonl").ok
    assert "dev-clean.jsonl: 3 utterances" in capsys.readouterr().out


def test_missing_audio_is_skipped_and_counted(root, tmp_path, capsys):
    (root / "LibriSpeech" / "dev-clean" / "84" / "121123" / "84-121123-0001.flac").unlink()
    assert librispeech.main(["--root", str(root / "LibriSpeech"), "--out", str(tmp_path / "o"),
                             "--subsets", "dev-clean"]) == 0  # fmt: skip
    assert len(read_manifest(tmp_path / "o" / "dev-clean.jsonl")) == 2
    assert "2 utterances, 0.00 h, 1 skipped" in capsys.readouterr().out


def test_absent_subset_is_an_error(root, tmp_path):
    with pytest.raises(FileNotFoundError, match="train-clean-100"):
        librispeech.main(["--root", str(root), "--out", str(tmp_path / "o"), "--subsets", "train-clean-100"])
