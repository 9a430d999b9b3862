"""Log-mel features: shapes and frame counts, parity with a direct FFT formula, independence from batch padding,
CMVN, SpecAugment and speed perturbation."""

from __future__ import annotations

import math

import pytest
import torch
import torchaudio

from speechdraw.asr.features import (
    FeatureConfig,
    FeatureExtractor,
    FeatureStats,
    compute_stats,
    pad_waves,
    spec_augment,
    speed_perturb,
)


def noise_waves(*seconds: float, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = [torch.arange(int(s * 16_000)) / 16_000 for s in seconds]
    # A tone plus noise: real spectral structure, different in every band.
    return [0.3 * torch.sin(2 * math.pi * 440 * x) + 0.05 * torch.randn(len(x), generator=g) for x in t]


def test_shapes_frame_counts_and_zeroed_padding():
    cfg = FeatureConfig(cmvn="none")
    waves = noise_waves(1.0, 0.5, 0.02)
    padded, lens = pad_waves(waves)
    feats, flens = FeatureExtractor(cfg)(padded, lens)
    # Frames lying wholly inside the audio: (S - n_fft) // hop + 1, with n_fft = 512 for a 400-sample window.
    assert cfg.n_fft == 512 and cfg.hop == 160
    assert flens.tolist() == [(16_000 - 512) // 160 + 1, (8_000 - 512) // 160 + 1, 0] == [97, 47, 0]
    assert [cfg.num_frames(len(w)) for w in waves] == flens.tolist()
    assert feats.shape == (3, 97, 80) and feats.dtype == torch.float32
    assert feats[1, 47:].abs().sum() == 0 and feats[2].abs().sum() == 0
    assert feats[1, :47].abs().min() > 0


def test_log_mel_matches_a_direct_fft_of_one_frame():
    cfg = FeatureConfig(cmvn="none")
    (wave,) = noise_waves(0.3)
    feats, _ = FeatureExtractor(cfg)(wave[None], torch.tensor([len(wave)]))
    t = 7
    window = torch.zeros(cfg.n_fft, dtype=torch.float64)
    left = (cfg.n_fft - cfg.win) // 2  # torch.stft centres the shorter window inside the FFT frame
    window[left:left + cfg.win] = torch.hann_window(cfg.win, dtype=torch.float64)
    frame = wave[t * cfg.hop: t * cfg.hop + cfg.n_fft].double() * window
    power = torch.fft.rfft(frame).abs() ** 2  # (n_fft/2 + 1,)
    fb = torchaudio.functional.melscale_fbanks(cfg.n_fft // 2 + 1, 0.0, cfg.sample_rate / 2, cfg.n_mels,
                                               cfg.sample_rate).double()  # (freqs, n_mels)
    expected = torch.log(power @ fb + 1e-6)
    torch.testing.assert_close(feats[0, t].double(), expected, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("cmvn", ["none", "utterance", "global"])
def test_features_do_not_depend_on_batch_padding(cmvn):
    waves = noise_waves(0.73, 1.31, 0.41, seed=1)
    stats = compute_stats(waves, FeatureConfig()) if cmvn == "global" else None
    fe = FeatureExtractor(FeatureConfig(cmvn=cmvn), stats)
    alone, alone_len = fe(waves[0][None], torch.tensor([len(waves[0])]))
    padded, lens = pad_waves(waves)
    batched, blens = fe(padded, lens)
    # Extra padding far beyond every utterance changes nothing either.
    extra, elens = fe(torch.nn.functional.pad(padded, (0, 5000)), lens)
    n = int(alone_len[0])
    assert blens[0] == n and torch.equal(elens, blens)
    torch.testing.assert_close(batched[0, :n], alone[0, :n], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(extra[:, :batched.shape[1]], batched, atol=1e-5, rtol=1e-5)
    assert extra[:, batched.shape[1]:].abs().sum() == 0


def test_global_and_utterance_cmvn_normalise():
    waves = noise_waves(1.0, 0.8, 1.2, seed=2)
    cfg = FeatureConfig(cmvn="global")
    stats = compute_stats(waves, cfg, batch_size=2)
    padded, lens = pad_waves(waves)
    feats, flens = FeatureExtractor(cfg, stats)(padded, lens)
    valid = torch.cat([feats[b, :n] for b, n in enumerate(flens.tolist())])  # (frames, 80)
    assert stats.frames == valid.shape[0]
    torch.testing.assert_close(valid.mean(0), torch.zeros(80), atol=1e-4, rtol=0)
    torch.testing.assert_close(valid.std(0, unbiased=False), torch.ones(80), atol=1e-3, rtol=0)

    utt, ulens = FeatureExtractor(FeatureConfig(cmvn="utterance"))(padded, lens)
    for b, n in enumerate(ulens.tolist()):
        assert utt[b, :n].mean(0).abs().max() < 1e-4
        assert (utt[b, :n].std(0, unbiased=False) - 1).abs().max() < 1e-2

    with pytest.raises(ValueError, match="FeatureStats"):
        FeatureExtractor(cfg)


def test_feature_stats_round_trip(tmp_path):
    stats = FeatureStats(torch.randn(80), torch.rand(80) + 0.5, 1234)
    stats.save(tmp_path / "s.json")
    back = FeatureStats.load(tmp_path / "s.json")
    assert back.frames == 1234
    torch.testing.assert_close(back.mean, stats.mean)
    torch.testing.assert_close(FeatureStats.from_state(stats.state()).std, stats.std)


def test_spec_augment_masks_inside_each_utterance_only():
    cfg = FeatureConfig(freq_masks=2, freq_width=10, time_masks=2, time_width=20, time_ratio=0.2)
    feats = torch.randn(2, 120, 80) + 5  # nothing is 0 before masking
    lens = torch.tensor([120, 60])
    feats[1, 60:] = 0
    out = spec_augment(feats, lens, cfg, generator=torch.Generator().manual_seed(0))
    again = spec_augment(feats, lens, cfg, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # a pure function of the generator
    for b, n in enumerate(lens.tolist()):
        zero = out[b, :n] == 0
        bands = zero.all(0).sum().item()  # fully masked mel bands
        frames = zero.all(1).sum().item()  # fully masked frames
        assert bands <= 2 * 10 and frames <= 2 * min(20, int(0.2 * n))
        assert torch.equal(zero, zero.all(0, keepdim=True) | zero.all(1, keepdim=True))  # only bands and frames
        kept = ~zero
        assert torch.equal(out[b, :n][kept], feats[b, :n][kept])
    assert out[1, 60:].abs().sum() == 0
    # Over many draws the masks do hit: the augmentation is not a no-op.
    hit = spec_augment(feats, lens, cfg, generator=torch.Generator().manual_seed(1))
    assert (hit == 0).sum() > (feats == 0).sum()
    off = FeatureConfig(freq_masks=0, time_masks=0)
    assert torch.equal(spec_augment(feats, lens, off), feats)


def test_speed_perturbation_changes_duration_by_the_factor():
    (wave,) = noise_waves(1.0)
    for f in (0.9, 1.1):
        (out,) = speed_perturb([wave], (f,), 16_000)
        assert abs(len(out) - 16_000 / f) <= 2
    assert speed_perturb([wave], (1.0,), 16_000)[0] is wave
    assert speed_perturb([wave], (), 16_000)[0] is wave
    with pytest.raises(ValueError, match="speed_factors"):
        FeatureConfig(speed_factors=(3.0,))
