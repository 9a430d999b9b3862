"""Waveform augmentation for ASR training: room reverberation, additive noise, telephone and codec channels, EQ, gain
and clipping, DC offset, pitch shift. Training only: the recipe's dev set, evaluation and transcription never see it.

Plain, seeded building blocks (numpy float32 waves in, numpy out; `rng` is a numpy Generator), also used by
data_prep/synth_speech.py to build the held-out robustness test sets:

    room = random_room(rng, "test")                                    # (L, W, H) metres; train/test sizes disjoint
    rir = make_rir(rng, 16_000, rt60=0.6, distance=2.0, room=room)     # (K,) direct path first, peak 1
    wet = reverberate(wave, rir)                                       # (S,) same length and RMS as `wave`
    noise = make_noise("pink", len(wave), 16_000, rng)                 # (S,) unit RMS; kinds below
    noisy = mix_at_snr(wave, noise, snr_db=5.0)                        # (S,) wave + noise at exactly 5 dB SNR
    phone = telephone(wave, 16_000, rng, codec="gsm")                  # 8 kHz, 300-3400 Hz, mu-law or GSM, back
    lossy = codec_roundtrip(wave, 16_000, "mp3", bitrate_kbps=16)      # MP3 or Opus encode + decode, same length
    shifted = pitch_shift(wave, 16_000, semitones=-1.5)                # tempo kept (librosa)

Train and test sources are disjoint: TRAIN_NOISE_KINDS / TEST_NOISE_KINDS share no kind (train: white, pink, brown
noise, mains hum, stationary tones, babble of training utterances; test: blue and violet noise, sirens, beeps, babble
of held-out voices), and `random_room(rng, "train")` / `random_room(rng, "test")` draw from disjoint room sizes.

`Augmenter(cfg, sample_rate, seed, babble_pool)` applies the configured chain to one utterance with an RNG derived
from (seed, epoch, utterance index) alone, so any DataLoader worker, and a resumed run, produces the same audio:

    pitch shift -> reverberation -> additive noise -> EQ -> telephone | codec -> gain (+ clipping) -> DC offset

Libraries: pyroomacoustics for the image-source room simulation (the standard, tested implementation; its early
reflections are joined to a seeded exponentially decaying tail so that long RT60s cost milliseconds, not seconds, and
hit the requested RT60), scipy for FFT convolution and the telephone band-pass, soxr for the 8 kHz round trip,
pedalboard for the GSM 06.10 codec and the EQ filters (JUCE's biquads), PyAV (ffmpeg) for MP3 / Opus at low bit
rates (bit rate set directly, encoder delay removed on decoding), librosa for pitch shifting at constant tempo.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np

# --------------------------------------------------------------------------------------------------------- rooms

# Room sizes (length, width, height ranges in metres). Held-out test rooms are larger than any training room.
ROOM_SIZES = {"train": ((4.0, 8.0), (3.5, 6.5), (2.4, 3.0)),
              "test": ((8.5, 12.0), (7.0, 10.0), (3.2, 4.5))}
SPLITS = tuple(ROOM_SIZES)
ISM_MAX_ORDER = 12  # image-source order for the early part; the late tail is stochastic (see make_rir)
SPEED_OF_SOUND = 343.0


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def random_room(rng: np.random.Generator, split: str = "train") -> tuple[float, float, float]:
    """A shoebox room (L, W, H) in metres from the split's size ranges."""
    _check_split(split)
    return tuple(float(rng.uniform(lo, hi)) for lo, hi in ROOM_SIZES[split])


def _place(rng: np.random.Generator, room, distance: float, margin: float = 0.4):
    """A microphone and a source `distance` metres apart, both at least `margin` from every wall."""
    room = np.asarray(room, dtype=float)
    for _ in range(1000):
        mic = rng.uniform(margin, room - margin)
        azimuth, elevation = rng.uniform(0, 2 * math.pi), rng.uniform(-0.3, 0.3)
        src = mic + distance * np.array([math.cos(elevation) * math.cos(azimuth),
                                         math.cos(elevation) * math.sin(azimuth), math.sin(elevation)])
        if np.all(src >= margin) and np.all(src <= room - margin):
            return mic, src
    raise ValueError(f"a source {distance} m from the microphone does not fit in a room of {tuple(room)} m")


