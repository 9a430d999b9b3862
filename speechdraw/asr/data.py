"""Speech training data: a dataset over manifest entries, collation into padded waveform batches, and the filter that
removes utterances CTC cannot align.

Batching by duration uses the engine's sampler with lengths in seconds:

    sampler = BucketBatchSampler(durations(entries), max_total=120.0, ...)   # <= 120 s of padded audio per batch

Features are not computed here: the training loop turns waveform batches into features on the device
(speechdraw.asr.features), so loading stays cheap and the DataLoader never needs the model's device.

Waveform augmentation (speechdraw.asr.augment) does run here, in the DataLoader workers, for training datasets only:

    train = SpeechDataset(entries, tokens, augment=Augmenter(cfg, 16_000, seed, babble_pool(entries, 32, seed)))
    train.set_epoch(epoch)                             # before each epoch's DataLoader
    train[i].wave                                      # augmented with the RNG of (seed, epoch, i)
    train.load(i)                                      # always the clean waveform (CMVN statistics)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from speechdraw.asr.audio import load_audio
from speechdraw.asr.augment import BABBLE_POOL_STREAM, Augmenter
from speechdraw.asr.features import FeatureConfig, pad_waves
from speechdraw.asr.manifest import ManifestEntry
from speechdraw.asr.model import AcousticModelConfig, min_ctc_frames, to_output_ids
from speechdraw.asr.text import TokenSet


class Utterance(NamedTuple):
    index: int  # position in the dataset (for evidence when a batch goes wrong)
    wave: torch.Tensor  # (S,) float32
    targets: torch.Tensor  # (U,) model output ids (blank-shifted)


class SpeechBatch(NamedTuple):
    waves: torch.Tensor  # (B, S) zero-padded
    wave_lens: torch.Tensor  # (B,) samples
    targets: torch.Tensor  # (B, U) output ids, padded with 0 (never read past target_lens)
    target_lens: torch.Tensor  # (B,)
    indices: tuple[int, ...]

    def to(self, device) -> SpeechBatch:
        return SpeechBatch(self.waves.to(device), self.wave_lens.to(device), self.targets.to(device),
                           self.target_lens.to(device), self.indices)


class SpeechDataset(Dataset):
    """Manifest entries -> Utterances; with `augment` (training only) each waveform goes through the augmentation
    chain, seeded by (augmenter seed, epoch set by set_epoch, index), so workers and resumed runs agree."""

    def __init__(self, entries: list[ManifestEntry], tokens: TokenSet, sample_rate: int = 16_000,
                 augment: Augmenter | None = None):
        self.entries, self.tokens, self.sample_rate, self.augment = entries, tokens, sample_rate, augment
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Augmentation randomness of this epoch (DataLoader workers fork after it, so they see it)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.entries)

    def load(self, i: int) -> torch.Tensor:
        """The clean (S,) float32 waveform of entry i."""
        e = self.entries[i]
        return load_audio(e.audio, self.sample_rate, offset=e.offset or 0.0, duration=e.duration if e.offset else None)

    def __getitem__(self, i: int) -> Utterance:
        wave = self.load(i)
        if self.augment is not None:
            wave = torch.from_numpy(self.augment(wave.numpy(), self.epoch, i))
        e = self.entries[i]
        return Utterance(i, wave, torch.tensor(to_output_ids(self.tokens.encode(e.text)), dtype=torch.long))


def babble_pool(entries: list[ManifestEntry], size: int, seed: int, sample_rate: int = 16_000
                ) -> dict[int, np.ndarray]:
    """`size` training utterances picked with the seed and loaded once, {entry index: (S,) float32}: the talkers that
    babble noise is made from (a small pool keeps it cheap; every worker shares it)."""
    rng = np.random.default_rng([seed, BABBLE_POOL_STREAM])
    picks = rng.choice(len(entries), size=min(size, len(entries)), replace=False)
    data = SpeechDataset(entries, None, sample_rate)  # only load() is used: no token set needed
    return {int(i): data.load(int(i)).numpy() for i in sorted(picks)}


def collate(items: list[Utterance]) -> SpeechBatch:
    waves, wave_lens = pad_waves([u.wave for u in items])
    target_lens = torch.tensor([len(u.targets) for u in items], dtype=torch.long)
    targets = torch.nn.utils.rnn.pad_sequence([u.targets for u in items], batch_first=True)
    return SpeechBatch(waves, wave_lens, targets, target_lens, tuple(u.index for u in items))


def durations(entries: list[ManifestEntry]) -> list[float]:
    """Lengths for BucketBatchSampler, in seconds (so max_total is seconds of padded audio per batch)."""
    return [e.duration for e in entries]


def output_frames(duration: float, features: FeatureConfig, model: AcousticModelConfig) -> int:
    """Model output frames for `duration` seconds of audio."""
    return model.output_frames(features.num_frames(int(duration * features.sample_rate)))


@dataclass
class FilterReport:
    kept: int
    removed: Counter  # reason -> count

    def __str__(self) -> str:
        total = sum(self.removed.values())
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(self.removed.items())) or "none"
        return f"kept {self.kept} utterances, removed {total} ({why})"


def filter_alignable(entries: list[ManifestEntry], tokens: TokenSet, features: FeatureConfig,
                     model: AcousticModelConfig, *, max_duration: float | None = None
                     ) -> tuple[list[ManifestEntry], FilterReport]:
    """Drop utterances that cannot train CTC: empty transcripts, symbols outside the token set, or too few output
    frames for their tokens (repeats counted). Speed perturbation shortens audio, so the fastest factor is assumed."""
    fastest = max((1.0, *features.speed_factors))
    kept, removed = [], Counter()
    for e in entries:
        if not e.text.strip():
            removed["empty transcript"] += 1
        elif tokens.unknown(e.text):
            removed["symbols outside the token set"] += 1
        elif max_duration is not None and e.duration > max_duration:
            removed["longer than max_duration"] += 1
        elif output_frames(e.duration / fastest, features, model) < min_ctc_frames(tokens.encode(e.text)):
            removed["too few frames for the transcript"] += 1
        else:
            kept.append(e)
    return kept, FilterReport(len(kept), removed)
