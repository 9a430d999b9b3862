"""Build the synthetic-speech corpus: sentences spoken by espeak-ng (several English accents and voice variants),
flite and festival.

    apt-get install -y espeak-ng flite festival festvox-kallpc16k
    python data_prep/synth_speech.py --fetch --out ~/speechdraw-runs/data/synth               # default: 10 h of train
    python data_prep/synth_speech.py --out /tmp/synth-tiny --hours 0.05 --dev-utts 20 --test-utts 20   # a quick one
    python data_prep/synth_speech.py --fetch --out /tmp/heldout --sample 5    # 5 of each evaluation set, in a minute

--sample N speaks only N utterances of each evaluation set of the corpus the other settings describe (seeded, the same
N indices in every set; no dev, no training audio): the same sentences, voices and channels as the full build, so a
model trained on that corpus has heard none of them. `make demo` uses it to score the shipped speech model on speech
it never trained on without building the whole corpus. Its plan.json and manifests say it is a sample.

Re-running the same command continues where a previous run stopped (finished files are kept; every file is written
to a temporary name and renamed, so a killed run leaves no half-written audio); raising --hours adds train audio.

What it writes under --out:
  audio/<dir>/<dir>-NNNNNN.flac        16 kHz mono FLAC (dir: a split, or train_other for train's flite/festival part)
  train.jsonl                          espeak-ng: 7 accents x 45 voice variants (1 - --other-share of --hours), and
                                       flite kal, kal16, awb + festival kal_diphone (--other-share of --hours)
  dev.jsonl, test.jsonl                espeak-ng: the training accents, 4 voice variants never used in training
  test_accent.jsonl                    an accent never used in training (--test-accent), 13 of the training variants,
                                       so the accent is the only thing that changed
  test_voice.jsonl                     test's sentences spoken by a synthesizer voice never used in training (flite rms)
  test_noisy.jsonl                     test's utterances + noise of kinds training never uses (augment.TEST_NOISE_KINDS:
                                       blue, violet, siren, beeps, babble of test voices) at 0, 5, 10, 20 dB in turn
  test_reverb.jsonl                    test's utterances in rooms larger than any training room, RT60 0.3-1.0 s, 1-3 m
  test_phone.jsonl                     test's utterances through a phone call (8 kHz, 300-3400 Hz, mu-law or GSM), then
                                       MP3 (16-32 kbit/s) or Opus (12-24 kbit/s); each harder set's line records the
                                       source utterance, what was done (noise, snr_db, room, rt60, codecs) and its seed
  dev_noisy.jsonl, dev_reverb.jsonl,   dev's utterances through the same kinds of channel, built from the training side
  dev_phone.jsonl                      of speechdraw.asr.augment (its noise kinds and room sizes): choose models and
                                       settings for robustness on these, never on the test sets
  lm_train.txt                         every corpus sentence except the dev/test ones (checked: zero overlap); written
                                       first, before any audio
  corpus.json                          hours, counts, synthesizers, accents and variants per split; the settings
  plan.json                            the settings that decide which utterance is which (a re-run must match them)
Each manifest line records speaker (accent+variant for espeak-ng, synth+voice for the others: "flite+awb"), synth,
voice, variant, speed (words per minute; flite and festival get the duration stretch 175 / speed) and pitch
(espeak-ng's 0-99; null for the others). Every synthesizer's output is resampled to 16 kHz.

Splits are decided on normalised, de-duplicated sentences: each sentence of 5-30 words goes to at most one of dev,
test (and test_voice), test_accent, train, so no dev/test sentence is ever heard in training or seen by the LM.
Everything (which sentence, which voice, speed and pitch) is a pure function of --seed and the utterance index, so two
runs with the same settings give the same corpus. Train utterances are added in index order until --hours is reached
(espeak-ng's from the start of the training sentences, the other synthesizers' from the end, so the two parts share
no sentence while the pool lasts); a few files past that point (the last parallel chunk) may stay on disk unused,
ready for a later, larger --hours. Sentences go to a synthesizer on standard input, never as an argument, so a
sentence that starts with "-" is spoken instead of read as an option.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing as mp
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from text_corpus import add_source_args, build_sentences, resolve_source

from speechdraw.asr import augment
from speechdraw.asr.audio import SAMPLE_RATE, audio_info
from speechdraw.asr.manifest import ManifestEntry, validate_manifest, write_manifest
from speechdraw.asr.text import TokenSet, word_count

# espeak-ng's English accents (`espeak-ng --voices=en`, without the mbrola voices, which need another package).
ACCENTS = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc", "en-029", "en-gb-scotland")
# espeak-ng 1.51 silently ignores a variant appended to "en-gb" ("en-gb+f2" sounds like "en-gb"); the same voice file
# under its own name "en" takes variants. check_voices() verifies this for every accent before building.
ESPEAK_NAME = {"en-gb": "en"}
# Human-sounding variants (`espeak-ng --voices=variant`); the whispering, robotic and novelty ones are left out.
# CORE_VARIANTS are the ones test_accent speaks with, so that the accent is the only thing that changes there.
CORE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "f4", "klatt2", "robert", "linda")
# More training voices: other formant scalings, pitch ranges, consonant levels, spectral tilts ("tone") and Klatt
# modes, so that a model meets voices it has not heard. Left out besides the novelty voices: every variant that shares
# a definition with a held-out one (m8, anika, RicishayMax2/3, steph2/3 have steph's "tone" curve exactly).
EXTRA_VARIANTS = ("Alex", "Alicia", "Andy", "Annie", "Denis", "Gene", "Hugo", "Jacky", "Michael", "Mike", "aunty",
                  "belinda", "boris", "david", "ed", "edward", "grandma", "iven", "john", "kaukovalta", "klatt",
                  "klatt4", "max", "miguel", "norbert", "pablo", "paul", "quincy", "rob", "travis", "victor", "zac")
TRAIN_VARIANTS = CORE_VARIANTS + EXTRA_VARIANTS
HELDOUT_VARIANTS = ("m7", "f5", "klatt3", "steph")  # dev and test only

ESPEAK, FLITE, FESTIVAL = "espeak-ng", "flite", "festival"
# The other synthesizers' voices, as synth+voice. flite's kal (8 kHz) and kal16 and festival's kal_diphone are one
# speaker's diphones through different signal processing; awb and rms are statistical parametric (clustergen) voices
# of two other speakers. Debian ships more (flite's slt and awb_time, further festival voices): they stay unused on
# purpose, so that speech from voices no part of this corpus has heard can still be measured.
OTHER_TRAIN_VOICES = ("flite+kal", "flite+kal16", "flite+awb", "festival+kal_diphone")
# test_voice only: rms shares its speaker with no training voice (kal16 and kal_diphone are kal; awb is a Scottish
# speaker), speaks American English like most of train, and its synthesis method is one train has heard (awb's), so
# the set measures a new voice rather than a new kind of signal processing.
TEST_VOICE = "flite+rms"
DEFAULT_WPM = 175  # espeak-ng's default rate; flite / festival speak at duration stretch DEFAULT_WPM / speed
# test's utterances through a channel no training audio goes through: noise kinds and room sizes from the test side
# of speechdraw.asr.augment (disjoint from the training side), telephone band and codecs.
HARDER_SETS = ("test_noisy", "test_reverb", "test_phone")
# dev's utterances through the same kinds of channel, but from the training side of augment (its noise kinds and room
# sizes): for choosing models and settings for robustness without looking at a test set.
DEV_HARDER_SETS = ("dev_noisy", "dev_reverb", "dev_phone")
DEGRADED_SETS = (*HARDER_SETS, *DEV_HARDER_SETS)
SPLITS = ("dev", "test", "test_accent", "test_voice", *HARDER_SETS, *DEV_HARDER_SETS, "train")  # <split>.jsonl each
AUDIO_DIRS = (*SPLITS, "train_other")
# test_phone: the call's own coding (augment.PHONE_CODECS, alternating), then a lossy codec for the recording of it
LOSSY = {"mp3": (16, 24, 32), "opus": (12, 16, 24)}  # bit rates in kbit/s


@dataclass(frozen=True)
class Plan:
    """Everything that decides which utterance is which; stored in plan.json and checked on every re-run."""

    seed: int
    dev_utts: int
    test_utts: int  # for test and for test_accent
    test_accent: str
    min_words: int
    max_words: int
    speed: tuple[int, int]  # words per minute, inclusive range
    pitch: tuple[int, int]  # espeak-ng pitch 0-99, inclusive range
    sentences_sha256: str  # of the normalised sentence list
    train_accents: tuple[str, ...]
    train_variants: tuple[str, ...] = TRAIN_VARIANTS
    heldout_variants: tuple[str, ...] = HELDOUT_VARIANTS
    accent_test_variants: tuple[str, ...] = CORE_VARIANTS  # test_accent's voices: a subset of the training ones
    # Added after the first corpora were built; a plan.json without them is upgraded in place (load_or_write_plan).
    other_train_voices: tuple[str, ...] = OTHER_TRAIN_VOICES
    test_voice: str = TEST_VOICE
    noisy_snrs: tuple[int, ...] = (0, 5, 10, 20)  # dB; utterance i gets noisy_snrs[i % 4]
    reverb_rt60: tuple[float, float] = (0.3, 1.0)  # seconds, uniform
    reverb_distance: tuple[float, float] = (1.0, 3.0)  # source to microphone, metres, uniform

    def to_json(self) -> dict:
        return json.loads(json.dumps(asdict(self)))  # tuples -> lists, as they come back from plan.json


@dataclass(frozen=True)
class Utterance:
    id: str
    split: str  # or "train_other": the flite / festival part of train, numbered on its own
    text: str
    voice: str  # espeak-ng: the accent as espeak-ng lists it; flite / festival: the voice name
    variant: str  # espeak-ng's voice variant; "" for the others
    speed: int  # words per minute
    pitch: int | None  # espeak-ng's 0-99; None for the others
    synth: str = ESPEAK

    @property
    def speaker(self) -> str:
        return f"{self.voice}+{self.variant}" if self.synth == ESPEAK else f"{self.synth}+{self.voice}"


# ---------------------------------------------------------------------------------------------------------------------
# The plan: sentences -> splits -> utterances


@dataclass(frozen=True)
class SentenceSplits:
    dev: list[str]
    test: list[str]
    test_accent: list[str]
    train: list[str]  # the pool train utterances cycle through
    lm: list[str]  # all corpus sentences (any length) minus dev/test/test_accent


def split_sentences(sentences: list[str], plan: Plan) -> SentenceSplits:
    eligible = [s for s in sentences if plan.min_words <= word_count(s) <= plan.max_words]
    need = plan.dev_utts + 2 * plan.test_utts
    if len(eligible) < need + 1:
        raise ValueError(f"{len(eligible)} sentences of {plan.min_words}-{plan.max_words} words; dev/test alone "
                         f"need {need} plus at least one for training")
    order = eligible[:]
    random.Random(plan.seed).shuffle(order)
    d, t = plan.dev_utts, plan.test_utts
    dev, test, test_accent, train = order[:d], order[d : d + t], order[d + t : d + 2 * t], order[d + 2 * t :]
    held = set(dev) | set(test) | set(test_accent)
    lm = [s for s in sentences if s not in held]
    # The guarantee the whole corpus exists for: no evaluation sentence in training audio or LM text.
    assert len(held) == need, "sentences must be unique"
    assert not held & set(train) and not held & set(lm), "dev/test sentences leaked into train or LM text"
    return SentenceSplits(dev, test, test_accent, train, lm)


def utterance(plan: Plan, splits: SentenceSplits, split: str, i: int) -> Utterance:
    """The i-th utterance of `split`: a pure function of (seed, split, i)."""
    rng = random.Random(f"{plan.seed}/{split}/{i}")  # str seeds hash with sha512: stable across runs and machines
    if split in ("train_other", "test_voice"):
        if split == "train_other":  # from the end of the pool: other sentences than espeak-ng's part of train
            text, voice = splits.train[-1 - i % len(splits.train)], rng.choice(plan.other_train_voices)
        else:
            text, voice = splits.test[i], plan.test_voice
        synth, name = voice.split("+")
        return Utterance(id=f"{split}-{i:06d}", split=split, text=text, voice=name, variant="",
                         speed=rng.randint(*plan.speed), pitch=None, synth=synth)  # fmt: skip
    if split == "train":
        text = splits.train[i % len(splits.train)]
        voice, variant = rng.choice(plan.train_accents), rng.choice(plan.train_variants)
    elif split == "test_accent":
        text = splits.test_accent[i]
        voice, variant = plan.test_accent, rng.choice(plan.accent_test_variants)
    else:
        text = getattr(splits, split)[i]
        voice, variant = rng.choice(plan.train_accents), rng.choice(plan.heldout_variants)
    return Utterance(
        id=f"{split}-{i:06d}", split=split, text=text, voice=voice, variant=variant,
        speed=rng.randint(*plan.speed), pitch=rng.randint(*plan.pitch),
    )  # fmt: skip


@dataclass(frozen=True)
class Degraded:
    """An utterance of a harder set: the clean test (or dev) utterance `source` through a channel."""

    id: str
    split: str  # one of DEGRADED_SETS
    source: Utterance
    channel: dict  # what was done to it, as the manifest line records it: noise and snr_db, rt60 ..., codecs
    seed: int  # of the numpy Generator that draws the noise samples, the RIR's details, the phone's codec noise

    text = property(lambda self: self.source.text)
    speaker = property(lambda self: self.source.speaker)
    synth = property(lambda self: self.source.synth)
    voice = property(lambda self: self.source.voice)
    variant = property(lambda self: self.source.variant)


def degraded(plan: Plan, splits: SentenceSplits, split: str, i: int) -> Degraded:
    """The i-th utterance of a harder set: test's (dev's, for dev_*) i-th utterance and a channel, a pure function of
    (seed, split, i); the channel's sources are augment's test side (TEST_NOISE_KINDS, random_room(..., "test")) for
    the test sets, its training side (TRAIN_NOISE_KINDS, training room sizes) for the dev sets."""
    rng = random.Random(f"{plan.seed}/{split}/{i}")
    seed = rng.getrandbits(63)
    if split not in DEGRADED_SETS:
        raise ValueError(f"not a harder set: {split!r}")
    base, kind = split.split("_")  # ("test" | "dev", "noisy" | "reverb" | "phone")
    side, n = ("test", plan.test_utts) if base == "test" else ("train", plan.dev_utts)
    if kind == "noisy":
        snr = plan.noisy_snrs[i % len(plan.noisy_snrs)]
        kinds = augment.TEST_NOISE_KINDS if side == "test" else augment.TRAIN_NOISE_KINDS
        channel: dict = {"noise": rng.choice(kinds), "snr_db": snr}
        if channel["noise"] in augment.BABBLE_KINDS:  # 3-7 other utterances of the same set: held-out voices
            others = rng.sample(range(n - 1), min(rng.randint(3, 7), n - 1))
            channel["talkers"] = [utterance(plan, splits, base, j + (j >= i)).id for j in sorted(others)]
    elif kind == "reverb":
        room = augment.random_room(np.random.default_rng(seed), side)
        channel = {"room": [round(d, 2) for d in room], "rt60": round(rng.uniform(*plan.reverb_rt60), 3),
                   "distance": round(rng.uniform(*plan.reverb_distance), 2)}  # fmt: skip
    else:
        codec = rng.choice(sorted(LOSSY))
        channel = {"phone_codec": augment.PHONE_CODECS[i % len(augment.PHONE_CODECS)], "codec": codec,
                   "bitrate_kbps": rng.choice(LOSSY[codec])}  # fmt: skip
    return Degraded(f"{split}-{i:06d}", split, utterance(plan, splits, base, i), channel, seed)


# ---------------------------------------------------------------------------------------------------------------------
# Synthesis


def synth_command(utt: Utterance, wav: Path) -> list[str]:
    """The command that speaks `utt` into `wav`; the text itself goes to its standard input, never into argv."""
    if utt.synth == ESPEAK:
        name = ESPEAK_NAME.get(utt.voice, utt.voice) + (f"+{utt.variant}" if utt.variant else "")
        return ["espeak-ng", "-v", name, "-s", str(utt.speed), "-p", str(utt.pitch), "-w", str(wav), "--stdin"]
    stretch = f"{DEFAULT_WPM / utt.speed:.4f}"
    if utt.synth == FLITE:
        return ["flite", "-voice", utt.voice, "--setf", f"duration_stretch={stretch}", "-o", str(wav)]
    if utt.synth == FESTIVAL:
        return ["text2wave", "-eval", f"(voice_{utt.voice})", "-eval", f"(Parameter.set 'Duration_Stretch {stretch})",
                "-o", str(wav)]  # fmt: skip
    raise ValueError(f"unknown synthesizer {utt.synth!r}")


def speak(utt: Utterance, tmp_wav: Path) -> tuple[np.ndarray, int]:
    """Synthesize `utt` -> (samples float32 (T,), sample rate): espeak-ng writes 22.05 kHz WAV, flite kal 8 kHz, the
    other flite voices and festival 16 kHz."""
    cmd = synth_command(utt, tmp_wav)
    done = subprocess.run(cmd, input=utt.text.encode(), capture_output=True)
    try:
        if done.returncode != 0 or not tmp_wav.exists():  # text2wave exits 0 and writes nothing for an unknown voice
            raise RuntimeError(f"{cmd[0]} wrote no audio for {utt.speaker} (exit {done.returncode}): "
                               f"{done.stderr.decode(errors='replace').strip()[:300]}")
        data, sr = sf.read(str(tmp_wav), dtype="float32", always_2d=True)  # (T, C)
    finally:
        tmp_wav.unlink(missing_ok=True)
    return data.mean(axis=1), sr


def probe(voice: str, variant: str, tmp: Path, synth: str = ESPEAK) -> np.ndarray:
    """`voice check` spoken by one voice at the default rate: the samples, for the checks below."""
    pitch = 50 if synth == ESPEAK else None
    utt = Utterance("check", "check", "voice check", voice, variant, DEFAULT_WPM, pitch, synth)
    return speak(utt, tmp / f"check-{synth}-{voice}-{variant}.wav")[0]


def check_voices(accents: tuple[str, ...], variants: tuple[str, ...], tmp: Path,
                 all_variants: tuple[str, ...] = ()) -> None:
    """Fail early if espeak-ng is missing or ignores a variant for some accent (it does for "en-gb+...")."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng not found: apt-get install -y espeak-ng")
    for accent in accents:
        waves = [probe(accent, v, tmp) for v in variants[:2]]
        if any(len(w) == 0 for w in waves):
            raise SystemExit(f"espeak-ng produced no audio for {accent}")
        if len(waves[0]) == len(waves[1]) and np.array_equal(waves[0], waves[1]):
            raise SystemExit(f"espeak-ng ignores voice variants for {accent!r}: {variants[0]} and {variants[1]} "
                             "sound the same; map it to another espeak voice name in ESPEAK_NAME")
    # A variant espeak-ng does not know falls back to the bare voice without an error: every one must change the sound.
    bare = probe(accents[0], "", tmp)
    for v in dict.fromkeys(all_variants):
        wave = probe(accents[0], v, tmp)
        if len(wave) == len(bare) and np.array_equal(wave, bare):
            raise SystemExit(f"espeak-ng does not know the voice variant {v!r} (it sounds like the bare voice)")


