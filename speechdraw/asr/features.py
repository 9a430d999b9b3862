"""Acoustic features: 80-dim log-mel computed on the device in batches, mean/variance normalisation, SpecAugment,
speed perturbation and vocal tract length perturbation (VTLP).

    frontend = FeatureExtractor(cfg, stats)            # stats: FeatureStats (global CMVN) or None
    feats, lens = frontend(waves, wave_lens)           # (B, S) samples -> (B, T, n_mels), (B,) frames
    warp = vtlp_factors(cfg, B)                        # training only: (B,) warp factors, or None when VTLP is off
    feats, lens = frontend(waves, wave_lens, warp=warp)
    feats = spec_augment(feats, lens, cfg)             # training only

Frames are cut with `center=False`: frame t is the n_fft samples from t*hop (the win-sample Hann window sits in their
middle, zero-padded to n_fft), and only frames lying entirely inside an utterance are kept, so a frame never sees the
zeros that pad a shorter utterance in a batch; together with zeroing every frame past the length, the features of an
utterance do not depend on what it is batched with.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torchaudio
from torch import nn

CMVN_MODES = ("global", "utterance", "none")


@dataclass
class FeatureConfig:
    sample_rate: int = field(default=16_000, metadata={"help": "audio sample rate the features expect"})
    n_mels: int = field(default=80, metadata={"help": "mel bands"})
    win_ms: float = field(default=25.0, metadata={"help": "analysis window (ms)"})
    hop_ms: float = field(default=10.0, metadata={"help": "frame shift (ms)"})
    cmvn: str = field(default="global", metadata={"help": "global (training-set stats, saved with the model), "
                                                          "utterance, or none"})
    freq_masks: int = field(default=2, metadata={"help": "SpecAugment frequency masks per utterance (training)"})
    freq_width: int = field(default=15, metadata={"help": "widest frequency mask, in mel bands"})
    time_masks: int = field(default=2, metadata={"help": "SpecAugment time masks per utterance (training)"})
    time_width: int = field(default=40, metadata={"help": "widest time mask, in frames"})
    time_ratio: float = field(default=0.1, metadata={"help": "a time mask covers at most this fraction of the "
                                                                "utterance (short utterances keep most frames)"})
    speed_factors: tuple[float, ...] = field(default=(), metadata={
        "help": "speed perturbation factors drawn uniformly per utterance in training, e.g. 0.9,1.0,1.1 ('' = off)"})
    vtlp_range: float = field(default=0.0, metadata={
        "help": "vocal tract length perturbation (Jaitly & Hinton 2013) in training: each utterance's frequency axis "
                "is warped by a factor drawn uniformly from vtlp_steps values evenly spaced in [1 - r, 1 + r], "
                "e.g. 0.1 (0 = off; never applied in evaluation or inference)"})
    vtlp_steps: int = field(default=11, metadata={
        "help": "how many warp factors the VTLP grid holds (an odd count includes 1)"})
    vtlp_boundary_hz: float = field(default=4800.0, metadata={
        "help": "VTLP warp boundary: frequencies up to about this scale by the factor, the rest linearly so that "
                "the Nyquist frequency stays put (the paper's F_hi)"})

    def __post_init__(self):
        if self.cmvn not in CMVN_MODES:
            raise ValueError(f"features.cmvn must be one of {CMVN_MODES}, got {self.cmvn!r}")
        self.speed_factors = tuple(float(f) for f in self.speed_factors)
        if any(not 0.5 <= f <= 2.0 for f in self.speed_factors):
            raise ValueError(f"features.speed_factors must lie in [0.5, 2], got {self.speed_factors}")
        if not 0.0 <= self.vtlp_range < 0.5:
            raise ValueError(f"features.vtlp_range must lie in [0, 0.5), got {self.vtlp_range}")
        if self.vtlp_range > 0:
            if self.vtlp_steps < 2:
                raise ValueError(f"features.vtlp_steps must be at least 2 when VTLP is on, got {self.vtlp_steps}")
            if not 0 < self.vtlp_boundary_hz < self.sample_rate / 2:
                raise ValueError(f"features.vtlp_boundary_hz must lie inside (0, {self.sample_rate / 2:g}) Hz, the "
                                 f"Nyquist frequency, got {self.vtlp_boundary_hz}")

    @property
    def hop(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    @property
    def win(self) -> int:
        return int(round(self.sample_rate * self.win_ms / 1000))

    @property
    def n_fft(self) -> int:
        return 1 << (self.win - 1).bit_length()  # next power of two: 400 samples -> 512-point FFT

    @property
    def frame_offset(self) -> float:
        """Seconds from t * hop to the start of the stretch of audio frame t stands for. Frame t is centred at
        t*hop + n_fft/2 (center=False) and stands for the hop-long stretch around its centre, which starts
        (n_fft - hop) / 2 samples after t*hop. k stacked frames stand for the k*hop stretch around their mean centre,
        which starts at the same offset: it holds for model steps too (speechdraw.asr.decode.StepTimes)."""
        return (self.n_fft - self.hop) / 2 / self.sample_rate

    def num_frames(self, num_samples: int) -> int:
        """Frames of an utterance of `num_samples` samples (0 if shorter than one window)."""
        return max(0, (num_samples - self.n_fft) // self.hop + 1)

    @property
    def vtlp_grid(self) -> tuple[float, ...]:
        """The warp factors VTLP draws from: vtlp_steps evenly spaced in [1 - r, 1 + r]; (1.0,) when VTLP is off."""
        if self.vtlp_range == 0:
            return (1.0,)
        n = self.vtlp_steps
        # Written so that the middle of an odd grid is exactly 1.0 (alpha = 1 must be exactly the unwarped bank).
        return tuple(1.0 + self.vtlp_range * (2 * i - (n - 1)) / (n - 1) for i in range(n))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["speed_factors"] = list(self.speed_factors)
        return d


@dataclass
class FeatureStats:
    """Global mean and standard deviation of each mel band over training utterances."""

    mean: torch.Tensor  # (n_mels,)
    std: torch.Tensor  # (n_mels,)
    frames: int  # how many frames they were measured on

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps({"frames": self.frames, "mean": self.mean.tolist(),
                                          "std": self.std.tolist()}) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> FeatureStats:
        d = json.loads(Path(path).read_text())
        return cls(torch.tensor(d["mean"]), torch.tensor(d["std"]), int(d["frames"]))

    def state(self) -> dict:
        return {"mean": self.mean.clone(), "std": self.std.clone(), "frames": self.frames}

    @classmethod
    def from_state(cls, d: dict) -> FeatureStats:
        return cls(d["mean"].float(), d["std"].float(), int(d["frames"]))


def vtlp_warp(freqs: torch.Tensor, alpha: float, boundary_hz: float, nyquist: float) -> torch.Tensor:
    """The piecewise-linear VTLP frequency warp of Jaitly & Hinton (2013), elementwise on frequencies in Hz.

    Below f_cut = boundary * min(alpha, 1) / alpha a frequency is scaled by alpha; above it the map is the straight
    line from (f_cut, alpha * f_cut) to (nyquist, nyquist), so the warp is continuous, increasing and keeps 0 and the
    Nyquist frequency fixed."""
    if alpha == 1.0:
        return freqs.clone()
    cut = boundary_hz * min(alpha, 1.0) / alpha
    above = nyquist - (nyquist - boundary_hz * min(alpha, 1.0)) / (nyquist - cut) * (nyquist - freqs)
    return torch.where(freqs <= cut, freqs * alpha, above)


def _hz_to_mel(f):
    return 2595.0 * torch.log10(1.0 + f / 700.0)  # the HTK mel scale, torchaudio's default


def vtlp_mel_fbanks(cfg: FeatureConfig, alpha: float) -> torch.Tensor:
    """Mel filterbank (n_fft/2 + 1, n_mels) float32 that reads a linear power spectrum as if its frequency axis had
    been warped by `vtlp_warp(., alpha)`: the energy of FFT bin k, at f_k, lands in the bands around warp(f_k).

    The triangles are torchaudio's (HTK mel centres, linear in Hz, no area normalisation), evaluated at the warped
    bin frequencies, as Kaldi's VTLN does; like there, no Jacobian is applied, so a pure tone keeps its energy."""
    n_freqs = cfg.n_fft // 2 + 1
    freqs = torch.linspace(0, cfg.sample_rate // 2, n_freqs, dtype=torch.float64)  # FFT bin centres, Hz
    warped = vtlp_warp(freqs, alpha, cfg.vtlp_boundary_hz, cfg.sample_rate / 2)  # (F,)
    m_pts = torch.linspace(0.0, float(_hz_to_mel(torch.tensor(cfg.sample_rate / 2, dtype=torch.float64))),
                           cfg.n_mels + 2, dtype=torch.float64)
    f_pts = 700.0 * (10.0 ** (m_pts / 2595.0) - 1.0)  # (n_mels + 2,) band edges and centres, Hz
    lo, mid, hi = f_pts[:-2], f_pts[1:-1], f_pts[2:]  # (n_mels,) each
    rise = (warped[:, None] - lo) / (mid - lo)  # (F, n_mels)
    fall = (hi - warped[:, None]) / (hi - mid)
    return torch.clamp(torch.minimum(rise, fall), min=0.0).float()


def vtlp_factors(cfg: FeatureConfig, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
    """(B,) float64 warp factors drawn uniformly from `cfg.vtlp_grid`, one per utterance; None (and no draw from the
    RNG, so runs without VTLP see the same random stream as before it existed) when VTLP is off.

    Draws come from `generator` (default: the global RNG, which resume checkpoints restore), on the CPU."""
    if cfg.vtlp_range == 0:
        return None
    grid = torch.tensor(cfg.vtlp_grid, dtype=torch.float64)
    return grid[torch.randint(0, len(grid), (batch_size,), generator=generator)]


def length_mask(lens: torch.Tensor, T: int) -> torch.Tensor:
    """(B,) lengths -> (B, T) bool, True inside each sequence."""
    return torch.arange(T, device=lens.device)[None, :] < lens[:, None]


class FeatureExtractor(nn.Module):
    """Waveforms -> normalised log-mel frames, on whatever device the module lives on, in fp32."""

    def __init__(self, cfg: FeatureConfig, stats: FeatureStats | None = None):
        super().__init__()
        if cfg.cmvn == "global" and stats is None:
            raise ValueError("global CMVN needs FeatureStats (compute them with compute_stats on training data)")
        self.cfg = cfg
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.win, hop_length=cfg.hop,
            n_mels=cfg.n_mels, center=False, power=2.0)
        n = cfg.n_mels
        # One warped filterbank per VTLP grid factor, (factors, n_fft/2 + 1, n_mels); the factor 1 is torchaudio's own
        # bank, so a warp of 1 is exactly the unwarped features. Not persistent: rebuilt from the config.
        grid = cfg.vtlp_grid
        banks = [self.mel.mel_scale.fb.clone() if a == 1.0 else vtlp_mel_fbanks(cfg, a) for a in grid]
        self.register_buffer("vtlp_banks", torch.stack(banks), persistent=False)
        self.register_buffer("mean", stats.mean.float().clone() if stats is not None else torch.zeros(n))
        self.register_buffer("std", stats.std.float().clone() if stats is not None else torch.ones(n))

    def warp_banks(self, warp: torch.Tensor) -> torch.Tensor:
        """(B,) warp factors, each one of cfg.vtlp_grid -> (B, n_fft/2 + 1, n_mels) their filterbanks."""
        # Matched on the CPU (the factors come from the CPU RNG): no float64 or host sync on the device.
        warp = torch.as_tensor(warp, dtype=torch.float64).detach().cpu().reshape(-1)
        grid = torch.tensor(self.cfg.vtlp_grid, dtype=torch.float64)
        dist, idx = (warp[:, None] - grid[None, :]).abs().min(1)  # (B,) nearest grid factor
        if (dist > 1e-6).any():
            raise ValueError(f"VTLP warp factors must be among the grid {self.cfg.vtlp_grid} "
                             f"(features.vtlp_range / vtlp_steps), got {warp[dist > 1e-6].tolist()}")
        return self.vtlp_banks[idx.to(self.vtlp_banks.device)]

    def log_mel(self, waves: torch.Tensor, wave_lens: torch.Tensor,
                warp: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) float, (B,) samples -> unnormalised log-mel (B, T, n_mels) with padded frames zeroed, (B,) frames.

        warp: optional (B,) VTLP factors from `vtlp_factors` (training only); each utterance's power spectrum then
        goes through the mel filterbank warped by its factor."""
        if warp is not None and len(warp) != waves.shape[0]:
            raise ValueError(f"{len(warp)} VTLP warp factors for a batch of {waves.shape[0]} utterances")
        # Autocast must not touch the FFT or the log: features are always fp32.
        with torch.autocast(waves.device.type, enabled=False):
            waves = waves.float()
            if waves.shape[1] < self.cfg.n_fft:  # a batch of utterances all shorter than a frame: no frames at all
                waves = nn.functional.pad(waves, (0, self.cfg.n_fft - waves.shape[1]))
            if warp is None:
                spec = self.mel(waves).transpose(1, 2)  # (B, T, n_mels)
            else:
                power = self.mel.spectrogram(waves).transpose(1, 2)  # (B, T, n_fft/2 + 1)
                spec = torch.bmm(power, self.warp_banks(warp))  # (B, T, n_mels)
            feats = torch.log(spec + 1e-6)
        lens = torch.clamp((wave_lens.to(feats.device) - self.cfg.n_fft) // self.cfg.hop + 1, min=0)
        lens = torch.minimum(lens, torch.tensor(feats.shape[1], device=lens.device))
        mask = length_mask(lens, feats.shape[1])
        return feats * mask[:, :, None], lens

    def forward(self, waves: torch.Tensor, wave_lens: torch.Tensor,
                warp: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S), (B,) -> normalised (B, T, n_mels) with padded frames exactly 0, (B,) frame counts.

        warp: optional (B,) VTLP factors (see `log_mel`); only training passes them. CMVN is the unwarped one."""
        feats, lens = self.log_mel(waves, wave_lens, warp)
        mask = length_mask(lens, feats.shape[1])[:, :, None]  # (B, T, 1)
        if self.cfg.cmvn == "global":
            feats = (feats - self.mean) / self.std
        elif self.cfg.cmvn == "utterance":
            n = lens.clamp(min=1)[:, None, None].float()
            mean = feats.sum(1, keepdim=True) / n  # padded frames are 0, so they add nothing
            var = ((feats - mean) ** 2 * mask).sum(1, keepdim=True) / n
            feats = (feats - mean) / (var.sqrt() + 1e-5)
        return feats * mask, lens


@torch.no_grad()
def compute_stats(waves: list[torch.Tensor], cfg: FeatureConfig, device: torch.device | str = "cpu",
                  batch_size: int = 32) -> FeatureStats:
    """Global CMVN statistics over the frames of `waves` (each (S,)); accumulated in float64."""
    raw = FeatureExtractor(FeatureConfig(**{**cfg.to_dict(), "cmvn": "none"})).to(device)
    total = torch.zeros(cfg.n_mels, dtype=torch.float64)
    total_sq = torch.zeros(cfg.n_mels, dtype=torch.float64)
    frames = 0
    for i in range(0, len(waves), batch_size):
        chunk = waves[i:i + batch_size]
        padded, lens = pad_waves(chunk)
        feats, flens = raw.log_mel(padded.to(device), lens.to(device))
        feats = feats.double().cpu()  # padded frames are 0 and add nothing to the sums
        total += feats.sum((0, 1))
        total_sq += (feats**2).sum((0, 1))
        frames += int(flens.sum())
    if frames == 0:
        raise ValueError("no frames to compute feature statistics from")
    mean = total / frames
    std = (total_sq / frames - mean**2).clamp(min=1e-10).sqrt()
    return FeatureStats(mean.float(), std.float(), frames)


def pad_waves(waves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """[(S_i,)] -> (B, max S) zero-padded, (B,) lengths."""
    lens = torch.tensor([len(w) for w in waves], dtype=torch.long)
    return nn.utils.rnn.pad_sequence(list(waves), batch_first=True), lens


def spec_augment(feats: torch.Tensor, lens: torch.Tensor, cfg: FeatureConfig,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Frequency and time masks (set to 0, the normalised mean), drawn per utterance. (B, T, F) -> (B, T, F).

    Draws come from `generator` (default: the global RNG, which resume checkpoints restore), on the CPU so the
    same seed gives the same masks on any device."""
    B, T, F = feats.shape
    keep = torch.ones(B, T, F, dtype=torch.bool)
    for b in range(B):
        n = int(lens[b])
        for _ in range(cfg.freq_masks):
            w = int(torch.randint(0, cfg.freq_width + 1, (1,), generator=generator))
            f0 = int(torch.randint(0, max(1, F - w + 1), (1,), generator=generator))
            keep[b, :, f0:f0 + w] = False
        width = min(cfg.time_width, int(cfg.time_ratio * n))
        for _ in range(cfg.time_masks):
            w = int(torch.randint(0, width + 1, (1,), generator=generator))
            t0 = int(torch.randint(0, max(1, n - w + 1), (1,), generator=generator))
            keep[b, t0:t0 + w, :] = False
    return feats * keep.to(feats.device)


def speed_perturb(waves: list[torch.Tensor], factors: tuple[float, ...], sample_rate: int,
                  generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Play each (S,) wave `factor` times faster (pitch moves too, as in Ko et al. 2015); factor drawn per wave."""
    if not factors:
        return waves
    out = []
    for w in waves:
        f = factors[int(torch.randint(0, len(factors), (1,), generator=generator))]
        if f == 1.0:
            out.append(w)
            continue
        # Resampling from rate f*sr to sr turns S samples into S/f: the same sounds, f times faster.
        g = math.gcd(int(round(f * 1000)), 1000)
        out.append(torchaudio.functional.resample(w, int(round(f * 1000)) // g, 1000 // g))
    return out
