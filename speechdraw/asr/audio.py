"""Where an audio file gets opened: decode anything libsndfile reads (WAV, FLAC, OGG/Opus, MP3, NIST SPHERE, ...), and
through FFmpeg everything else it knows (m4a/AAC, a video's audio track, Opus in WebM, WMA, ...: speechdraw.asr.media),
to mono float32 at the model's sample rate.

    wave = load_audio("clip.mp3")                              # (T,) float32 at 16 kHz
    wave = load_audio("book.flac", offset=61.5, duration=9.0)  # one segment of a long file

`open_audio` is the one place that picks the decoder: soundfile for what libsndfile opens, PyAV when it cannot; a file
neither reads is reported with libsndfile's reason. Channels are averaged (down-mix), then the signal is resampled with
torchaudio's windowed-sinc resampler. Every failure (missing file, undecodable data, a file or segment with no samples)
raises `AudioError(path, reason)`, so callers such as the transcription command can name the bad file and carry on
with the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that return tensors: header-only users (the manifest validator, the data_prep
# scripts) then start in half a second instead of the several seconds `import torch` takes.

SAMPLE_RATE = 16_000  # what every model in speechdraw consumes


class AudioError(Exception):
    """An audio file that cannot be used, and why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    frames: int  # per channel
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(path, "file not found")
    if not path.is_file():
        raise AudioError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")


def open_audio(path: str | Path):
    """An open reader over `path` with soundfile.SoundFile's interface (samplerate, channels, frames, format, subtype,
    read(frames, dtype, always_2d), context manager): a SoundFile for what libsndfile reads, else a MediaFile (FFmpeg
    through PyAV). Raises AudioError naming the file when neither reads it, or FFmpeg finds no audio in it."""
    path = Path(path)
    _check_file(path)
    try:
        return sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        sf_error = e
    from speechdraw.asr.media import MediaFile

    try:
        f = MediaFile(path)
    except AudioError as e:
        if e.reason.startswith("no audio stream"):
            raise
        raise AudioError(path, f"unreadable audio ({sf_error})") from None
    if len(first := f.read(1)) == 0:  # FFmpeg took it for a format but found nothing to decode: junk
        f.close()
        raise AudioError(path, f"unreadable audio ({sf_error})")
    f.unread(first)
    return f


def audio_info(path: str | Path) -> AudioInfo:
    """Read the header only (cheap); raises AudioError for missing, unreadable or sample-less files. For files read
    through FFmpeg, frames come from the container's duration (an estimate for some codecs, such as AAC)."""
    with open_audio(path) as f:
        info = AudioInfo(sample_rate=int(f.samplerate), frames=int(f.frames), channels=int(f.channels))
    if info.frames <= 0 or info.sample_rate <= 0:
        raise AudioError(path, "no samples")
    return info


def resample(wave: torch.Tensor, orig_sr: int, target_sr: int) -> torch.Tensor:
    """(..., T) at orig_sr -> (..., T') at target_sr, T' = ceil(T * target_sr / orig_sr)."""
    if orig_sr == target_sr:
        return wave
    import torchaudio.functional as AF

    return AF.resample(wave, orig_sr, target_sr)


def load_audio(
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    offset: float = 0.0,
    duration: float | None = None,
) -> torch.Tensor:
    """Decode `path` (or the segment [offset, offset + duration) seconds of it) to a (T,) float32 tensor at
    `sample_rate`, channels averaged."""
    path = Path(path)
    info = audio_info(path)
    start = int(round(offset * info.sample_rate))
    if offset < 0 or start >= info.frames:
        raise AudioError(path, f"offset {offset:.3f}s is outside the file ({info.duration:.3f}s long)")
    stop = None if duration is None else start + int(math.ceil(duration * info.sample_rate))  # read stops at the end
    with open_audio(path) as f:
        sr = f.samplerate
        try:
            f.seek(start)
            data = f.read(-1 if stop is None else stop - start, dtype="float32", always_2d=True)  # (T, C)
        except (sf.LibsndfileError, RuntimeError, TypeError) as e:
            raise AudioError(path, f"unreadable audio ({e})") from None
    if data.shape[0] == 0:
        raise AudioError(path, "no samples" if start == 0 and duration is None else "no samples in the segment")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]  # (T,)
    if not np.isfinite(mono).all():
        raise AudioError(path, "non-finite samples (NaN or Inf)")
    import torch

    return resample(torch.from_numpy(np.ascontiguousarray(mono)), int(sr), sample_rate)