def check_other_voices(voices: tuple[str, ...], tmp: Path) -> None:
    """Fail early if flite / festival is missing or lacks a voice: flite falls back to its default voice without an
    error, so its voice list is asked; festival writes nothing for a voice it lacks (speak() raises)."""
    install = "apt-get install -y flite festival festvox-kallpc16k"
    for voice in dict.fromkeys(voices):
        synth, name = voice.split("+")
        if synth not in (FLITE, FESTIVAL) or shutil.which({FLITE: "flite", FESTIVAL: "text2wave"}[synth]) is None:
            raise SystemExit(f"voice {voice!r}: {synth} not found or not a synthesizer used here ({install})")
        if synth == FLITE:
            listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout.split(":")[-1].split()
            if name not in listed:
                raise SystemExit(f"flite has no voice {name!r} (it has {', '.join(listed)})")
        try:
            wave = probe(name, "", tmp, synth)
        except RuntimeError as e:
            raise SystemExit(f"voice {voice!r}: {e} ({install})") from None
        if len(wave) == 0 or np.abs(wave).max() < 0.01:
            raise SystemExit(f"voice {voice!r} produced no audible audio")


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core already; extra threads would only fight over the cores


def make(job: tuple[Utterance | Degraded, str]) -> tuple[str, float]:
    """Make one utterance's FLAC under the corpus directory (job: utterance, corpus directory); returns (id, seconds).
    Runs in the pool's worker processes."""
    utt, out = job
    path = audio_path(Path(out), utt)
    wave16 = degrade(utt, Path(out)) if isinstance(utt, Degraded) else synthesize(utt, path)
    write_flac(path, wave16)
    return utt.id, len(wave16) / SAMPLE_RATE


