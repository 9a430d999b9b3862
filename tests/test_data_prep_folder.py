"""data_prep/folder.py: any tree of audio files with same-named .txt transcripts."""

from __future__ import annotations

import pytest
from asr_fixtures import prep, write_audio

from speechdraw.asr.manifest import read_manifest, validate_manifest

folder = prep("folder")


def test_pairs_audio_with_transcripts(tmp_path, capsys):
    root = tmp_path / "recordings"
    write_audio(root / "alice" / "one.wav", 1.0, 44_100, channels=2)
    (root / "alice" / "one.txt").write_text("Hello, World!\n")
    write_audio(root / "bob" / "deep" / "two.flac", 0.5)
    (root / "bob" / "deep" / "two.txt").write_text("It's 5 o'clock.")
    write_audio(root / "bob" / "three.ogg", 0.75, 48_000, fmt="OGG")
    (root / "bob" / "three.txt").write_text("Third one")
    write_audio(root / "bob" / "orphan.wav", 0.5)  # no transcript
    write_audio(root / "bob" / "blank.wav", 0.5)
    (root / "bob" / "blank.txt").write_text("  ...  ")  # nothing left after normalising
    (root / "notes.txt").write_text("a text file without audio is ignored")

    out = tmp_path / "mine.jsonl"
    assert folder.main(["--root", str(root), "--out", str(out), "--speaker-from-dir"]) == 0
    entries = read_manifest(out)
    assert [(e.extra["id"], e.text, e.speaker) for e in entries] == [
        ("one", "hello world", "alice"), ("two", "it's five o'clock", "deep"), ("three", "third one", "bob")]
    assert [round(e.duration, 2) for e in entries] == [1.0, 0.5, 0.75]
    assert validate_manifest(out).ok
    captured = capsys.readouterr()
    assert "3 utterances" in captured.out and "2 skipped" in captured.out
    assert "orphan.wav: no orphan.txt" in captured.err and "blank.wav: empty transcript" in captured.err

    assert folder.main(["--root", str(root), "--out", str(out)]) == 0
    assert read_manifest(out)[0].speaker is None


def test_empty_folder_fails(tmp_path):
    (tmp_path / "empty").mkdir()
    assert folder.main(["--root", str(tmp_path / "empty"), "--out", str(tmp_path / "x.jsonl")]) == 1


@pytest.mark.parametrize("script", ["text_corpus", "synth_speech", "librispeech", "timit", "ljspeech", "commonvoice",
                                    "folder", "validate_manifest"])  # fmt: skip
def test_every_script_documents_its_command_and_defaults(script, capsys):
    module = prep(script)
    assert f"python data_prep/{script}.py" in module.__doc__
    with pytest.raises(SystemExit) as e:
        module.main(["--help"])
    assert e.value.code == 0
    assert "(default: " in capsys.readouterr().out
