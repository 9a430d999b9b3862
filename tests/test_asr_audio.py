"""Decoding, down-mixing, resampling, segments and errors (speechdraw/asr/audio.py), on files written here."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from asr_fixtures import chirp, write_audio

from speechdraw.asr.audio import AudioError, audio_info, load_audio


def peak_hz(wave: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.argmax(spectrum) * sample_rate / len(wave))


def test_resamples_stereo_44k_to_16k_mono(tmp_path):
    sr, seconds = 44_100, 1.0
    t = np.arange(int(sr * seconds)) / sr
    left = 0.6 * np.sin(2 * np.pi * 440 * t)
    sf.write(tmp_path / "a.wav", np.stack([left, np.zeros_like(left)], axis=1).astype(np.float32), sr)
    wave = load_audio(tmp_path / "a.wav")
    assert isinstance(wave, torch.Tensor) and wave.dtype == torch.float32 and wave.ndim == 1
    assert wave.shape[0] == 16_000
    assert abs(peak_hz(wave.numpy(), 16_000) - 440) < 2  # the tone survives resampling
    # Down-mix is the channel mean: a 0.6 sine in one channel and silence in the other gives a 0.3 sine.
    assert wave[1000:-1000].abs().max().item() == pytest.approx(0.3, abs=0.01)


def test_same_rate_is_bit_exact_and_segment_matches(tmp_path):
    written = write_audio(tmp_path / "c.flac", 2.0, 16_000, subtype="PCM_24")
    assert np.allclose(load_audio(tmp_path / "c.flac").numpy(), written, atol=1e-6)
    seg = load_audio(tmp_path / "c.flac", offset=0.5, duration=0.25).numpy()
    assert seg.shape == (4000,)
    assert np.allclose(seg, written[8000:12000], atol=1e-6)
    # A segment running past the end is cut at the end, not padded.
    assert load_audio(tmp_path / "c.flac", offset=1.9, duration=5.0).shape == (1600,)


@pytest.mark.parametrize("fmt, ext, sr", [("NIST", "wav", 16_000), ("MP3", "mp3", 22_050), ("OGG", "ogg", 48_000)])
def test_other_containers(tmp_path, fmt, ext, sr):
    path = tmp_path / f"x.{ext}"
    sf.write(str(path), chirp(1.0, sr), sr, format=fmt)
    info = audio_info(path)
    assert info.sample_rate == sr and info.channels == 1
    wave = load_audio(path, sample_rate=8000)
    assert abs(wave.shape[0] - 8000) < 800  # MP3 adds encoder padding
    assert 0.2 < wave.abs().max().item() < 0.8


def test_errors_name_the_file_and_the_reason(tmp_path):
    with pytest.raises(AudioError, match="file not found") as e:
        load_audio(tmp_path / "missing.wav")
    assert e.value.path == str(tmp_path / "missing.wav") and e.value.reason == "file not found"

    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty file"):
        audio_info(tmp_path / "empty.wav")

    (tmp_path / "junk.flac").write_bytes(b"this is not audio at all" * 50)
    with pytest.raises(AudioError, match="unreadable audio"):
        load_audio(tmp_path / "junk.flac")

    sf.write(str(tmp_path / "silent.wav"), np.zeros((0,), dtype=np.float32), 16_000)
    with pytest.raises(AudioError, match="no samples"):
        load_audio(tmp_path / "silent.wav")

    write_audio(tmp_path / "short.wav", 1.0)
    with pytest.raises(AudioError, match="outside the file"):
        load_audio(tmp_path / "short.wav", offset=3.0)

    with pytest.raises(AudioError, match="not a regular file"):
        audio_info(tmp_path)
