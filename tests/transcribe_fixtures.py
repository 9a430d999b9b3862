"""Speech for the transcription tests: the ASR test sentences spoken by one espeak-ng voice, trimmed to their speech,
then (a) a training corpus where each sentence sits in a few random amounts of silence, so the tiny model learns the
sentences and not where they sit in the file, and (b) long files of those sentences separated by pauses, written block
by block (a 20-minute file never lives in memory), with the known start of every piece.

A faint noise floor (-60 dBFS) runs under everything, as in a real recording."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from asr_fixtures import prep
from asr_recipe_fixtures import SENTENCES

from speechdraw.asr.audio import resample
from speechdraw.asr.manifest import ManifestEntry, write_manifest

SR = 16_000
NOISE = 1e-3  # RMS of the noise floor: -60 dBFS


@dataclass
class Piece:
    text: str
    wave: np.ndarray  # (S,) float32 at 16 kHz, speech only (silence trimmed)


@dataclass
class Placed:
    text: str
    start: float  # seconds: where the piece's speech starts in the long file
    end: float
    noise: tuple[float, float] | None = None  # seconds: a span of the piece replaced by noise


def trim(wave: np.ndarray, floor_db: float = -55.0, frame: int = 160) -> np.ndarray:
    n = len(wave) // frame
    db = 10 * np.log10(np.maximum(np.square(wave[:n * frame]).reshape(n, frame).mean(1), 1e-10))
    speech = np.flatnonzero(db > floor_db)
    return wave[speech[0] * frame:(speech[-1] + 1) * frame]


def speak_pieces(tmp: Path, sentences: list[str] = SENTENCES) -> list[Piece]:
    synth = prep("synth_speech")
    tmp.mkdir(parents=True, exist_ok=True)
    pieces = []
    for i, text in enumerate(sentences):
        utt = synth.Utterance(f"piece-{i}", "test", text, "en-us", "m3", 170, 50)
        samples, sr = synth.speak(utt, tmp / f"tmp-{i}.wav")
        wave = resample(torch.from_numpy(samples), sr, SR).numpy()
        pieces.append(Piece(text, trim(wave)))
    return pieces


def noise(n: int, rng: np.random.Generator, rms: float = NOISE) -> np.ndarray:
    return (rng.standard_normal(n) * rms).astype(np.float32)


def padded_corpus(out: Path, pieces: list[Piece], copies: int = 3, seed: int = 0) -> Path:
    """Each piece `copies` times with 0.05-0.45 s of (noise-floor) silence before and after; returns the manifest."""
    rng = np.random.default_rng(seed)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    entries = []
    for c in range(copies):
        for i, p in enumerate(pieces):
            lead, trail = (int(rng.uniform(0.05, 0.45) * SR) for _ in range(2))
            wave = np.concatenate([np.zeros(lead, np.float32), p.wave, np.zeros(trail, np.float32)])
            wave = wave + noise(len(wave), rng)
            path = out / "audio" / f"{c}-{i:03d}.flac"
            sf.write(str(path), wave, SR)
            entries.append(ManifestEntry(str(path), len(wave) / SR, p.text, speaker="en-us+m3"))
    manifest = out / "train.jsonl"
    write_manifest(manifest, entries)
    return manifest


def long_file(path: Path, pieces: list[Piece], seconds: float, *, seed: int = 0, gap: tuple[float, float] = (0.6, 1.6),
              noise_every: int = 0, noise_span: float = 0.3, subtype: str = "PCM_16") -> list[Placed]:
    """Pieces (cycled, in order) separated by random pauses, until `seconds`; written block by block. In every
    `noise_every`-th piece, `noise_span` seconds from its middle are replaced by white noise as loud as the piece.
    Returns where each whole piece was placed."""
    rng = np.random.default_rng(seed)
    placed, pos, total, i = [], 0, int(seconds * SR), 0
    with sf.SoundFile(str(path), "w", SR, 1, subtype=subtype) as f:
        while True:
            silence = int(rng.uniform(*gap) * SR)
            p = pieces[i % len(pieces)]
            speech = p.wave.copy()
            span = None
            if noise_every and i % noise_every == noise_every - 1:
                a = len(speech) // 2 - int(noise_span * SR / 2)
                b = a + int(noise_span * SR)
                speech[a:b] = noise(b - a, rng, float(np.sqrt(np.mean(p.wave**2))))
                span = ((pos + silence + a) / SR, (pos + silence + b) / SR)
            block = np.concatenate([np.zeros(silence, np.float32), speech])
            if pos + len(block) > total:
                block = np.zeros(total - pos, np.float32)
            else:
                placed.append(Placed(p.text, (pos + silence) / SR, (pos + len(block)) / SR, span))
            f.write(np.clip(block + noise(len(block), rng), -1, 1))
            pos += len(block)
            i += 1
            if pos >= total:
                return placed
