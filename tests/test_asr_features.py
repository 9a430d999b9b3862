"""Log-mel features: shapes and frame counts, parity with a direct FFT formula, independence from batch padding,
CMVN, SpecAugment, speed perturbation and VTLP (the warp, a tone moving up the mel scale, training only, releases
written before VTLP still loading)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torchaudio
from asr_fixtures import recipe

from speechdraw.asr.data import SpeechBatch
from speechdraw.asr.features import (
    FeatureConfig,
    FeatureExtractor,
    FeatureStats,
    compute_stats,
    pad_waves,
    spec_augment,
    speed_perturb,
    vtlp_factors,
    vtlp_mel_fbanks,
    vtlp_warp,
)
from speechdraw.asr.model import AcousticModel, AcousticModelConfig
from speechdraw.asr.release import load_speech_release, save_speech_release
from speechdraw.asr.text import TokenSet


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


# ------------------------------------------------------------------------------------------------------------- VTLP


def htk_mel(f: float) -> float:
    return 2595.0 * math.log10(1.0 + f / 700.0)


def tone(freq: float, seconds: float = 0.5) -> torch.Tensor:
    return 0.5 * torch.sin(2 * math.pi * freq * torch.arange(int(seconds * 16_000)) / 16_000)


def test_vtlp_grid_and_config_checks():
    assert FeatureConfig().vtlp_grid == (1.0,) and vtlp_factors(FeatureConfig(), 4) is None
    grid = FeatureConfig(vtlp_range=0.1).vtlp_grid
    assert len(grid) == 11 and grid[5] == 1.0 and grid[0] == 0.9 and grid[-1] == 1.1
    expected = torch.linspace(0.9, 1.1, 11, dtype=torch.float64)
    torch.testing.assert_close(torch.tensor(grid, dtype=torch.float64), expected)
    with pytest.raises(ValueError, match="vtlp_range"):
        FeatureConfig(vtlp_range=0.6)
    with pytest.raises(ValueError, match="vtlp_boundary_hz"):
        FeatureConfig(vtlp_range=0.1, vtlp_boundary_hz=9000.0)
    with pytest.raises(ValueError, match="vtlp_steps"):
        FeatureConfig(vtlp_range=0.1, vtlp_steps=1)
    fe = FeatureExtractor(FeatureConfig(cmvn="none", vtlp_range=0.1))
    waves, lens = pad_waves(noise_waves(0.1, 0.1))
    with pytest.raises(ValueError, match="among the grid"):
        fe(waves, lens, warp=torch.tensor([1.0, 1.05]))
    with pytest.raises(ValueError, match="2 utterances"):
        fe(waves, lens, warp=torch.tensor([1.0]))


@pytest.mark.parametrize("alpha", [0.9, 1.1])
def test_vtlp_warp_scales_below_the_boundary_and_keeps_nyquist_fixed(alpha):
    f = torch.linspace(0, 8000, 2001, dtype=torch.float64)
    w = vtlp_warp(f, alpha, 4800.0, 8000.0)
    cut = 4800.0 * min(alpha, 1.0) / alpha  # 4800 Hz for alpha < 1, 4364 Hz for alpha = 1.1
    low = f <= cut
    torch.testing.assert_close(w[low], alpha * f[low], rtol=1e-12, atol=0)
    assert w[0] == 0 and w[-1] == 8000.0  # Nyquist maps to itself
    assert (w.diff() > 0).all()  # increasing: the spectrum is not folded
    # Continuous at the cut, and linear above it.
    at_cut = vtlp_warp(torch.tensor([cut - 1e-9, cut + 1e-9], dtype=torch.float64), alpha, 4800.0, 8000.0)
    assert abs(at_cut[1] - at_cut[0]) < 1e-6
    slope = w[~low].diff() / f[~low].diff()
    torch.testing.assert_close(slope, slope[:1].expand_as(slope), rtol=1e-9, atol=0)
    assert torch.equal(vtlp_warp(f, 1.0, 4800.0, 8000.0), f)
    # The filterbank of the top FFT bin (at Nyquist) is the unwarped one: nothing leaks above Nyquist.
    cfg = FeatureConfig(vtlp_range=0.1)
    torch.testing.assert_close(vtlp_mel_fbanks(cfg, alpha)[-1], vtlp_mel_fbanks(cfg, 1.0)[-1], rtol=0, atol=0)


def test_vtlp_filterbank_at_alpha_one_is_torchaudios():
    cfg = FeatureConfig(vtlp_range=0.1)
    ref = torchaudio.functional.melscale_fbanks(cfg.n_fft // 2 + 1, 0.0, 8000.0, cfg.n_mels, cfg.sample_rate)
    torch.testing.assert_close(vtlp_mel_fbanks(cfg, 1.0), ref, atol=1e-5, rtol=0)  # float64 vs float32 rounding
    # Every band of every warped bank sees some FFT bin.
    for bank in FeatureExtractor(FeatureConfig(cmvn="none", vtlp_range=0.1)).vtlp_banks:
        assert (bank.max(0).values > 0).all()


def test_vtlp_factor_one_gives_exactly_the_unwarped_features():
    waves, lens = pad_waves(noise_waves(0.73, 1.31, 0.41, seed=3))
    plain, plens = FeatureExtractor(FeatureConfig(cmvn="utterance"))(waves, lens)
    fe = FeatureExtractor(FeatureConfig(cmvn="utterance", vtlp_range=0.1))
    warped_one, wlens = fe(waves, lens, warp=torch.ones(3))
    assert torch.equal(warped_one, plain) and torch.equal(wlens, plens)
    assert torch.equal(fe(waves, lens)[0], plain)  # no warp given: the unwarped features, whatever the config
    other, _ = fe(waves, lens, warp=torch.tensor([1.0, 1.1, 1.0]))
    assert torch.equal(other[0], plain[0]) and torch.equal(other[2], plain[2])
    assert (other[1] - plain[1]).abs().max() > 0.1


@pytest.mark.parametrize("freq", [2500.0, 6000.0])  # below and above the 4800 Hz boundary
def test_vtlp_moves_a_tone_along_the_mel_scale_by_the_warp(freq):
    """A pure tone's mel peak sits where the mel scale puts the warped frequency: band j is centred on mel
    (j + 1) * mel(8000) / 81. Measured: the energy centroid within 0.006 bands of that, at every grid factor."""
    cfg = FeatureConfig(cmvn="none", vtlp_range=0.1)
    fe = FeatureExtractor(cfg)
    wave = tone(freq)
    band = htk_mel(8000.0) / (cfg.n_mels + 1)  # 35.06 mel between band centres
    peaks, centroids, expected = [], [], []
    for alpha in cfg.vtlp_grid:
        feats, _ = fe(wave[None], torch.tensor([len(wave)]), warp=torch.tensor([alpha]))
        energy = feats[0].exp().mean(0)  # (n_mels,) mean power per band
        peaks.append(int(energy.argmax()))
        centroids.append(float((torch.arange(cfg.n_mels) * energy).sum() / energy.sum()))
        # The paper's warp, written out: alpha * f below 4800 * min(alpha, 1) / alpha, linear up to (8000, 8000).
        cut = 4800.0 * min(alpha, 1.0) / alpha
        warped = alpha * freq if freq <= cut else 8000 - (8000 - alpha * cut) / (8000 - cut) * (8000 - freq)
        expected.append(htk_mel(warped) / band - 1)
    assert max(abs(p - e) for p, e in zip(peaks, expected)) <= 0.5  # argmax = the band centred nearest
    assert max(abs(c - e) for c, e in zip(centroids, expected)) < 0.02
    # alpha = 1.1 moves the peak up, 0.9 down: 2500 Hz -> 47.85 +2.42 / -2.61 bands, 6000 Hz -> 71.60 +1.13 / -1.47.
    mid = len(cfg.vtlp_grid) // 2
    assert peaks[0] < peaks[mid] < peaks[-1]
    assert expected[-1] - expected[mid] > 1.0 and expected[mid] - expected[0] > 1.0


def test_vtlp_features_do_not_depend_on_batch_padding():
    cfg = FeatureConfig(cmvn="utterance", vtlp_range=0.1)
    fe = FeatureExtractor(cfg)
    waves = noise_waves(0.73, 1.31, 0.41, seed=1)
    warp = vtlp_factors(cfg, 3, generator=torch.Generator().manual_seed(4))
    assert torch.equal(warp, vtlp_factors(cfg, 3, generator=torch.Generator().manual_seed(4)))
    assert set(warp.tolist()) <= set(cfg.vtlp_grid) and len(set(warp.tolist())) > 1
    padded, lens = pad_waves(waves)
    batched, blens = fe(padded, lens, warp=warp)
    extra, elens = fe(torch.nn.functional.pad(padded, (0, 5000)), lens, warp=warp)
    for b, w in enumerate(waves):
        alone, alone_len = fe(w[None], torch.tensor([len(w)]), warp=warp[b:b + 1])
        n = int(alone_len[0])
        assert blens[b] == n
        torch.testing.assert_close(batched[b, :n], alone[0, :n], atol=1e-5, rtol=1e-5)
    assert torch.equal(elens, blens)
    torch.testing.assert_close(extra[:, :batched.shape[1]], batched, atol=1e-5, rtol=1e-5)
    assert extra[:, batched.shape[1]:].abs().sum() == 0


def test_vtlp_is_applied_in_training_only():
    """The recipe's make_features warps with factors from the global RNG when train=True, never when False."""
    make_features = recipe("train").make_features
    cfg = FeatureConfig(cmvn="none", vtlp_range=0.1, freq_masks=0, time_masks=0)
    fe = FeatureExtractor(cfg)
    waves, lens = pad_waves(noise_waves(0.5, 0.7, 0.6, 0.4, seed=5))
    batch = SpeechBatch(waves, lens, torch.ones(4, 2, dtype=torch.long), torch.full((4,), 2), (0, 1, 2, 3))
    plain, _ = fe(waves, lens)

    torch.manual_seed(6)
    state = torch.get_rng_state()
    ev = make_features(fe, batch, cfg, "cpu", train=False)
    assert torch.equal(ev.feats, plain) and torch.equal(torch.get_rng_state(), state)  # no draw either
    tr = make_features(fe, batch, cfg, "cpu", train=True)
    torch.manual_seed(6)
    warp = vtlp_factors(cfg, 4)
    assert torch.equal(tr.feats, fe(waves, lens, warp=warp)[0])
    assert (tr.feats - plain).abs().amax((1, 2)).gt(0).tolist() == (warp != 1.0).tolist()

    off = FeatureConfig(cmvn="none", freq_masks=0, time_masks=0)  # VTLP off: training features are the plain ones
    assert torch.equal(make_features(FeatureExtractor(off), batch, off, "cpu", train=True).feats, plain)


