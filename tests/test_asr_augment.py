"""Waveform augmentation (speechdraw.asr.augment): each building block's shape, level and determinism, RT60 of the
generated rooms measured independently, the telephone band limit, train/test noise disjointness, and that evaluation
data is never augmented."""

from __future__ import annotations

import numpy as np
import pyroomacoustics as pra
import pytest
import soundfile as sf
import torch

from speechdraw.asr import augment as A
from speechdraw.asr.data import SpeechDataset, babble_pool
from speechdraw.asr.manifest import ManifestEntry
from speechdraw.asr.text import TokenSet

SR = 16_000


def speechlike(seed: int = 0, seconds: float = 2.0) -> np.ndarray:
    """A voiced, syllable-modulated harmonic signal with pauses: energy mostly below 4 kHz, like speech."""
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voiced = sum(np.sin(k * phase + rng.uniform(0, 6.28)) / k for k in range(1, 25))
    envelope = np.clip(np.sin(2 * np.pi * 3 * t), 0, None) * (t % 1.0 < 0.8)
    return (0.1 * voiced * envelope).astype(np.float32)


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum((noisy - clean).astype(np.float64) ** 2)))


@pytest.mark.parametrize("split,rt60,distance", [("train", 0.2, 1.0), ("train", 0.6, 3.0), ("train", 1.0, 0.5),
                                                 ("test", 0.3, 2.0), ("test", 0.7, 1.0), ("test", 1.0, 3.0)])
def test_rir_has_the_requested_rt60(split, rt60, distance):
    rir = A.make_rir(np.random.default_rng(1), SR, rt60, distance, room=A.random_room(np.random.default_rng(2), split))
    assert rir.dtype == np.float32 and rir.ndim == 1 and rir[0] == 1.0  # direct path first, amplitude 1
    assert abs(A.rt60_schroeder(rir, SR) - rt60) < 0.2 * rt60
    # pyroomacoustics' own Schroeder T30 agrees: an independent implementation of the measurement.
    assert abs(pra.experimental.measure_rt60(rir, fs=SR, decay_db=30) - rt60) < 0.2 * rt60


def test_rir_is_seeded_and_rooms_are_disjoint():
    a = A.make_rir(np.random.default_rng(5), SR, 0.5, 2.0)
    b = A.make_rir(np.random.default_rng(5), SR, 0.5, 2.0)
    c = A.make_rir(np.random.default_rng(6), SR, 0.5, 2.0)
    assert np.array_equal(a, b) and not np.array_equal(a[:len(c)], c[:len(a)])
    rng = np.random.default_rng(0)
    train = np.array([A.random_room(rng, "train") for _ in range(200)])
    test = np.array([A.random_room(rng, "test") for _ in range(200)])
    assert (train.max(0) < test.min(0)).any()  # a held-out room is larger than every training room in some dimension
    with pytest.raises(ValueError, match="split"):
        A.random_room(rng, "dev")


def test_reverberate_keeps_length_and_level_and_smears():
    dry = speechlike()
    wet = A.reverberate(dry, A.make_rir(np.random.default_rng(0), SR, 0.8, 3.0))
    assert wet.shape == dry.shape and wet.dtype == np.float32
    assert np.sqrt(np.mean(wet**2)) == pytest.approx(np.sqrt(np.mean(dry**2)), rel=1e-4)
    # The pauses fill with reverberation: energy in the first 50 ms of a pause, relative to the utterance.
    pause = slice(int(0.81 * SR), int(0.86 * SR))
    assert np.mean(dry[pause] ** 2) == 0 and np.mean(wet[pause] ** 2) > 1e-4 * np.mean(wet**2)


def test_noise_kinds_train_and_test_disjoint():
    assert set(A.TRAIN_NOISE_KINDS).isdisjoint(A.TEST_NOISE_KINDS)
    with pytest.raises(ValueError, match="held out"):
        A.AugmentConfig(noise_prob=0.5, noise_kinds=("pink", "blue"))


