"""Media files libsndfile cannot read (speechdraw/asr/media.py, through PyAV): m4a (AAC), MP4 with a video track,
WebM/Opus and WMA, written here with PyAV's encoders. Whole-file and streamed decoding agree; the signal survives;
a 30-minute AAC file streams in bounded memory; bad files fail by name; real speech in these containers is
transcribed by the command, next to a file neither decoder reads."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from asr_fixtures import chirp
from asr_recipe_fixtures import needs_espeak
from conftest import run_script
from transcribe_fixtures import SR, noise

from speechdraw.asr.audio import AudioError, audio_info, load_audio, resample
from speechdraw.asr.media import MediaFile
from speechdraw.asr.metrics import ErrorRates
from speechdraw.asr.stream import stream_audio
from speechdraw.asr.transcribe_cmd import collect_inputs


def encode(path: Path, blocks, sr: int, codec: str, *, channels: int = 1, fmt: str | None = None,
           bit_rate: int | None = None, video: str | None = None) -> Path:
    """Encode (n,) or (n, C) float32 blocks at `sr` with PyAV, with a 10 fps noise video track if `video` names a
    codec. Blocks are encoded as they come (a long file never lives in memory)."""
    layout = "mono" if channels == 1 else "stereo"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format=fmt) as out:
        a = out.add_stream(codec, rate=sr, layout=layout)
        if bit_rate:
            a.bit_rate = bit_rate
        v = None
        if video:
            v = out.add_stream(video, rate=10)
            v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        pts, frames = 0, 0
        for block in blocks:
            block = np.asarray(block, np.float32).reshape(len(block), channels)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block.T), format="fltp", layout=layout)
            frame.sample_rate, frame.pts = sr, pts
            pts += len(block)
            for p in a.encode(frame):
                out.mux(p)
            while v is not None and frames / 10 < pts / sr:
                image = av.VideoFrame.from_ndarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), format="rgb24")
                image.pts = frames
                frames += 1
                for p in v.encode(image):
                    out.mux(p)
        for p in a.encode(None):
            out.mux(p)
        if v is not None:
            for p in v.encode(None):
                out.mux(p)
    return path


def peak_hz(x: np.ndarray) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(x * np.hanning(len(x))))) * SR / len(x))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def blocks_of(x: np.ndarray, n: int = 4096):
    return [x[i:i + n] for i in range(0, len(x), n)]


# name -> (codec, container format or None, rate, channels, bit rate, video codec)
MEDIA = {
    "aac.m4a": ("aac", None, 44_100, 2, 96_000, None),
    "video.mp4": ("aac", None, 48_000, 1, 64_000, "h264"),
    "opus.webm": ("libopus", None, 48_000, 1, 48_000, None),
    "speech.wma": ("wmav2", "asf", 22_050, 1, 48_000, None),
}


@pytest.mark.parametrize("name", list(MEDIA))
def test_decodes_what_libsndfile_cannot(tmp_path, name):
    codec, fmt, sr, channels, bit_rate, video = MEDIA[name]
    x = chirp(3.0, sr)  # (T,) 200 -> 2000 Hz sweep
    data = np.stack([x, 0.5 * x], axis=1) if channels == 2 else x
    path = encode(tmp_path / name, blocks_of(data), sr, codec, channels=channels, fmt=fmt, bit_rate=bit_rate,
                  video=video)
    with pytest.raises(sf.LibsndfileError):
        sf.info(str(path))  # the FFmpeg path is the one under test
    with av.open(str(path)) as c:
        assert {s.type for s in c.streams} == ({"audio", "video"} if video else {"audio"})
    info = audio_info(path)
    assert info.sample_rate == sr and info.channels == channels and abs(info.duration - 3.0) < 0.05
    wave = load_audio(path).numpy()  # (T,) 16 kHz mono
    ref = resample(torch.from_numpy(x * (0.75 if channels == 2 else 1.0)), sr, SR).numpy()
    assert abs(len(wave) - len(ref)) < 0.05 * SR
    # The sweep survives the lossy codec, in place (the decoders drop the encoder's priming samples): the peak
    # frequency of every 0.2 s window follows the reference's (WMA keeps the spectrum but not the waveform's phase).
    for a in range(1600, min(len(wave), len(ref)) - 4800, 3200):
        assert abs(peak_hz(wave[a:a + 3200]) - peak_hz(ref[a:a + 3200])) <= 40, a
        assert 0.8 < rms(wave[a:a + 3200]) / rms(ref[a:a + 3200]) < 1.2, a
    # Streamed blocks (any size) are the whole-file decoding, and a segment is its slice.
    for block_seconds in (0.7, 30.0):
        got = np.concatenate(list(stream_audio(path, block_seconds=block_seconds)))
        assert got.shape == wave.shape and np.abs(got - wave).max() < 1e-5
    seg = load_audio(path, offset=1.0, duration=0.5).numpy()
    whole_at_sr = load_audio(path, sample_rate=sr).numpy()
    assert np.abs(load_audio(path, sample_rate=sr, offset=1.0, duration=0.5).numpy()
                  - whole_at_sr[sr:sr + sr // 2]).max() < 1e-6
    assert abs(len(seg) - 8000) <= 1


def test_bad_media_fail_by_name(tmp_path):
    good = encode(tmp_path / "good.m4a", blocks_of(chirp(2.0, 16_000)), 16_000, "aac")
    (tmp_path / "truncated.m4a").write_bytes(good.read_bytes()[: good.stat().st_size // 3])  # no index: unreadable
    (tmp_path / "junk.webm").write_bytes(b"not a media file at all " * 100)
    silent_video = tmp_path / "silent.mp4"
    with av.open(str(silent_video), "w") as out:
        v = out.add_stream("mpeg4", rate=10)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        for i in range(10):
            f = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            f.pts = i
            for p in v.encode(f):
                out.mux(p)
        for p in v.encode(None):
            out.mux(p)
    for name, reason in [("truncated.m4a", "unreadable audio"), ("junk.webm", "unreadable audio"),
                         ("silent.mp4", "no audio stream (mov,mp4,m4a,3gp,3g2,mj2: video)")]:
        for read in (audio_info, load_audio, lambda p: list(stream_audio(p))):
            with pytest.raises(AudioError) as e:
                read(tmp_path / name)
            assert e.value.path == str(tmp_path / name) and e.value.reason.startswith(reason), e.value.reason
    with pytest.raises(AudioError, match="no audio stream"):
        MediaFile(silent_video)


def test_directory_search_finds_media(tmp_path):
    for name in ["a.m4a", "b.MP4", "c.webm", "d.wma", "e.wav", "f.txt", "g.png"]:
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in collect_inputs([str(tmp_path)])] == ["a.m4a", "b.MP4", "c.webm", "d.wma", "e.wav"]


def test_thirty_minutes_of_aac_stream_in_bounded_memory(tmp_path):
    """Peak RSS growth after a warm-up in one process, as the transcription memory test measures it: streaming 30
    minutes of AAC raises the peak by at most 30 MB; decoding it whole (the 30 minutes as float32 at 16 kHz: 115 MB)
    raises it by more than 100 MB, so the bound tells the two apart. The file is a tone every minute in low-bitrate
    silence: seconds to encode and decode."""
    rng = np.random.default_rng(0)
    tone = chirp(1.0, SR)

    def minutes(n: int):
        for _ in range(n):
            yield np.concatenate([tone, noise(59 * SR, rng)])

    warm, long = tmp_path / "warm.m4a", tmp_path / "long.m4a"
    encode(warm, minutes(1), SR, "aac", bit_rate=24_000)
    encode(long, minutes(30), SR, "aac", bit_rate=24_000)
    # ru_maxrss cannot be used here: importing torch peaks far above what the process then holds, hiding what comes
    # after. Linux resets the peak (VmHWM) on writing 5 to /proc/self/clear_refs: the peak is taken from there.
    code = ("import sys, numpy as np; from speechdraw.asr.stream import stream_audio; "
            "from speechdraw.asr.audio import load_audio; "
            "kib = lambda key: int(next(l for l in open('/proc/self/status') if l.startswith(key)).split()[1]); "
            "reset = lambda: open('/proc/self/clear_refs', 'w').write('5'); "
            "n = sum(len(b) for b in stream_audio(sys.argv[1])); reset(); before = kib('VmRSS'); "
            "blocks = [(len(b), float(np.abs(b).max())) for b in stream_audio(sys.argv[2])]; streamed = kib('VmHWM'); "
            "reset(); w = load_audio(sys.argv[2]); whole = kib('VmHWM'); "
            "print(before, streamed, whole, sum(b[0] for b in blocks), len(w), sum(b[1] > 0.3 for b in blocks))")
    out = [int(v) for v in run_script(["-c", code, str(warm), str(long)], timeout=120).stdout.split()]
    before, streamed, whole, samples, whole_samples, loud_blocks = out
    print(f"peak RSS +{(streamed - before) / 1024:.1f} MB streaming 30 min of AAC, "
          f"+{(whole - before) / 1024:.1f} MB decoding it whole")
    assert abs(samples - 1800 * SR) < 0.1 * SR and samples == whole_samples
    assert loud_blocks == 30  # one tone per 30-second block with a minute's start in it: the content is there
    assert streamed - before <= 30 * 1024, (before, streamed)
    assert whole - before > 100 * 1024, (before, whole)


@needs_espeak
def test_transcribe_media_files_cli(release, pieces, tmp_path):
    """Real speech in m4a, an MP4 video and WebM/Opus, through the command, beside a file neither decoder reads."""
    src = tmp_path / "in"
    src.mkdir()
    cases = {"talk.m4a": (0, "aac", 44_100, None), "clip.mp4": (1, "aac", 48_000, "h264"),
             "voice.webm": (2, "libopus", 48_000, None)}
    for name, (i, codec, sr, video) in cases.items():
        x = np.concatenate([np.zeros(4000, np.float32), pieces[i].wave, np.zeros(4000, np.float32)])
        x = resample(torch.from_numpy(x + noise(len(x), np.random.default_rng(i))), SR, sr).numpy()
        encode(src / name, blocks_of(x), sr, codec, bit_rate=64_000, video=video)
    (src / "broken.m4a").write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(range(256)) * 4)
    out = tmp_path / "out"
    proc = run_script(["-m", "speechdraw", "transcribe", str(src), "--model", str(release), "--format", "json",
                       "--output-dir", str(out), "--device", "cpu"], check=False)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {src}/broken.m4a: unreadable audio"), proc.stderr
    assert "3 of 4 files transcribed, 1 failed" in proc.stderr
    for name, (i, *_) in cases.items():
        t = json.loads((out / f"{Path(name).stem}.json").read_text())
        r = ErrorRates.empty()
        r.add(pieces[i].text, t["text"])
        assert r.cer <= 0.15, (name, pieces[i].text, t["text"])
