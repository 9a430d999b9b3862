"""Manifest read/write and the validator's reports (speechdraw/asr/manifest.py, data_prep/validate_manifest.py)."""

from __future__ import annotations

import json

import pytest
from asr_fixtures import prep, write_audio

from speechdraw.asr.manifest import (
    BAD_DURATION,
    BAD_SYMBOLS,
    EMPTY_TEXT,
    MALFORMED,
    MISSING_AUDIO,
    UNREADABLE_AUDIO,
    ManifestEntry,
    ManifestError,
    drop_invalid,
    read_manifest,
    validate_manifest,
    write_manifest,
)
from speechdraw.asr.text import TokenSet


def test_roundtrip_relative_paths_extras_and_segments(tmp_path):
    corpus = tmp_path / "corpus"
    inside = corpus / "audio" / "a.flac"
    outside = tmp_path / "elsewhere" / "b.wav"
    write_audio(inside, 1.0)
    write_audio(outside, 3.0)
    entries = [
        ManifestEntry(audio=str(inside), duration=1.0, text="hello world", speaker="s1",
                      extra={"voice": "en-us", "speed": 160}),
        ManifestEntry(audio=str(outside), duration=1.5, text="a segment", offset=0.75),
    ]  # fmt: skip
    assert write_manifest(corpus / "train.jsonl", entries) == 2
    lines = [json.loads(x) for x in (corpus / "train.jsonl").read_text().splitlines()]
    assert lines[0] == {"audio": "audio/a.flac", "duration": 1.0, "text": "hello world", "speaker": "s1",
                        "voice": "en-us", "speed": 160}  # fmt: skip
    assert lines[1]["audio"] == str(outside) and lines[1]["offset"] == 0.75 and "speaker" not in lines[1]
    assert read_manifest(corpus / "train.jsonl") == entries

    # Relative paths follow the manifest: move the whole corpus folder and it still reads correctly.
    moved = tmp_path / "moved"
    corpus.rename(moved)
    again = read_manifest(moved / "train.jsonl")
    assert again[0].audio == str(moved / "audio" / "a.flac") and again[0].extra == {"voice": "en-us", "speed": 160}
    assert validate_manifest(moved / "train.jsonl").ok


def test_read_manifest_is_strict_and_names_the_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"audio": "a.wav", "duration": 1, "text": "x"}\n\n{"audio": "b.wav", "text": "y"}\n')
    with pytest.raises(ManifestError, match=r"m.jsonl:3: missing field 'duration'") as e:
        read_manifest(path)
    assert e.value.line == 3


def make_bad_manifest(tmp_path):
    """One line per problem; returns (manifest path, {line number: expected issue kind}) and the good line numbers."""
    write_audio(tmp_path / "good.wav", 1.0)
    write_audio(tmp_path / "long.flac", 4.0)
    (tmp_path / "junk.wav").write_bytes(b"RIFF but not really a wave file" * 20)
    lines = [
        {"audio": "good.wav", "duration": 1.0, "text": "fine"},                          # 1 ok
        {"audio": "nope.wav", "duration": 1.0, "text": "where"},                         # 2 missing audio
        {"audio": "junk.wav", "duration": 1.0, "text": "junk"},                          # 3 unreadable
        {"audio": "good.wav", "duration": 1.0, "text": "  "},                            # 4 empty transcript
        {"audio": "good.wav", "duration": 1.0, "text": "Hello, World 2"},                # 5 outside the token set
        "{not json",                                                                     # 6 malformed
        {"audio": "good.wav", "text": "no duration"},                                    # 7 malformed
        {"audio": "good.wav", "duration": 2.5, "text": "wrong length"},                  # 8 duration mismatch
        {"audio": "long.flac", "duration": 2.0, "offset": 3.0, "text": "past the end"},  # 9 segment past the end
        {"audio": "long.flac", "duration": 2.0, "offset": 1.0, "text": "a fine segment"},  # 10 ok
    ]  # fmt: skip
    path = tmp_path / "m.jsonl"
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    expected = {2: MISSING_AUDIO, 3: UNREADABLE_AUDIO, 4: EMPTY_TEXT, 5: BAD_SYMBOLS, 6: MALFORMED, 7: MALFORMED,
                8: BAD_DURATION, 9: BAD_DURATION}  # fmt: skip
    return path, expected, [1, 10]


def test_validator_reports_each_problem_by_line(tmp_path):
    path, expected, _ = make_bad_manifest(tmp_path)
    report = validate_manifest(path)
    assert {i.line: i.kind for i in report.issues} == expected
    assert report.lines == 10 and report.bad_lines == 8 and not report.ok
    assert [e.text for e in report.valid] == ["fine", "a fine segment"]
    messages = {i.line: i.message for i in report.issues}
    assert "'H'" in messages[5] and "','" in messages[5] and "'2'" in messages[5]
    assert "nope.wav" in messages[2] and "past the end" in messages[9]
    text = report.format()
    assert f"{path}:2: missing_audio:" in text and "10 lines, 8 with problems" in text

    # Without audio checks only the text and format problems remain.
    quick = validate_manifest(path, check_audio=False)
    assert {i.line for i in quick.issues} == {4, 5, 6, 7}


def test_validator_with_phone_tokens(tmp_path):
    write_audio(tmp_path / "a.wav", 1.0)
    path = tmp_path / "p.jsonl"
    write_manifest(path, [ManifestEntry(str(tmp_path / "a.wav"), 1.0, "sil dh ah sil"),
                          ManifestEntry(str(tmp_path / "a.wav"), 1.0, "sil ax h# sil")])  # fmt: skip
    report = validate_manifest(path, tokens=TokenSet.phonemes())
    assert [(i.line, i.kind) for i in report.issues] == [(2, BAD_SYMBOLS)] and "'ax'" in report.issues[0].message
    assert not validate_manifest(path).ok  # as characters, "sil dh ah sil" is fine but "h#" is not


def test_drop_invalid_keeps_only_good_lines(tmp_path):
    path, expected, good = make_bad_manifest(tmp_path)
    report = drop_invalid(path, tmp_path / "clean.jsonl")
    assert report.counts() == {MISSING_AUDIO: 1, UNREADABLE_AUDIO: 1, EMPTY_TEXT: 1, BAD_SYMBOLS: 1, MALFORMED: 2,
                               BAD_DURATION: 2}  # fmt: skip
    clean = read_manifest(tmp_path / "clean.jsonl")
    assert [e.text for e in clean] == ["fine", "a fine segment"] and clean[1].offset == 1.0
    assert validate_manifest(tmp_path / "clean.jsonl").ok


def test_cli_exit_codes_and_drop_in_place(tmp_path, capsys):
    cli = prep("validate_manifest")
    path, expected, _ = make_bad_manifest(tmp_path)
    assert cli.main([str(path)]) == 1
    out = capsys.readouterr().out
    for line, kind in expected.items():
        assert f"{path}:{line}: {kind}:" in out
    assert cli.main([str(path), "--drop"]) == 0
    assert "kept 2 of 10 lines, dropped 8" in capsys.readouterr().out
    assert len(read_manifest(path)) == 2 and cli.main([str(path)]) == 0