def synthesize(utt: Utterance, path: Path) -> np.ndarray:
    """Speak `utt` -> (T,) float32 at SAMPLE_RATE."""
    import torch

    from speechdraw.asr.audio import resample

    path.parent.mkdir(parents=True, exist_ok=True)
    wave, sr = speak(utt, path.with_name(path.name + f".{os.getpid()}.wav"))
    if len(wave) == 0:
        raise RuntimeError(f"{utt.synth} produced no audio for {utt}")
    return resample(torch.from_numpy(wave), sr, SAMPLE_RATE).clamp_(-1.0, 1.0).numpy()  # (T,) at 16 kHz


def degrade(utt: Degraded, out: Path) -> np.ndarray:
    """The clean test utterance's audio through utt.channel -> (S,) float32, as long as the clean one."""
    clean = read_wave(audio_path(out, utt.source))  # (S,)
    rng, c = np.random.default_rng(utt.seed), utt.channel
    if utt.split.endswith("_noisy"):
        talkers = [read_wave(out / "audio" / utt.source.split / f"{t}.flac") for t in c.get("talkers", [])]
        noise = augment.make_noise(c["noise"], len(clean), SAMPLE_RATE, rng, talkers or None)  # (S,) unit RMS
        wave = augment.mix_at_snr(clean, noise, c["snr_db"])
    elif utt.split.endswith("_reverb"):
        rir = augment.make_rir(rng, SAMPLE_RATE, c["rt60"], c["distance"], tuple(c["room"]))  # (K,)
        wave = augment.reverberate(clean, rir)
    else:
        phone = augment.telephone(clean, SAMPLE_RATE, rng, codec=c["phone_codec"])
        wave = augment.codec_roundtrip(phone, SAMPLE_RATE, c["codec"], c["bitrate_kbps"])
    peak = float(np.abs(wave).max())
    return wave * (0.99 / peak) if peak > 0.99 else wave  # scaled, never clipped: the SNR stays what it says


