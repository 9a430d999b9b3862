"""Block-wise reading of audio files: the blocks together equal decoding the whole file (load_audio), at any rate,
sample format and channel count, whatever the block size; bad files fail by name with the reason."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from asr_fixtures import write_audio

from speechdraw.asr import stream
from speechdraw.asr.audio import AudioError, load_audio
from speechdraw.asr.stream import stream_array, stream_audio


@pytest.mark.parametrize("sr,subtype,channels,fmt", [
    (16_000, "PCM_16", 1, "WAV"), (8_000, "PCM_U8", 1, "WAV"), (48_000, "PCM_24", 2, "WAV"),
    (44_100, "FLOAT", 1, "WAV"), (22_050, "PCM_16", 1, "FLAC"), (32_000, "VORBIS", 1, "OGG"),
    (24_000, "MPEG_LAYER_III", 2, "MP3"),
])  # fmt: skip
def test_blocks_equal_whole_file(tmp_path, sr, subtype, channels, fmt):
    path = tmp_path / f"a.{fmt.lower()}"
    write_audio(path, 5.37, sr, fmt=fmt, subtype=subtype, channels=channels)
    whole = load_audio(path).numpy()  # (T,) 16 kHz
    for block_seconds in (0.7, 2.0, 30.0):
        blocks = list(stream_audio(path, block_seconds=block_seconds))
        size = round(block_seconds * 16_000)  # every rate here has a whole number of periods in these blocks
        assert [len(b) for b in blocks[:-1]] == [size] * (len(blocks) - 1) and 0 < len(blocks[-1]) <= size
        assert len(blocks) == -(-len(whole) // size)
        got = np.concatenate(blocks)
        assert got.dtype == np.float32 and got.shape == whole.shape
        tol = 1e-4 if fmt == "MP3" else 1e-5  # MP3 goes through 16-bit integers (see stream.py)
        assert np.abs(got - whole).max() < tol, (block_seconds, np.abs(got - whole).max())


@pytest.mark.parametrize("sr,subtype,fmt", [(16_000, "PCM_16", "WAV"), (22_050, "PCM_24", "FLAC"),
                                            (32_000, "VORBIS", "OGG"), (24_000, "MPEG_LAYER_III", "MP3"),
                                            (44_100, "MPEG_LAYER_III", "MP3")])
def test_probe_tells_which_files_must_be_decoded_whole(tmp_path, monkeypatch, sr, subtype, fmt):
    """reads_in_parts agrees with reading a real file in parts and in one go (libsndfile 1.2.2 gets MP3 wrong after
    the first read; a fixed libsndfile makes both sides True), and stream_audio decodes whole exactly those files."""
    path = tmp_path / f"a.{fmt.lower()}"
    write_audio(path, 3.0, sr, fmt=fmt, subtype=subtype)
    whole, _ = sf.read(str(path), dtype="float32")
    with sf.SoundFile(str(path)) as f:
        parts = np.concatenate([f.read(8000, dtype="float32") for _ in range(-(-len(whole) // 8000) + 1)])
    in_parts = parts.shape == whole.shape and np.array_equal(parts, whole)
    assert stream.reads_in_parts(fmt, subtype, sr) == in_parts
    opened = []

    class Spy(stream._WholeFile):
        def __init__(self, f, p):
            opened.append(p)
            super().__init__(f, p)

    monkeypatch.setattr(stream, "_WholeFile", Spy)
    list(stream_audio(path, block_seconds=1.0))
    assert opened == ([] if in_parts else [path])


def test_whole_file_fallback_gives_the_same_blocks(tmp_path, monkeypatch):
    """The fallback path (decode whole, then stream from memory), taken here for formats that read fine in parts,
    gives the blocks the streaming path gives."""
    for sr, fmt, subtype in [(16_000, "WAV", "PCM_16"), (48_000, "FLAC", "PCM_16")]:
        path = tmp_path / f"a.{fmt.lower()}"
        write_audio(path, 4.1, sr, fmt=fmt, subtype=subtype, channels=2)
        streamed = list(stream_audio(path, block_seconds=0.7))
        monkeypatch.setattr(stream, "reads_in_parts", lambda *a: False)
        whole = list(stream_audio(path, block_seconds=0.7))
        monkeypatch.undo()
        assert [len(b) for b in whole] == [len(b) for b in streamed]
        assert np.abs(np.concatenate(whole) - np.concatenate(streamed)).max() < 1e-6


def test_array_stream_matches_file(tmp_path):
    data = write_audio(tmp_path / "s.wav", 3.0, 48_000, subtype="FLOAT", channels=2)  # (T, 2)
    got = np.concatenate(list(stream_array(data, 48_000, block_seconds=1.0)))
    assert np.abs(got - load_audio(tmp_path / "s.wav").numpy()).max() < 1e-6


def test_bad_files_fail_by_name(tmp_path):
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" * 40)
    (tmp_path / "empty.wav").write_bytes(b"")
    write_audio(tmp_path / "none.wav", 0.0)
    for name, reason in [("corrupt.wav", "unreadable audio"), ("empty.wav", "empty file"), ("none.wav", "no samples"),
                         ("missing.wav", "file not found")]:
        with pytest.raises(AudioError) as e:
            list(stream_audio(tmp_path / name))
        assert e.value.path.endswith(name) and reason in e.value.reason