def rt60_schroeder(rir: np.ndarray, sample_rate: int, decay_db: float = 30.0) -> float:
    """Reverberation time (s) of an impulse response by Schroeder backward integration: the energy decay curve's
    straight-line fit between -5 dB and -5 - decay_db, extrapolated to 60 dB (T30 by default)."""
    energy = np.asarray(rir, dtype=np.float64) ** 2
    edc = np.cumsum(energy[::-1])[::-1]  # (K,) energy still to come
    edc_db = 10 * np.log10(edc / edc[0] + 1e-300)
    lo, hi = -5.0, -5.0 - decay_db
    i0, i1 = int(np.argmax(edc_db <= lo)), int(np.argmax(edc_db <= hi))
    if i1 <= i0:
        raise ValueError(f"the impulse response does not decay by {decay_db + 5:g} dB")
    t = np.arange(i0, i1 + 1) / sample_rate
    slope = np.polyfit(t, edc_db[i0:i1 + 1], 1)[0]  # dB per second (negative)
    return -60.0 / slope


def make_rir(rng: np.random.Generator, sample_rate: int, rt60: float, distance: float,
             room: tuple[float, float, float] | None = None) -> np.ndarray:
    """Room impulse response (K,) float32: direct path at sample 0 with amplitude 1, reverberation time `rt60` s,
    microphone `distance` m from the source in a shoebox `room` (default: `random_room(rng, "train")`).

    Early reflections come from pyroomacoustics' image-source model (wall absorption from Sabine's formula for the
    requested RT60, orders <= ISM_MAX_ORDER); after them a Gaussian tail decays at exactly 60 dB per rt60 seconds,
    starting at the level of the image-source energy envelope. A full-order image-source run for RT60 = 1 s in a small
    room needs ~180 orders (seconds per RIR) and still misses the requested RT60 by 15-35%."""
    import pyroomacoustics as pra

    if not 0.05 <= rt60 <= 3.0:
        raise ValueError(f"rt60 must lie in [0.05, 3] s, got {rt60}")
    room = random_room(rng, "train") if room is None else tuple(float(d) for d in room)
    mic, src = _place(rng, room, distance)
    absorption, max_order = pra.inverse_sabine(rt60, list(room))
    shoebox = pra.ShoeBox(list(room), fs=sample_rate, materials=pra.Material(min(absorption, 0.99)),
                          max_order=min(max_order, ISM_MAX_ORDER), air_absorption=False)
    shoebox.add_source(src.tolist())
    shoebox.add_microphone(mic.tolist())
    shoebox.compute_rir()
    early = np.asarray(shoebox.rir[0][0], dtype=np.float64)
    start = int(np.argmax(np.abs(early)))  # the direct path (always the strongest arrival)
    early = early[start:]
    # The late tail starts 20-50 ms after the direct sound (the mixing time of rooms this size), and before the
    # image-source orders thin out (the lowest order not complete in every direction).
    t0 = min(int(min(0.02 + 0.05 * rt60, ISM_MAX_ORDER * min(room) / SPEED_OF_SOUND * 0.5) * sample_rate),
             len(early) - 1)
    win = max(int(0.01 * sample_rate), 1)
    level = math.sqrt(float(np.mean(early[max(t0 - win, 0):t0] ** 2)) + 1e-12)  # RMS just before the tail
    length = t0 + int(rt60 * sample_rate * 1.1)  # 66 dB of decay
    decay = np.exp(-math.log(1000.0) * np.arange(length - t0) / (rt60 * sample_rate))  # amplitude: -60 dB at rt60
    rir = np.zeros(length)
    rir[:t0] = early[:t0]
    rir[t0:] = level * decay * rng.standard_normal(length - t0)
    return (rir / np.abs(rir[0])).astype(np.float32)