def read_wave(path: Path) -> np.ndarray:
    wave, sr = sf.read(str(path), dtype="float32")  # (S,) the corpus's own mono FLAC
    if sr != SAMPLE_RATE or wave.ndim != 1:
        raise RuntimeError(f"{path}: expected mono {SAMPLE_RATE} Hz, got {sr} Hz, shape {wave.shape}")
    return wave


def write_flac(path: Path, wave: np.ndarray) -> None:
    """(T,) float32 at SAMPLE_RATE -> 16-bit FLAC, under a temporary name first: a killed run leaves no half file."""
    tmp = path.with_name(path.name + ".tmp")
    sf.write(str(tmp), wave, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    os.replace(tmp, path)


def audio_path(out: Path, utt: Utterance | Degraded) -> Path:
    return out / "audio" / utt.split / f"{utt.id}.flac"


def existing_duration(path: Path) -> float | None:
    """Seconds of a finished file, or None when it is absent (unfinished files only ever exist as *.tmp)."""
    return audio_info(path).duration if path.exists() else None


class Synthesizer:
    """Runs synthesis jobs on a process pool and remembers every utterance's duration."""

    def __init__(self, out: Path, jobs: int, check: Callable[[], None] = lambda: None) -> None:
        import torch  # noqa: F401  imported before the fork, so workers share it instead of each paying seconds for it

        self.out, self.jobs, self.check = out, jobs, check  # check: runs once, before the first file is made
        self.pool = mp.get_context("fork").Pool(jobs, initializer=_init_worker) if jobs > 1 else None
        self.durations: dict[str, float] = {}
        self.made = 0

    def run(self, utts: list[Utterance] | list[Degraded]) -> None:
        todo = []
        for u in utts:
            seconds = existing_duration(audio_path(self.out, u))
            if seconds is None:
                todo.append((u, str(self.out)))
            else:
                self.durations[u.id] = seconds
        if not todo:
            return
        self.check()
        self.check = lambda: None
        results = self.pool.imap_unordered(make, todo, chunksize=8) if self.pool else map(make, todo)
        for uid, seconds in results:
            self.durations[uid] = seconds
            self.made += 1

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool.join()


# ---------------------------------------------------------------------------------------------------------------------
# Driver


def load_or_write_plan(out: Path, plan: Plan) -> None:
    """A corpus continues only under the plan it was started with. Fields added to Plan since (the other synthesizers)
    decide only new utterances, so a plan.json that lacks them but matches in every other field is upgraded."""
    path, new = out / "plan.json", plan.to_json()
    if path.exists():
        old = json.loads(path.read_text())
        diff = sorted(k for k in old.keys() | new.keys() if k in old and old.get(k) != new.get(k))
        if diff or old.keys() - new.keys():
            raise SystemExit(f"{out} was built with different settings ({', '.join(diff)}); use a new --out, "
                             "or the original settings to continue it")
        if new.keys() - old.keys():
            print(f"{path}: adding {', '.join(sorted(new.keys() - old.keys()))} (dev/test/test_accent unchanged)")
    if not path.exists() or json.loads(path.read_text()) != new:
        tmp = path.with_name("plan.json.tmp")
        tmp.write_text(json.dumps(new, indent=2) + "\n")
        os.replace(tmp, path)


def entry(out: Path, utt: Utterance | Degraded, seconds: float) -> ManifestEntry:
    """A manifest line; a harder test set's line adds its source utterance's id and the channel (noise, snr_db, ...)."""
    src = utt.source if isinstance(utt, Degraded) else utt
    extra = {"synth": src.synth, "voice": src.voice, "variant": src.variant, "speed": src.speed, "pitch": src.pitch}
    if isinstance(utt, Degraded):
        extra |= {"source": src.id, **utt.channel, "seed": utt.seed}  # seed: of the noise, RIR, codec draws
    return ManifestEntry(audio=str(audio_path(out, utt).resolve()), duration=seconds, text=utt.text,
                         speaker=utt.speaker, extra=extra)  # fmt: skip


def plan_from_args(args: argparse.Namespace, sentences: list[str]) -> Plan:
    """The settings that decide which utterance is which, for a build or a --sample of the same corpus."""
    if args.test_accent not in ACCENTS:
        raise SystemExit(f"--test-accent must be one of {', '.join(ACCENTS)}")
    return Plan(
        seed=args.seed, dev_utts=args.dev_utts, test_utts=args.test_utts, test_accent=args.test_accent,
        min_words=args.min_words, max_words=args.max_words, speed=tuple(args.speed), pitch=tuple(args.pitch),
        sentences_sha256=hashlib.sha256("\n".join(sentences).encode()).hexdigest(),
        train_accents=tuple(a for a in ACCENTS if a != args.test_accent),
    )  # fmt: skip


def build(args: argparse.Namespace) -> dict:
    t0 = time.time()
    out: Path = args.out.expanduser().resolve()
    if not 0 <= args.other_share <= 1:
        raise SystemExit(f"--other-share must be between 0 and 1, not {args.other_share}")
    source = resolve_source(args.source, args.cache, args.fetch)
    sentences = build_sentences(source, lines=args.lines)
    plan = plan_from_args(args, sentences)
    splits = split_sentences(sentences, plan)
    print(f"{source}: {len(sentences)} sentences, {len(splits.train)} for train utterances, "
          f"{len(splits.lm)} for LM text", flush=True)

    for d in AUDIO_DIRS:
        (out / "audio" / d).mkdir(parents=True, exist_ok=True)
        for stale in (out / "audio" / d).glob("*.tmp"):  # left by a killed run
            stale.unlink()
        for stale in (out / "audio" / d).glob("*.wav"):
            stale.unlink()
    load_or_write_plan(out, plan)
    write_text(out / "lm_train.txt", "".join(s + "\n" for s in splits.lm))  # needs no audio: others can start on it

    def check() -> None:  # only when something is to be spoken: a finished corpus re-runs in seconds
        check_voices(ACCENTS, plan.train_variants, out / "audio",
                     plan.train_variants + plan.heldout_variants + plan.accent_test_variants)
        check_other_voices((*plan.other_train_voices, plan.test_voice), out / "audio")

    synth = Synthesizer(out, args.jobs, check)
    chosen: dict[str, list[Utterance]] = {}
    try:
        for split, n in (("dev", plan.dev_utts), ("test", plan.test_utts), ("test_accent", plan.test_utts),
                         ("test_voice", plan.test_utts)):  # fmt: skip
            chosen[split] = [utterance(plan, splits, split, i) for i in range(n)]
            synth.run(chosen[split])
            write_manifest(out / f"{split}.jsonl", [entry(out, u, synth.durations[u.id]) for u in chosen[split]])
            print(f"{split}: {n} utterances, {sum(synth.durations[u.id] for u in chosen[split]) / 3600:.2f} h "
                  f"({time.time() - t0:.0f} s)", flush=True)
        for split in HARDER_SETS:  # test's audio through a channel: needs test finished
            chosen[split] = [degraded(plan, splits, split, i) for i in range(plan.test_utts)]
            synth.run(chosen[split])
            write_manifest(out / f"{split}.jsonl", [entry(out, u, synth.durations[u.id]) for u in chosen[split]])
            print(f"{split}: {plan.test_utts} utterances ({time.time() - t0:.0f} s)", flush=True)
        for split in DEV_HARDER_SETS:  # dev's audio through the training side's channels
            chosen[split] = [degraded(plan, splits, split, i) for i in range(plan.dev_utts)]
            synth.run(chosen[split])
            write_manifest(out / f"{split}.jsonl", [entry(out, u, synth.durations[u.id]) for u in chosen[split]])
            print(f"{split}: {plan.dev_utts} utterances ({time.time() - t0:.0f} s)", flush=True)
        other_hours = args.hours * args.other_share
        chosen["train"] = (fill(synth, plan, splits, "train", args.hours - other_hours, args.jobs, t0)
                           + fill(synth, plan, splits, "train_other", other_hours, args.jobs, t0))  # fmt: skip
        write_manifest(out / "train.jsonl", [entry(out, u, synth.durations[u.id]) for u in chosen["train"]])
    finally:
        synth.close()

    # Checks on what is actually on disk, not on what the plan intended.
    lm_set = set((out / "lm_train.txt").read_text(encoding="utf-8").splitlines())
    train_text = {u.text for u in chosen["train"]}
    overlap = {}
    for split in ("dev", "test", "test_accent", "test_voice"):
        held = {u.text for u in chosen[split]}
        overlap[split] = {"train": len(held & train_text), "lm_train": len(held & lm_set)}
        assert overlap[split] == {"train": 0, "lm_train": 0}, f"{split} sentences overlap training text: {overlap}"
    assert plan.test_voice not in {u.speaker for u in chosen["train"]}, "test_voice's voice is in train"
    chars = TokenSet.characters()
    for split in SPLITS:
        report = validate_manifest(out / f"{split}.jsonl", tokens=chars, jobs=args.jobs * 4)
        if not report.ok:
            raise SystemExit("manifest validation failed:\n" + report.format(limit=20))

    summary = summarize(plan, chosen, synth.durations, splits, overlap, time.time() - t0, source)
    write_text(out / "corpus.json", json.dumps(summary, indent=2) + "\n")
    return summary


def build_sample(args: argparse.Namespace) -> dict:
    """--sample N: N seeded utterances of each evaluation set of the full corpus's plan (never dev or train)."""
    out: Path = args.out.expanduser().resolve()
    sentences = build_sentences(resolve_source(args.source, args.cache, args.fetch), lines=args.lines)
    plan = plan_from_args(args, sentences)
    if not 0 < args.sample <= plan.test_utts:
        raise SystemExit(f"--sample must be between 1 and --test-utts ({plan.test_utts}), not {args.sample}")
    splits = split_sentences(sentences, plan)
    for d in ("test", "test_accent", "test_voice", *HARDER_SETS):
        (out / "audio" / d).mkdir(parents=True, exist_ok=True)
    sample = {**plan.to_json(), "sample": args.sample}  # a sample directory is never mistaken for a corpus
    path = out / "plan.json"
    if path.exists() and json.loads(path.read_text()) != sample:
        raise SystemExit(f"{out} holds another build; use a new --out")
    write_text(path, json.dumps(sample, indent=2) + "\n")
    picks = sorted(random.Random(f"{plan.seed}/sample").sample(range(plan.test_utts), args.sample))
    def check() -> None:
        check_voices(ACCENTS, plan.heldout_variants, out / "audio", plan.heldout_variants + plan.accent_test_variants)
        check_other_voices((plan.test_voice,), out / "audio")

    synth = Synthesizer(out, args.jobs, check)
    summary: dict[str, dict] = {}
    try:
        clean = {split: [utterance(plan, splits, split, i) for i in picks] for split in ("test", "test_accent",
                                                                                         "test_voice")}
        hard = {split: [degraded(plan, splits, split, i) for i in picks] for split in HARDER_SETS}
        talkers = sorted({int(t.rsplit("-", 1)[1]) for u in hard["test_noisy"] for t in u.channel.get("talkers", [])})
        synth.run([*clean["test"], *(utterance(plan, splits, "test", i) for i in talkers if i not in picks),
                   *clean["test_accent"], *clean["test_voice"]])  # babble talkers: other test utterances
        synth.run([u for us in hard.values() for u in us])
        for split, utts in {**clean, **hard}.items():
            write_manifest(out / f"{split}.jsonl", [entry(out, u, synth.durations[u.id]) for u in utts])
            summary[split] = {"utterances": len(utts), "seconds": round(sum(synth.durations[u.id] for u in utts), 2)}
    finally:
        synth.close()
    held = set(splits.test) | set(splits.test_accent)
    assert all(u.text in held for us in (*clean.values(), *hard.values()) for u in us), "a sample left the test sets"
    return {"sample": args.sample, "indices": picks, "splits": summary}


def fill(synth: Synthesizer, plan: Plan, splits: SentenceSplits, stream: str, hours: float, jobs: int,
         t0: float) -> list[Utterance]:
    """The first utterances of `stream` ("train" or "train_other") that reach `hours`, synthesized. Chunks are sized
    from the mean duration so far, so the overshoot is about one chunk of parallel work."""
    target, chosen, total = hours * 3600, [], 0.0
    while total < target:
        mean = total / len(chosen) if chosen else 5.0
        size = max(4 * jobs, min(1000, math.ceil((target - total) / mean * 1.02)))
        chunk = [utterance(plan, splits, stream, len(chosen) + i) for i in range(size)]
        synth.run(chunk)
        for u in chunk:
            if total >= target:
                break
            chosen.append(u)
            total += synth.durations[u.id]
        print(f"{stream}: {len(chosen)} utterances, {total / 3600:.2f} / {hours:.2f} h "
              f"({synth.made} synthesized this run, {time.time() - t0:.0f} s)", flush=True)
    return chosen


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def summarize(
    plan: Plan,
    chosen: dict[str, list],
    durations: dict[str, float],
    splits: SentenceSplits,
    overlap: dict[str, dict[str, int]],
    seconds: float,
    source: Path,
) -> dict:
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip()
    flite = subprocess.run(["flite", "--version"], capture_output=True, text=True).stdout.strip()
    festival = subprocess.run(["festival", "--version"], capture_output=True, text=True).stdout.strip()
    per_split = {}
    for split, utts in chosen.items():
        secs = [durations[u.id] for u in utts]
        per_split[split] = {
            "utterances": len(utts),
            "hours": round(sum(secs) / 3600, 3),
            "mean_seconds": round(sum(secs) / max(1, len(secs)), 2),
            "words": sum(word_count(u.text) for u in utts),
            "distinct_sentences": len({u.text for u in utts}),
            "accents": sorted({u.voice for u in utts if u.synth == ESPEAK}),
            "variants": sorted({u.variant for u in utts if u.synth == ESPEAK}),
            "speakers": len({u.speaker for u in utts}),
            "by_voice": voice_counts(utts, durations),
        }
        if split in DEGRADED_SETS:
            per_split[split]["channel"] = channel_summary([u.channel for u in utts])
    return {
        "splits": per_split,
        "lm_train_sentences": len(splits.lm),
        "overlap_with_train_and_lm_text": overlap,
        "plan": plan.to_json(),
        "source": str(source),
        "espeak_ng": version,
        "flite": flite,
        "festival": festival,
        "sample_rate": SAMPLE_RATE,
        "build_seconds_this_run": round(seconds, 1),
        "command": " ".join([sys.executable, *sys.argv]),
    }


def voice_counts(utts: list[Utterance], durations: dict[str, float]) -> dict[str, dict]:
    """Utterances and hours per voice: espeak-ng as one (its 315 accent+variant speakers are too many to list)."""
    counts: dict[str, dict] = {}
    for u in utts:
        c = counts.setdefault(ESPEAK if u.synth == ESPEAK else u.speaker, {"utterances": 0, "hours": 0.0})
        c["utterances"] += 1
        c["hours"] += durations[u.id] / 3600
    return {k: {"utterances": c["utterances"], "hours": round(c["hours"], 3)} for k, c in sorted(counts.items())}


def channel_summary(channels: list[dict]) -> dict:
    """Counts per value of each categorical channel field (noise, snr_db, codecs), the range of each numeric one."""
    summary: dict[str, dict] = {}
    for key in dict.fromkeys(k for c in channels for k in c if k not in ("talkers", "room")):
        values = [c[key] for c in channels if key in c]
        if all(isinstance(v, float) for v in values):
            summary[key] = {"min": min(values), "max": max(values)}
        else:
            summary[key] = {str(v): values.count(v) for v in sorted(set(values), key=str)}
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_source_args(p)
    p.add_argument("--out", type=Path, required=True, help="output directory (required; keep it outside the repo)")
    p.add_argument("--hours", type=float, default=10.0, help="hours of training audio (default: 10.0)")
    p.add_argument("--other-share", type=float, default=0.3,
                   help="share of --hours spoken by flite and festival, the rest by espeak-ng (default: 0.3)")
    p.add_argument("--dev-utts", type=int, default=1000, help="dev utterances (default: 1000)")
    p.add_argument("--test-utts", type=int, default=1000,
                   help="utterances in test, test_accent, test_voice (default: 1000)")
    p.add_argument("--test-accent", default="en-gb-scotland",
                   help=f"accent kept out of training, one of {', '.join(ACCENTS)} (default: en-gb-scotland)")
    p.add_argument("--min-words", type=int, default=5, help="shortest utterance in words (default: 5)")
    p.add_argument("--max-words", type=int, default=30, help="longest utterance in words (default: 30)")
    p.add_argument("--speed", type=int, nargs=2, default=(140, 200), metavar=("MIN", "MAX"),
                   help="speaking rate range in words per minute (default: 140 200)")
    p.add_argument("--pitch", type=int, nargs=2, default=(30, 70), metavar=("MIN", "MAX"),
                   help="espeak-ng pitch range, 0-99 (default: 30 70)")
    p.add_argument("--seed", type=int, default=0, help="decides sentences, voices, speeds, pitches (default: 0)")
    p.add_argument("--sample", type=int, default=0, metavar="N",
                   help="speak only N seeded utterances of each evaluation set (test, test_accent, test_voice, "
                   "test_noisy, test_reverb, test_phone) of the corpus these settings describe; no dev or training "
                   "audio (default: 0 = build the corpus)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help=f"parallel synthesis processes (default: {os.cpu_count() or 1}, the CPU count)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.sample:
        summary = build_sample(args)
        for split, s in summary["splits"].items():
            print(f"{split:12s} {s['utterances']:6d} utterances {s['seconds']:8.1f} s  -> {args.out / split}.jsonl")
        print(f"sample of {summary['sample']} utterances per set (test indices {summary['indices']}): sentences and "
              "voices no model trained on this corpus has heard")
        return 0
    summary = build(args)
    for split, s in summary["splits"].items():
        voices = ", ".join(f"{v} {c['utterances']}" for v, c in s["by_voice"].items())
        print(f"{split:12s} {s['utterances']:6d} utterances {s['hours']:7.2f} h  voices: {voices}  "
              f"(espeak-ng accents {','.join(s['accents']) or '-'}; variants {','.join(s['variants']) or '-'})")
    print(f"lm_train.txt: {summary['lm_train_sentences']} sentences; dev/test overlap with train and LM text: 0")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
