"""Audio that libsndfile cannot read, through FFmpeg (PyAV): m4a/AAC, MP4/MOV/MKV/WebM video (its first audio track),
Opus or Vorbis in WebM/Matroska, WMA, AC-3, AMR, ...

    with MediaFile("talk.m4a") as f:            # what speechdraw.asr.audio.open_audio returns when soundfile fails
        f.samplerate, f.channels, f.frames       # frames: from the container's duration (an estimate for AAC)
        block = f.read(48_000)                   # (n, C) float32 at the stream's own rate, n <= 48000 (0 at the end)

PyAV was chosen over calling the ffmpeg program: its wheels bundle FFmpeg's libraries (no system install), and it
hands over decoded frames one packet at a time, so a file of any length is read in bounded memory, like the soundfile
path (speechdraw.asr.stream). Only the demuxer's packets of the audio track are decoded; a video track is skipped
without being decoded. Frames are converted to planar float at the first frame's rate and channel layout by FFmpeg's
own converter (a stream that changes rate or layout part-way is converted to the first ones); down-mixing and
resampling to the model's rate stay in speechdraw.asr.audio / stream, the same for both paths.

Every failure is an `AudioError(path, reason)` (speechdraw.asr.audio), as for files soundfile reads.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from speechdraw.asr.audio import AudioError


class MediaFile:
    """A soundfile.SoundFile-like reader over the first audio stream of `path` (samplerate, channels, frames,
    read(frames), context manager). Raises AudioError when FFmpeg cannot open the file or it has no audio stream."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._container = av.open(str(self.path))
        except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
            raise AudioError(self.path, f"unreadable media ({e})") from None
        if not self._container.streams.audio:
            kinds = sorted({s.type for s in self._container.streams}) or ["no streams"]
            self._container.close()
            raise AudioError(self.path, f"no audio stream ({self._container.format.name}: {', '.join(kinds)})")
        self._stream = self._container.streams.audio[0]
        self.samplerate = int(self._stream.codec_context.sample_rate or self._stream.rate or 0)
        self.channels = int(self._stream.codec_context.layout.nb_channels)
        self.format, self.subtype = f"FFMPEG:{self._container.format.name}", self._stream.codec_context.name
        seconds = None
        if self._stream.duration is not None and self._stream.time_base is not None:
            seconds = float(self._stream.duration * self._stream.time_base)
        elif self._container.duration is not None:
            seconds = self._container.duration / av.time_base
        self.frames = round(seconds * self.samplerate) if seconds else 0  # estimate from the header
        self._packets = self._container.demux(self._stream)
        self._resampler: av.AudioResampler | None = None
        self._pending: list[np.ndarray] = []  # decoded (n, C) float32 arrays not yet read
        self._pending_frames = 0
        self._done = False
        self.decoded = 0  # frames decoded so far
        self.pos = 0  # frames returned by read so far

    def __enter__(self) -> MediaFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def _convert(self, frame) -> None:
        if self._resampler is None:
            self.samplerate, self.channels = frame.sample_rate, frame.layout.nb_channels
            self._resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=frame.sample_rate)
        for out in self._resampler.resample(frame):
            x = out.to_ndarray().T  # (C, n) planar -> (n, C)
            if len(x):
                self._pending.append(np.ascontiguousarray(x, dtype=np.float32))
                self._pending_frames += len(x)
                self.decoded += len(x)

    def _decode_more(self) -> bool:
        """Decode the next packet(s) into _pending; False at the end of the stream."""
        if self._done:
            return False
        try:
            packet = next(self._packets)
            for frame in packet.decode():  # the demuxer's last, empty packet drains the decoder
                self._convert(frame)
        except StopIteration:
            if self._resampler is not None:
                for out in self._resampler.resample(None):
                    x = out.to_ndarray().T
                    self._pending.append(np.ascontiguousarray(x, dtype=np.float32))
                    self._pending_frames += len(x)
                    self.decoded += len(x)
            self._done = True
        except (av.error.FFmpegError, ValueError) as e:
            seconds = self.decoded / self.samplerate if self.samplerate else 0.0
            raise AudioError(self.path, f"decoding failed after {seconds:.2f}s ({e})") from None
        return True

    def seek(self, frame: int) -> int:
        """Move forward to `frame` by decoding and dropping what lies before it (exact, unlike seeking the container
        to a packet boundary); only forward, as load_audio needs."""
        if frame < self.pos:
            raise ValueError(f"MediaFile reads forward only (at frame {self.pos}, asked for {frame})")
        while self.pos < frame and len(self.read(min(frame - self.pos, 1 << 20))):
            pass
        return self.pos

    def unread(self, data: np.ndarray) -> None:
        """Put back the (n, C) frames the last read returned."""
        self._pending.insert(0, data)
        self._pending_frames += len(data)
        self.pos -= len(data)

    def read(self, frames: int = -1, dtype: str = "float32", always_2d: bool = True) -> np.ndarray:
        """Up to `frames` (all that is left for -1) frames as (n, C) float32; (0, C) at the end."""
        while (frames < 0 or self._pending_frames < frames) and self._decode_more():
            pass
        data = np.concatenate(self._pending) if self._pending else np.zeros((0, self.channels), np.float32)
        if 0 <= frames < len(data):
            data, rest = data[:frames], data[frames:]
            self._pending, self._pending_frames = [rest], len(rest)
        else:
            self._pending, self._pending_frames = [], 0
        self.pos += len(data)
        return data