def test_speech_release_keeps_vtlp_config_and_loads_one_written_before_vtlp(tmp_path):
    tokens = TokenSet.characters()
    model_cfg = AcousticModelConfig(n_mels=16, stack=4, hidden=16, layers=1, dropout=0.0, vocab_size=len(tokens) + 1)
    state = AcousticModel(model_cfg).state_dict()
    feat_cfg = FeatureConfig(n_mels=16, cmvn="utterance", vtlp_range=0.08, vtlp_steps=5, vtlp_boundary_hz=4000.0)
    save_speech_release(tmp_path / "new", state, model_cfg, feat_cfg, None, tokens)
    new = load_speech_release(tmp_path / "new")
    assert new.feature_config == feat_cfg and not new.features.training
    waves, lens = pad_waves(noise_waves(0.6, 0.3, seed=7))
    plain, _ = FeatureExtractor(FeatureConfig(n_mels=16, cmvn="utterance"))(waves, lens)
    assert torch.equal(new.features(waves, lens)[0], plain)  # inference never warps

    # A release written before VTLP existed: config.json's features have no vtlp_* keys.
    save_speech_release(tmp_path / "old", state, model_cfg, FeatureConfig(n_mels=16, cmvn="utterance"), None, tokens)
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    config["features"] = {k: v for k, v in config["features"].items() if not k.startswith("vtlp_")}
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    old = load_speech_release(tmp_path / "old")
    assert old.feature_config.vtlp_range == 0.0 and old.feature_config.vtlp_grid == (1.0,)
    assert torch.equal(old.features(waves, lens)[0], plain)