@pytest.mark.parametrize("kind", A.TRAIN_NOISE_KINDS + A.TEST_NOISE_KINDS)
@pytest.mark.parametrize("snr", [0.0, 5.0, 20.0])
def test_noise_shape_determinism_and_snr(kind, snr):
    clean = speechlike()
    talkers = [speechlike(s, 1.3) for s in (1, 2, 3, 4)] if kind in A.BABBLE_KINDS else None
    noise = A.make_noise(kind, len(clean), SR, np.random.default_rng(3), talkers=talkers)
    again = A.make_noise(kind, len(clean), SR, np.random.default_rng(3), talkers=talkers)
    assert noise.shape == clean.shape and noise.dtype == np.float32 and np.array_equal(noise, again)
    assert np.sqrt(np.mean(noise.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)
    noisy = A.mix_at_snr(clean, noise, snr)
    assert noisy.shape == clean.shape and abs(snr_db(clean, noisy) - snr) < 0.5


def test_coloured_noise_slopes():
    """Power spectral slope per octave: white 0, pink -3, brown -6, blue +3, violet +6 dB."""
    for kind, slope in [("white", 0), ("pink", -3), ("brown", -6), ("blue", 3), ("violet", 6)]:
        x = A.make_noise(kind, 10 * SR, SR, np.random.default_rng(0))
        p = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(len(x), 1 / SR)
        per_octave = 10 * np.log10(p[(f >= 1600) & (f < 3200)].mean() / p[(f >= 200) & (f < 400)].mean()) / 3
        assert abs(per_octave - slope) < 0.5, (kind, per_octave)


def test_telephone_is_band_limited_and_seeded():
    x = A.make_noise("white", 2 * SR, SR, np.random.default_rng(0)) * 0.1
    for codec in A.PHONE_CODECS:
        y = A.telephone(x, SR, np.random.default_rng(1), codec=codec)
        assert y.shape == x.shape and y.dtype == np.float32
        p = np.abs(np.fft.rfft(y)) ** 2
        f = np.fft.rfftfreq(len(y), 1 / SR)
        assert p[f > 4000].sum() < 1e-4 * p.sum()  # nothing above the 8 kHz channel's Nyquist frequency
        assert p[f < 200].sum() < 1e-2 * p.sum()  # the 300 Hz high-pass
        assert np.array_equal(y, A.telephone(x, SR, np.random.default_rng(1), codec=codec))
    with pytest.raises(ValueError, match="codec"):
        A.telephone(x, SR, np.random.default_rng(1), codec="amr")


@pytest.mark.parametrize("fmt", sorted(A.CODECS))
def test_codec_roundtrip_is_aligned_and_lossy(fmt):
    x = speechlike()
    lo, hi = A.codec_roundtrip(x, SR, fmt, 8), A.codec_roundtrip(x, SR, fmt, 32)
    assert lo.shape == hi.shape == x.shape
    corr = lambda y: float(np.corrcoef(x, y)[0, 1])  # noqa: E731
    assert corr(hi) > 0.8  # time-aligned: the encoder delay is removed
    assert corr(lo) < corr(hi) < 0.9999  # lossy, more so at a lower bit rate


def test_eq_gain_clip_pitch():
    x = speechlike()
    eq = A.random_eq(x, SR, np.random.default_rng(0))
    assert eq.shape == x.shape and not np.allclose(eq, x)
    assert np.array_equal(eq, A.random_eq(x, SR, np.random.default_rng(0)))
    assert np.max(np.abs(A.gain_clip(x, 6.0))) == pytest.approx(np.max(np.abs(x)) * 10 ** 0.3, rel=1e-5)
    clipped = A.gain_clip(x, 0.0, clip_level=0.5)
    assert np.max(np.abs(clipped)) == pytest.approx(0.5 * np.max(np.abs(x)), rel=1e-6)
    # Pitch up 3 semitones at the same duration: the fundamental (~120 Hz) moves by 2^(3/12).
    y = A.pitch_shift(x, SR, 3.0)
    assert y.shape == x.shape

    def f0(w):
        spec = np.abs(np.fft.rfft(w * np.hanning(len(w))))
        f = np.fft.rfftfreq(len(w), 1 / SR)
        return f[(f > 60) & (f < 300)][np.argmax(spec[(f > 60) & (f < 300)])]

    assert f0(y) / f0(x) == pytest.approx(2 ** (3 / 12), rel=0.03)


def all_on(**kw) -> A.AugmentConfig:
    return A.AugmentConfig(pitch_prob=1, reverb_prob=1, rir_bank=3, noise_prob=1, noise_kinds=("babble", "hum"),
                           eq_prob=1, phone_prob=0.5, codec_prob=0.5, gain_prob=1, clip_prob=1, dc_prob=1, **kw)


def test_augmenter_is_a_function_of_seed_epoch_index():
    pool = {i: speechlike(10 + i, 1.0) for i in range(4)}
    aug = A.Augmenter(all_on(), SR, seed=7, babble_pool=pool)
    x = speechlike()
    a = aug(x, epoch=2, index=5)
    assert a.shape == x.shape and a.dtype == np.float32 and not np.allclose(a, x)
    fresh = A.Augmenter(all_on(), SR, seed=7, babble_pool=pool)  # another process building the same run
    assert np.array_equal(a, fresh(x, epoch=2, index=5))
    assert not np.array_equal(a, aug(x, epoch=3, index=5)) and not np.array_equal(a, aug(x, epoch=2, index=6))
    assert not np.array_equal(a, A.Augmenter(all_on(), SR, seed=8, babble_pool=pool)(x, epoch=2, index=5))
    assert not A.AugmentConfig().enabled and all_on().enabled
    with pytest.raises(ValueError, match="pool"):
        A.Augmenter(all_on(), SR, seed=0)


def test_dataset_augments_training_only(tmp_path):
    entries = []
    for i in range(3):
        path = tmp_path / f"{i}.flac"
        sf.write(str(path), speechlike(i, 1.0), SR)
        entries.append(ManifestEntry(str(path), 1.0, "a b", speaker="x"))
    tokens = TokenSet.characters()
    cfg = all_on()
    train = SpeechDataset(entries, tokens, augment=A.Augmenter(cfg, SR, 0, babble_pool(entries, 3, seed=0)))
    dev = SpeechDataset(entries, tokens)  # what evaluation, the dev set and transcription read: never augmented
    clean = torch.from_numpy(sf.read(str(entries[1].audio), dtype="float32")[0])
    assert torch.equal(dev[1].wave, clean) and torch.equal(train.load(1), clean)
    first = train[1].wave
    assert first.shape == clean.shape and not torch.allclose(first, clean)
    assert torch.equal(train[1].wave, first)  # same epoch: same audio
    train.set_epoch(1)
    assert not torch.equal(train[1].wave, first)
