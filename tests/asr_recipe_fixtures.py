"""A miniature spoken corpus for the ASR tests: short sentences spoken by espeak-ng (one voice), written as FLAC with a
manifest, the way data_prep/synth_speech.py writes the real one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import soundfile as sf
import torch
from asr_fixtures import prep

from speechdraw.asr.audio import resample
from speechdraw.asr.manifest import ManifestEntry, write_manifest

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (apt-get install -y espeak-ng)")

SENTENCES = [
    "the cat sat on the mat", "a dog ran in the park", "she sells sea shells", "good morning to you",
    "open the red door", "we like green apples", "the sun is very hot", "my bag is on the desk",
    "he reads a long book", "birds sing at dawn", "put the cup down", "the river runs fast",
    "they play in the snow", "her hat is blue", "milk is in the fridge", "the old man sleeps",
    "turn off the light", "six small fish swim", "rain falls on the roof", "we walk to school",
    "the baby is happy", "close the window now", "a big ship sails", "the tree has leaves",
]


def speak_corpus(out: Path, sentences: list[str] = SENTENCES, *, voice: str = "en-us", variant: str = "m3",
                 speed: int = 170, pitch: int = 50) -> Path:
    """Speak each sentence, write out/audio/NNN.flac at 16 kHz and out/train.jsonl; returns the manifest path."""
    synth = prep("synth_speech")
    (out / "audio").mkdir(parents=True, exist_ok=True)
    entries = []
    for i, text in enumerate(sentences):
        utt = synth.Utterance(f"{i:03d}", "train", text, voice, variant, speed, pitch)
        samples, sr = synth.speak(utt, out / f"tmp-{i}.wav")
        wave = resample(torch.from_numpy(samples), sr, 16_000).numpy()
        path = out / "audio" / f"{i:03d}.flac"
        sf.write(str(path), wave, 16_000)
        entries.append(ManifestEntry(str(path), len(wave) / 16_000, text, speaker=f"{voice}+{variant}"))
    manifest = out / "train.jsonl"
    write_manifest(manifest, entries)
    return manifest
