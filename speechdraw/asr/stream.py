"""Read an audio file of any length as a stream of mono float32 blocks at the model's sample rate, in bounded memory.

    for block in stream_audio("book.mp3", block_seconds=30):   # (S,) float32 at 16 kHz each
        ...

Whole-file decoding (`speechdraw.asr.audio.load_audio`) holds the file in memory; this reads it block by block (with
soundfile, or FFmpeg through PyAV for what libsndfile cannot read: `speechdraw.asr.audio.open_audio`), averages the
channels and resamples each block with the same windowed-sinc resampler, given enough input on both sides of the block
that the output equals resampling the whole file (the resampler's kernel spans a few dozen input samples; a block
boundary falls on a whole period of the rate ratio, so every block starts on an output sample). Memory is a few
blocks, however long the file, in both paths (FFmpeg decodes one packet at a time).

Some libsndfile builds decode a format correctly only in a single read: with libsndfile 1.2.2 (the one bundled with
soundfile 0.14 here), every read of an MP3 after the first returns wrong samples. Whether the libsndfile in use has
such a bug is found out at run time, once per format, subtype and rate (`reads_in_parts`: a one-second file written in
memory and read both ways). A file the probe says cannot be read in parts is decoded whole, as 16-bit integers (2 bytes
per sample and channel: about 300 MB for an hour of 44.1 kHz stereo), and then streamed from memory; convert very long
MP3s to FLAC for bounded memory with such a libsndfile.
"""

from __future__ import annotations

import functools
import io
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf

from speechdraw.asr.audio import SAMPLE_RATE, AudioError, open_audio, resample


def _resample_np(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    if orig_sr == target_sr:
        return x
    import torch

    return resample(torch.from_numpy(np.ascontiguousarray(x)), orig_sr, target_sr).numpy()


@contextmanager
def quiet_stderr():
    """Silence file descriptor 2: C libraries (libsndfile/mpg123 while the probe makes them fail, KenLM's loading bar
    in beam.py) print to it directly; errors still arrive as exceptions. A no-op where fd 2 cannot be duplicated."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@functools.cache
def reads_in_parts(fmt: str, subtype: str, sample_rate: int) -> bool:
    """Whether this libsndfile decodes `fmt`/`subtype` audio at `sample_rate` correctly when it is read in several
    parts: a second of a tone in noise, written in memory, read in one go and in 3000-frame parts, must give the same
    samples. A combination libsndfile cannot write cannot be probed and is taken to read correctly."""
    rng = np.random.default_rng(0)
    t = np.arange(sample_rate) / sample_rate
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(sample_rate)).astype(np.float32)
    buf = io.BytesIO()
    try:
        sf.write(buf, x, sample_rate, format=fmt, subtype=subtype)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return True
    with quiet_stderr():
        buf.seek(0)
        whole = sf.read(buf, dtype="float32")[0]
        buf.seek(0)
        with sf.SoundFile(buf) as f:
            parts = np.concatenate([f.read(3000, dtype="float32") for _ in range(-(-len(whole) // 3000) + 1)])
    return parts.shape == whole.shape and bool(np.array_equal(parts, whole))


class _WholeFile:
    """A SoundFile-like reader over a file decoded in one read (int16), for formats that cannot be read in parts."""

    def __init__(self, f: sf.SoundFile, path: Path):
        with f:
            try:
                self.data = f.read(dtype="int16", always_2d=True)  # (T, C)
            except (sf.LibsndfileError, RuntimeError) as e:
                raise AudioError(path, f"unreadable audio ({e})") from None
        self.pos = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.data = None

    def read(self, frames: int, dtype: str = "float32", always_2d: bool = True) -> np.ndarray:
        out = self.data[self.pos:self.pos + frames].astype(np.float32) / 32768.0
        self.pos += len(out)
        return out


def stream_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, block_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """Yield consecutive (S,) float32 blocks of `path`, channels averaged, resampled to `sample_rate`; together they
    are the whole file. Raises AudioError (naming the file) for missing, empty, undecodable or sample-less files, and
    for non-finite samples or decoding errors met part-way through."""
    path = Path(path)
    f = open_audio(path)  # soundfile, or FFmpeg through PyAV for what libsndfile cannot read (speechdraw.asr.media)
    sr = f.samplerate
    g = math.gcd(sr, sample_rate)
    unit_in, unit_out = sr // g, sample_rate // g  # unit_in input samples <-> unit_out output samples, exactly
    block = max(1, round(block_seconds * sr / unit_in)) * unit_in
    # torchaudio's kernel reaches lowpass_filter_width (6) / rolloff (0.99) periods of the lower rate on each side.
    reach = math.ceil(8 * sr / min(sr, sample_rate)) + 8
    pad = math.ceil(reach / unit_in) * unit_in if sr != sample_rate else 0

    if isinstance(f, sf.SoundFile) and not reads_in_parts(f.format, f.subtype, f.samplerate):
        f = _WholeFile(f, path)
    with f:
        buf = np.zeros(0, dtype=np.float32)  # raw mono samples from buf_start
        buf_start = 0
        pos = 0  # first input sample of the next block
        eof = False
        total = 0
        while True:
            while not eof and buf_start + len(buf) < pos + block + pad:
                try:
                    data = f.read(block, dtype="float32", always_2d=True)  # (n, C)
                except (sf.LibsndfileError, RuntimeError) as e:
                    raise AudioError(path, f"decoding failed after {total / sr:.2f}s ({e})") from None
                if len(data) == 0:
                    eof = True
                    break
                mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
                if not np.isfinite(mono).all():
                    raise AudioError(path, f"non-finite samples (NaN or Inf) after {total / sr:.2f}s")
                total += len(mono)
                buf = np.concatenate([buf, mono.astype(np.float32, copy=False)])
            end = buf_start + len(buf)
            if pos >= end:
                if total == 0:
                    raise AudioError(path, "no samples")
                return
            stop = min(pos + block, end)
            lo = max(buf_start, pos - pad)
            hi = min(end, stop + pad)
            out = _resample_np(buf[lo - buf_start:hi - buf_start], sr, sample_rate)
            first = (pos - lo) // unit_in * unit_out
            if stop == end and eof:  # the last block: as many samples as resampling the whole file gives
                n = math.ceil(total * unit_out / unit_in) - pos // unit_in * unit_out
            else:
                n = (stop - pos) // unit_in * unit_out
            yield np.ascontiguousarray(out[first:first + n], dtype=np.float32)
            pos = stop
            keep_from = max(buf_start, pos - pad)
            buf = buf[keep_from - buf_start:]
            buf_start = keep_from


def stream_array(wave: np.ndarray, sample_rate: int, target_rate: int = SAMPLE_RATE,
                 block_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """The same blocks from an in-memory (S,) or (S, C) array (channels averaged, resampled whole)."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    if wave.ndim != 1:
        raise ValueError(f"expected (S,) or (S, C) samples, got shape {wave.shape}")
    wave = _resample_np(wave, sample_rate, target_rate)
    step = max(1, int(block_seconds * target_rate))
    for i in range(0, len(wave), step):
        yield wave[i:i + step]