def reverberate(wave: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """(S,) dry, (K,) impulse response with the direct path first -> (S,) reverberant, at the dry wave's RMS."""
    from scipy.signal import fftconvolve

    wave = np.asarray(wave, dtype=np.float32)
    wet = fftconvolve(wave, np.asarray(rir, dtype=np.float32))[:len(wave)]  # (S,) the tail past the end is cut
    dry_rms, wet_rms = _rms(wave), _rms(wet)
    return (wet * (dry_rms / wet_rms) if wet_rms > 0 else wet).astype(np.float32)


# --------------------------------------------------------------------------------------------------------- noise

COLOURS = {"white": 0.0, "pink": -1.0, "brown": -2.0, "blue": 1.0, "violet": 2.0}  # power spectrum ~ f^exponent
TRAIN_NOISE_KINDS = ("white", "pink", "brown", "hum", "tones", "babble")
TEST_NOISE_KINDS = ("blue", "violet", "siren", "beeps", "babble-heldout")
BABBLE_KINDS = ("babble", "babble-heldout")  # the caller supplies the talkers: training or held-out voices


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def _unit(x: np.ndarray) -> np.ndarray:
    r = _rms(x)
    return (x / r if r > 0 else x).astype(np.float32)


def coloured_noise(exponent: float, num_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise whose power spectrum goes as f^exponent above 20 Hz (0 white, -1 pink, -2 brown, 1 blue,
    2 violet), shaped in the frequency domain; (num_samples,) at unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(num_samples))
    f = np.fft.rfftfreq(num_samples, 1.0 / sample_rate)
    spec *= np.maximum(f, 20.0) ** (exponent / 2)  # amplitude ~ f^(exponent/2)
    spec[0] = 0.0
    return _unit(np.fft.irfft(spec, num_samples))


def _tone(freq: np.ndarray | float, num_samples: int, sample_rate: int, phase: float) -> np.ndarray:
    """sin of the integrated instantaneous frequency (Hz, scalar or (S,))."""
    inst = np.broadcast_to(np.asarray(freq, dtype=np.float64), (num_samples,))
    return np.sin(phase + 2 * math.pi * np.cumsum(inst) / sample_rate)


def babble(talkers: list[np.ndarray], num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Sum of the given utterances, each at unit RMS, looped from a random start to num_samples; unit RMS."""
    if not talkers:
        raise ValueError("babble needs at least one talker")
    out = np.zeros(num_samples)
    for t in talkers:
        t = _unit(np.asarray(t, dtype=np.float32))
        looped = np.resize(np.roll(t, -int(rng.integers(len(t)))), num_samples)
        out += looped
    return _unit(out)


def make_noise(kind: str, num_samples: int, sample_rate: int, rng: np.random.Generator,
               talkers: list[np.ndarray] | None = None) -> np.ndarray:
    """(num_samples,) float32 noise of `kind` at unit RMS; kinds: TRAIN_NOISE_KINDS + TEST_NOISE_KINDS.

    white/pink/brown/blue/violet: coloured Gaussian noise; hum: 50 or 60 Hz mains with harmonics up to ~1 kHz;
    tones: 1-4 steady sines in 150-3000 Hz; siren: a tone swept up and down around 600-1400 Hz with 2 harmonics;
    beeps: 800-2500 Hz tone bursts of 80-300 ms; babble, babble-heldout: `talkers` (3-7 utterances from training
    voices, resp. from voices never trained on) summed."""
    n, sr = num_samples, sample_rate
    t = np.arange(n) / sr
    if kind in COLOURS:
        return coloured_noise(COLOURS[kind], n, sr, rng)
    if kind == "hum":
        f0 = float(rng.choice([50.0, 60.0])) * rng.uniform(0.99, 1.01)
        out = sum(rng.uniform(0.2, 1.0) / k * _tone(k * f0, n, sr, rng.uniform(0, 2 * math.pi))
                  for k in range(1, int(1000 // f0) + 1))
        out = out + 0.02 * rng.standard_normal(n)
    elif kind == "tones":
        out = sum(rng.uniform(0.3, 1.0) * _tone(rng.uniform(150, 3000), n, sr, rng.uniform(0, 2 * math.pi))
                  for _ in range(int(rng.integers(1, 5))))
    elif kind == "siren":
        centre, depth, rate = rng.uniform(600, 1400), rng.uniform(150, 400), rng.uniform(0.3, 2.0)
        freq = centre + depth * np.sin(2 * math.pi * rate * t + rng.uniform(0, 2 * math.pi))
        out = sum(0.6 ** (k - 1) * _tone(k * freq, n, sr, 0.0) for k in (1, 2, 3))
    elif kind == "beeps":
        on, off = rng.uniform(0.08, 0.3), rng.uniform(0.15, 0.8)
        gate = (np.mod(t + rng.uniform(0, on + off), on + off) < on).astype(np.float64)
        out = gate * _tone(rng.uniform(800, 2500), n, sr, 0.0) + 1e-3 * rng.standard_normal(n)
    elif kind in BABBLE_KINDS:
        if talkers is None:
            raise ValueError(f"noise kind {kind!r} needs talkers (a list of utterance waves)")
        return babble(talkers, n, rng)
    else:
        raise ValueError(f"unknown noise kind {kind!r}; known: {TRAIN_NOISE_KINDS + TEST_NOISE_KINDS}")
    return _unit(np.asarray(out))


def mix_at_snr(wave: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """(S,) wave + noise scaled so that 10 log10(power(wave) / power(noise)) = snr_db over the whole utterance;
    noise is looped or cut to S samples."""
    wave = np.asarray(wave, dtype=np.float32)
    noise = np.resize(np.asarray(noise, dtype=np.float32), len(wave))  # (S,) np.resize repeats a shorter noise
    ps, pn = _rms(wave) ** 2, _rms(noise) ** 2
    if pn == 0 or ps == 0:
        return wave.copy()
    gain = math.sqrt(ps / (pn * 10 ** (snr_db / 10)))
    return (wave + gain * noise).astype(np.float32)


# ------------------------------------------------------------------------------------------------------- channel

PHONE_CODECS = ("mulaw", "gsm")
CODECS = {"mp3": ("mp3", "libmp3lame"), "opus": ("ogg", "libopus")}  # fmt -> (container, ffmpeg encoder)
PHONE_RATE = 8_000


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Cut or zero-pad to n samples."""
    return np.pad(x, (0, max(0, n - len(x))))[:n].astype(np.float32)


def telephone(wave: np.ndarray, sample_rate: int, rng: np.random.Generator, codec: str | None = None) -> np.ndarray:
    """A narrow-band phone call: down to 8 kHz, 300-3400 Hz band-pass (4th-order Butterworth), mu-law (G.711) or
    GSM 06.10 full-rate coding (codec None: drawn from PHONE_CODECS), back to `sample_rate`; same length."""
    import soxr
    from scipy.signal import butter, sosfilt

    codec = str(rng.choice(PHONE_CODECS)) if codec is None else codec
    if codec not in PHONE_CODECS:
        raise ValueError(f"telephone codec must be one of {PHONE_CODECS}, got {codec!r}")
    wave = np.asarray(wave, dtype=np.float32)
    narrow = soxr.resample(wave, sample_rate, PHONE_RATE)  # (S * 8000 / sr,)
    narrow = sosfilt(butter(4, (300, 3400), btype="bandpass", fs=PHONE_RATE, output="sos"), narrow)
    peak = float(np.max(np.abs(narrow))) if len(narrow) else 0.0
    scale = 0.9 / peak if peak > 0.9 else 1.0  # both codecs take [-1, 1]: keep the call from clipping
    narrow = (narrow * scale).astype(np.float32)
    if codec == "mulaw":
        mu = 255.0
        code = np.round((np.sign(narrow) * np.log1p(mu * np.abs(narrow)) / math.log1p(mu) + 1) / 2 * mu)  # 8 bits
        y = (code / mu) * 2 - 1
        narrow = (np.sign(y) * np.expm1(np.abs(y) * math.log1p(mu)) / mu).astype(np.float32)
    else:
        import pedalboard

        narrow = pedalboard.GSMFullRateCompressor()(narrow[None], PHONE_RATE)[0]
    return _fit(soxr.resample(narrow / scale, PHONE_RATE, sample_rate), len(wave))


def codec_roundtrip(wave: np.ndarray, sample_rate: int, fmt: str, bitrate_kbps: float) -> np.ndarray:
    """Encode to `fmt` ("mp3" or "opus") at `bitrate_kbps` with ffmpeg (PyAV) in memory and decode back; the decoder
    removes the encoder delay, so the output is time-aligned; same length."""
    import av

    if fmt not in CODECS:
        raise ValueError(f"codec must be one of {tuple(CODECS)}, got {fmt!r}")
    wave = np.asarray(wave, dtype=np.float32)
    container, encoder = CODECS[fmt]
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(encoder, rate=sample_rate, layout="mono")
        stream.bit_rate = int(bitrate_kbps * 1000)
        frame = av.AudioFrame.from_ndarray(np.clip(wave, -1, 1)[None], format="fltp", layout="mono")
        frame.sample_rate = sample_rate
        for packet in (*stream.encode(frame), *stream.encode(None)):
            out.mux(packet)
    buf.seek(0)
    chunks = []
    with av.open(buf) as inp:
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=sample_rate)
        for frame in inp.decode(audio=0):
            chunks += [f.to_ndarray()[0] for f in resampler.resample(frame)]
        chunks += [f.to_ndarray()[0] for f in resampler.resample(None)]
    return _fit(np.concatenate(chunks) if chunks else np.zeros(0, np.float32), len(wave))


def random_eq(wave: np.ndarray, sample_rate: int, rng: np.random.Generator, max_db: float = 10.0) -> np.ndarray:
    """A random microphone / loudspeaker colouring: spectral tilt (a low shelf and a high shelf of opposite-leaning
    random gains) and 1-3 peaking bands at 150-6000 Hz, each gain within +-max_db (pedalboard's biquads)."""
    import pedalboard as pb

    filters = [pb.LowShelfFilter(cutoff_frequency_hz=float(rng.uniform(150, 600)),
                                 gain_db=float(rng.uniform(-max_db, max_db))),
               pb.HighShelfFilter(cutoff_frequency_hz=float(rng.uniform(2000, 5000)),
                                  gain_db=float(rng.uniform(-max_db, max_db)))]
    filters += [pb.PeakFilter(cutoff_frequency_hz=float(np.exp(rng.uniform(np.log(150), np.log(6000)))),
                              gain_db=float(rng.uniform(-max_db, max_db)), q=float(rng.uniform(0.5, 3.0)))
                for _ in range(int(rng.integers(1, 4)))]
    out = pb.Pedalboard(filters)(np.asarray(wave, dtype=np.float32)[None], sample_rate)[0]
    return out.astype(np.float32)


def gain_clip(wave: np.ndarray, gain_db: float, clip_level: float | None = None) -> np.ndarray:
    """Scale by gain_db; with clip_level, hard-clip at +-clip_level (a fraction of the new peak, e.g. 0.5)."""
    out = np.asarray(wave, dtype=np.float32) * 10 ** (gain_db / 20)
    if clip_level is not None:
        limit = clip_level * float(np.max(np.abs(out)))
        out = np.clip(out, -limit, limit)
    return out.astype(np.float32)


def pitch_shift(wave: np.ndarray, sample_rate: int, semitones: float) -> np.ndarray:
    """Shift the pitch by `semitones` at constant duration and tempo (librosa: phase-vocoder time stretch, then
    resampling with soxr); same length."""
    import librosa

    wave = np.asarray(wave, dtype=np.float32)
    return _fit(librosa.effects.pitch_shift(wave, sr=sample_rate, n_steps=semitones, res_type="soxr_hq"), len(wave))


# ------------------------------------------------------------------------------------------------- training chain


@dataclass
class AugmentConfig:
    """Waveform augmentation of training utterances; every probability 0 (the default) turns it off."""

    pitch_prob: float = field(default=0.0, metadata={"help": "fraction of utterances pitch-shifted (tempo kept)"})
    pitch_semitones: float = field(default=2.0, metadata={"help": "pitch shift drawn uniformly in +-this"})
    reverb_prob: float = field(default=0.0, metadata={"help": "fraction of utterances reverberated (the rest dry)"})
    rir_bank: int = field(default=200, metadata={"help": "room impulse responses generated once per run (seeded)"})
    rt60: tuple[float, float] = field(default=(0.2, 1.0), metadata={"help": "RT60 range of the RIR bank (s)"})
    distance: tuple[float, float] = field(default=(0.5, 3.0), metadata={
        "help": "source-microphone distance range of the RIR bank (m)"})
    noise_prob: float = field(default=0.0, metadata={"help": "fraction of utterances with additive noise"})
    snr_db: tuple[float, float] = field(default=(0.0, 30.0), metadata={"help": "SNR range of additive noise (dB)"})
    noise_kinds: tuple[str, ...] = field(default=TRAIN_NOISE_KINDS, metadata={
        "help": f"noise kinds drawn uniformly, among {', '.join(TRAIN_NOISE_KINDS)} (the test kinds are held out)"})
    babble_talkers: tuple[int, int] = field(default=(3, 7), metadata={"help": "talkers in a babble (range)"})
    babble_pool: int = field(default=32, metadata={
        "help": "training utterances loaded once (seeded) that babble is made from"})
    eq_prob: float = field(default=0.0, metadata={"help": "fraction with a random EQ / spectral tilt"})
    eq_max_db: float = field(default=10.0, metadata={"help": "largest EQ band gain (dB)"})
    phone_prob: float = field(default=0.0, metadata={"help": "fraction through a telephone channel (mu-law / GSM)"})
    codec_prob: float = field(default=0.0, metadata={
        "help": "fraction through a lossy codec round trip (exclusive with the telephone)"})
    codec_formats: tuple[str, ...] = field(default=tuple(CODECS), metadata={"help": "codecs drawn from"})
    codec_kbps: tuple[float, float] = field(default=(8.0, 32.0), metadata={"help": "codec bit rate range (kbit/s)"})
    gain_prob: float = field(default=0.0, metadata={"help": "fraction with a random gain"})
    gain_db: tuple[float, float] = field(default=(-20.0, 10.0), metadata={"help": "gain range (dB)"})
    clip_prob: float = field(default=0.0, metadata={"help": "fraction hard-clipped"})
    clip_level: tuple[float, float] = field(default=(0.3, 0.8), metadata={
        "help": "clipping threshold range, as a fraction of the utterance's peak"})
    dc_prob: float = field(default=0.0, metadata={"help": "fraction with a DC offset"})
    dc_max: float = field(default=0.05, metadata={"help": "largest DC offset (full scale 1)"})

    def __post_init__(self):
        for name in ("pitch_prob", "reverb_prob", "noise_prob", "eq_prob", "phone_prob", "codec_prob", "gain_prob",
                     "clip_prob", "dc_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"augment.{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.phone_prob + self.codec_prob > 1.0:
            raise ValueError("augment.phone_prob + augment.codec_prob must be at most 1 (one channel per utterance)")
        for name in ("rt60", "distance", "snr_db", "babble_talkers", "codec_kbps", "gain_db", "clip_level"):
            value = tuple(getattr(self, name))
            if len(value) != 2 or value[0] > value[1]:
                raise ValueError(f"augment.{name} must be a range lo,hi with lo <= hi, got {value}")
            setattr(self, name, value)
        self.noise_kinds, self.codec_formats = tuple(self.noise_kinds), tuple(self.codec_formats)
        if held_out := set(self.noise_kinds) - set(TRAIN_NOISE_KINDS):
            raise ValueError(f"augment.noise_kinds may only hold training kinds {TRAIN_NOISE_KINDS}, got "
                             f"{sorted(held_out)} (the test kinds {TEST_NOISE_KINDS} are held out)")
        if self.noise_prob > 0 and not self.noise_kinds:
            raise ValueError("augment.noise_prob > 0 needs at least one noise kind")
        if unknown := set(self.codec_formats) - set(CODECS):
            raise ValueError(f"augment.codec_formats must be among {tuple(CODECS)}, got {sorted(unknown)}")
        if self.codec_prob > 0 and not self.codec_formats:
            raise ValueError("augment.codec_prob > 0 needs at least one codec format")
        if self.reverb_prob > 0 and self.rir_bank < 1:
            raise ValueError("augment.reverb_prob > 0 needs augment.rir_bank >= 1")
        if not (0.05 <= self.rt60[0] and self.rt60[1] <= 3.0):
            raise ValueError(f"augment.rt60 must lie in [0.05, 3] s, got {self.rt60}")
        if self.babble_talkers[0] < 1:
            raise ValueError(f"augment.babble_talkers must be at least 1, got {self.babble_talkers}")

    @property
    def enabled(self) -> bool:
        return any(p > 0 for p in (self.pitch_prob, self.reverb_prob, self.noise_prob, self.eq_prob, self.phone_prob,
                                   self.codec_prob, self.gain_prob, self.clip_prob, self.dc_prob))

    @property
    def needs_babble(self) -> bool:
        return self.noise_prob > 0 and "babble" in self.noise_kinds


RIR_BANK_STREAM = 1  # the RIR bank's RNG is (seed, this): apart from every utterance's (seed, epoch, index)
BABBLE_POOL_STREAM = 2  # which training utterances the babble pool holds: (seed, this)


class Augmenter:
    """The training chain of AugmentConfig on one utterance at a time; see the module docstring.

    Everything random comes from numpy Generators seeded by integers: the RIR bank from (seed, RIR_BANK_STREAM), each
    utterance from (seed, epoch, index). The result is a pure function of those, whatever process runs it."""

    def __init__(self, cfg: AugmentConfig, sample_rate: int, seed: int,
                 babble_pool: dict[int, np.ndarray] | None = None):
        self.cfg, self.sample_rate, self.seed = cfg, sample_rate, seed
        self.babble_pool = dict(babble_pool or {})  # dataset index -> (S,) wave
        if cfg.needs_babble and len(self.babble_pool) < 2:
            raise ValueError("babble noise needs a pool of at least 2 training utterances (augment.babble_pool)")
        rng = np.random.default_rng([seed, RIR_BANK_STREAM])
        self.rirs = []  # (K,) float32 each
        if cfg.reverb_prob > 0:
            for _ in range(cfg.rir_bank):
                self.rirs.append(make_rir(rng, sample_rate, rng.uniform(*cfg.rt60), rng.uniform(*cfg.distance)))
        if cfg.pitch_prob > 0:
            # librosa's first call imports scipy.signal and loads numba code (seconds): do it once here, before
            # DataLoader workers fork, not in every worker of every epoch.
            pitch_shift(np.zeros(sample_rate // 4, np.float32), sample_rate, 1.0)

    def __call__(self, wave: np.ndarray, epoch: int, index: int) -> np.ndarray:
        """(S,) float32 clean utterance number `index` in epoch `epoch` -> (S,) float32 augmented."""
        cfg, sr = self.cfg, self.sample_rate
        rng = np.random.default_rng([self.seed, epoch, index])
        wave = np.asarray(wave, dtype=np.float32)
        if rng.random() < cfg.pitch_prob:
            wave = pitch_shift(wave, sr, rng.uniform(-cfg.pitch_semitones, cfg.pitch_semitones))
        if rng.random() < cfg.reverb_prob:
            wave = reverberate(wave, self.rirs[int(rng.integers(len(self.rirs)))])
        if rng.random() < cfg.noise_prob:
            kind = str(rng.choice(cfg.noise_kinds))
            talkers = None
            if kind == "babble":
                others = [k for k in self.babble_pool if k != index]  # never babble over itself
                n = min(int(rng.integers(cfg.babble_talkers[0], cfg.babble_talkers[1] + 1)), len(others))
                talkers = [self.babble_pool[k] for k in rng.choice(others, size=n, replace=False)]
            wave = mix_at_snr(wave, make_noise(kind, len(wave), sr, rng, talkers=talkers), rng.uniform(*cfg.snr_db))
        if rng.random() < cfg.eq_prob:
            wave = random_eq(wave, sr, rng, cfg.eq_max_db)
        channel = rng.random()
        if channel < cfg.phone_prob:
            wave = telephone(wave, sr, rng)
        elif channel < cfg.phone_prob + cfg.codec_prob:
            wave = codec_roundtrip(wave, sr, str(rng.choice(cfg.codec_formats)), rng.uniform(*cfg.codec_kbps))
        if rng.random() < cfg.gain_prob:
            wave = gain_clip(wave, rng.uniform(*cfg.gain_db))
        if rng.random() < cfg.clip_prob:
            wave = gain_clip(wave, 0.0, clip_level=rng.uniform(*cfg.clip_level))
        if rng.random() < cfg.dc_prob:
            wave = wave + np.float32(rng.uniform(-cfg.dc_max, cfg.dc_max))
        return wave.astype(np.float32)
