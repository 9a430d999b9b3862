"""Build the synthetic-speech corpus: sentences spoken by espeak-ng in several English accents and voice variants.

    apt-get install -y espeak-ng
    python data_prep/synth_speech.py --fetch --out ~/speechdraw-runs/data/synth               # default: 10 h of train
    python data_prep/synth_speech.py --out /tmp/synth-tiny --hours 0.05 --dev-utts 20 --test-utts 20   # a quick one

Re-running the same command continues where a previous run stopped (finished files are kept; every file is written
to a temporary name and renamed, so a killed run leaves no half-written audio); raising --hours adds train audio.

What it writes under --out:
  audio/<split>/<split>-NNNNNN.flac   16 kHz mono FLAC
  train.jsonl                          training voices: 7 accents x 45 voice variants
  dev.jsonl, test.jsonl                the same accents, 4 voice variants never used in training
  test_accent.jsonl                    an accent never used in training (--test-accent), 13 of the training variants,
                                       so the accent is the only thing that changed
  lm_train.txt                         every corpus sentence except the dev/test ones (checked: zero overlap)
  corpus.json                          hours, counts, accents and variants per split; the settings
  plan.json                            the settings that decide which utterance is which (a re-run must match them)
Each manifest line records speaker (accent+variant), voice, variant, speed (words per minute) and pitch (0-99).

Splits are decided on normalised, de-duplicated sentences: each sentence of 5-30 words goes to at most one of dev,
test, test_accent, train, so no dev/test sentence is ever heard in training or seen by the LM. Everything (which
sentence, which voice, speed and pitch) is a pure function of --seed and the utterance index, so two runs with the
same settings give the same corpus. Train utterances are added in index order until --hours is reached; a few files
past that point (the last parallel chunk) may stay on disk unused, ready for a later, larger --hours.
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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from text_corpus import add_source_args, build_sentences, resolve_source

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
SPLITS = ("dev", "test", "test_accent", "train")


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

    def to_json(self) -> dict:
        return json.loads(json.dumps(asdict(self)))  # tuples -> lists, as they come back from plan.json


@dataclass(frozen=True)
class Utterance:
    id: str
    split: str
    text: str
    voice: str  # accent, as espeak-ng lists it
    variant: str
    speed: int
    pitch: int

    @property
    def speaker(self) -> str:
        return f"{self.voice}+{self.variant}"


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


# ---------------------------------------------------------------------------------------------------------------------
# Synthesis


def espeak_command(voice: str, variant: str, speed: int, pitch: int, text: str, wav: Path) -> list[str]:
    name = ESPEAK_NAME.get(voice, voice) + (f"+{variant}" if variant else "")
    return ["espeak-ng", "-v", name, "-s", str(speed), "-p", str(pitch),
            "-w", str(wav), text]  # fmt: skip


def speak(voice: str, variant: str, speed: int, pitch: int, text: str, tmp_wav: Path) -> tuple[np.ndarray, int]:
    """espeak-ng -> (samples float32, sample rate); espeak-ng writes 22.05 kHz mono 16-bit WAV."""
    subprocess.run(espeak_command(voice, variant, speed, pitch, text, tmp_wav), check=True, capture_output=True)
    try:
        data, sr = sf.read(str(tmp_wav), dtype="float32", always_2d=True)  # (T, C)
    finally:
        tmp_wav.unlink(missing_ok=True)
    return data.mean(axis=1), sr


def check_voices(accents: tuple[str, ...], variants: tuple[str, ...], tmp: Path,
                 all_variants: tuple[str, ...] = ()) -> None:
    """Fail early if espeak-ng is missing or ignores a variant for some accent (it does for "en-gb+...")."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng not found: apt-get install -y espeak-ng")
    for accent in accents:
        waves = [speak(accent, v, 175, 50, "voice check", tmp / f"check-{accent}-{v}.wav")[0] for v in variants[:2]]
        if any(len(w) == 0 for w in waves):
            raise SystemExit(f"espeak-ng produced no audio for {accent}")
        if len(waves[0]) == len(waves[1]) and np.array_equal(waves[0], waves[1]):
            raise SystemExit(f"espeak-ng ignores voice variants for {accent!r}: {variants[0]} and {variants[1]} "
                             "sound the same; map it to another espeak voice name in ESPEAK_NAME")
    # A variant espeak-ng does not know falls back to the bare voice without an error: every one must change the sound.
    bare = speak(accents[0], "", 175, 50, "voice check", tmp / "check-bare.wav")[0]
    for v in dict.fromkeys(all_variants):
        wave = speak(accents[0], v, 175, 50, "voice check", tmp / f"check-{v}.wav")[0]
        if len(wave) == len(bare) and np.array_equal(wave, bare):
            raise SystemExit(f"espeak-ng does not know the voice variant {v!r} (it sounds like the bare voice)")


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core already; extra threads would only fight over the cores


def synthesize(job: tuple[Utterance, str]) -> tuple[str, float]:
    """Speak one utterance into its FLAC (written under a temporary name, then renamed); returns (id, seconds)."""
    import torch

    from speechdraw.asr.audio import resample

    utt, out = job
    out_path = Path(out)
    tmp_wav = out_path.with_name(out_path.name + f".{os.getpid()}.wav")
    wave, sr = speak(utt.voice, utt.variant, utt.speed, utt.pitch, utt.text, tmp_wav)
    if len(wave) == 0:
        raise RuntimeError(f"espeak-ng produced no audio for {utt}")
    wave16 = resample(torch.from_numpy(wave), sr, SAMPLE_RATE).clamp_(-1.0, 1.0).numpy()  # (T,) at 16 kHz
    tmp_flac = out_path.with_name(out_path.name + ".tmp")
    sf.write(str(tmp_flac), wave16, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    os.replace(tmp_flac, out_path)
    return utt.id, len(wave16) / SAMPLE_RATE


def audio_path(out: Path, utt: Utterance) -> Path:
    return out / "audio" / utt.split / f"{utt.id}.flac"


def existing_duration(path: Path) -> float | None:
    """Seconds of a finished file, or None when it is absent (unfinished files only ever exist as *.tmp)."""
    return audio_info(path).duration if path.exists() else None


class Synthesizer:
    """Runs synthesis jobs on a process pool and remembers every utterance's duration."""

    def __init__(self, out: Path, jobs: int) -> None:
        import torch  # noqa: F401  imported before the fork, so workers share it instead of each paying seconds for it

        self.out, self.jobs = out, jobs
        self.pool = mp.get_context("fork").Pool(jobs, initializer=_init_worker) if jobs > 1 else None
        self.durations: dict[str, float] = {}
        self.made = 0

    def run(self, utts: list[Utterance]) -> None:
        todo = []
        for u in utts:
            seconds = existing_duration(audio_path(self.out, u))
            if seconds is None:
                todo.append((u, str(audio_path(self.out, u))))
            else:
                self.durations[u.id] = seconds
        if not todo:
            return
        results = self.pool.imap_unordered(synthesize, todo, chunksize=8) if self.pool else map(synthesize, todo)
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
    path = out / "plan.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old != plan.to_json():
            diff = sorted(k for k in old.keys() | plan.to_json().keys() if old.get(k) != plan.to_json().get(k))
            raise SystemExit(f"{out} was built with different settings ({', '.join(diff)}); use a new --out, "
                             "or the original settings to continue it")
    else:
        path.write_text(json.dumps(plan.to_json(), indent=2) + "\n")


def entry(out: Path, utt: Utterance, seconds: float) -> ManifestEntry:
    return ManifestEntry(
        audio=str(audio_path(out, utt).resolve()), duration=seconds, text=utt.text, speaker=utt.speaker,
        extra={"voice": utt.voice, "variant": utt.variant, "speed": utt.speed, "pitch": utt.pitch},
    )  # fmt: skip


def build(args: argparse.Namespace) -> dict:
    t0 = time.time()
    out: Path = args.out.expanduser().resolve()
    if args.test_accent not in ACCENTS:
        raise SystemExit(f"--test-accent must be one of {', '.join(ACCENTS)}")
    source = resolve_source(args.source, args.cache, args.fetch)
    sentences = build_sentences(source, lines=args.lines)
    plan = Plan(
        seed=args.seed, dev_utts=args.dev_utts, test_utts=args.test_utts, test_accent=args.test_accent,
        min_words=args.min_words, max_words=args.max_words, speed=tuple(args.speed), pitch=tuple(args.pitch),
        sentences_sha256=hashlib.sha256("\n".join(sentences).encode()).hexdigest(),
        train_accents=tuple(a for a in ACCENTS if a != args.test_accent),
    )  # fmt: skip
    splits = split_sentences(sentences, plan)
    print(f"{source}: {len(sentences)} sentences, {len(splits.train)} for train utterances, "
          f"{len(splits.lm)} for LM text", flush=True)

    for d in SPLITS:
        (out / "audio" / d).mkdir(parents=True, exist_ok=True)
        for stale in (out / "audio" / d).glob("*.tmp"):  # left by a killed run
            stale.unlink()
        for stale in (out / "audio" / d).glob("*.wav"):
            stale.unlink()
    load_or_write_plan(out, plan)
    check_voices(ACCENTS, plan.train_variants, out / "audio",
                 plan.train_variants + plan.heldout_variants + plan.accent_test_variants)

    synth = Synthesizer(out, args.jobs)
    chosen: dict[str, list[Utterance]] = {}
    try:
        for split, n in (("dev", plan.dev_utts), ("test", plan.test_utts), ("test_accent", plan.test_utts)):
            chosen[split] = [utterance(plan, splits, split, i) for i in range(n)]
            synth.run(chosen[split])
            print(f"{split}: {n} utterances, {sum(synth.durations[u.id] for u in chosen[split]) / 3600:.2f} h "
                  f"({time.time() - t0:.0f} s)", flush=True)

        # Train: add utterances in index order until the first n of them reach --hours. Chunks are sized from the
        # mean duration so far, so the overshoot is about one chunk of parallel work.
        target, train, total = args.hours * 3600, [], 0.0
        while total < target:
            mean = total / len(train) if train else 5.0
            size = max(4 * args.jobs, min(1000, math.ceil((target - total) / mean * 1.02)))
            chunk = [utterance(plan, splits, "train", len(train) + i) for i in range(size)]
            synth.run(chunk)
            for u in chunk:
                if total >= target:
                    break
                train.append(u)
                total += synth.durations[u.id]
            print(f"train: {len(train)} utterances, {total / 3600:.2f} / {args.hours:.2f} h "
                  f"({synth.made} synthesized this run, {time.time() - t0:.0f} s)", flush=True)
        chosen["train"] = train
    finally:
        synth.close()

    for split in SPLITS:
        write_manifest(out / f"{split}.jsonl", [entry(out, u, synth.durations[u.id]) for u in chosen[split]])
    (out / "lm_train.txt").write_text("".join(s + "\n" for s in splits.lm), encoding="utf-8")

    # Checks on what is actually on disk, not on what the plan intended.
    lm_set = set((out / "lm_train.txt").read_text(encoding="utf-8").splitlines())
    train_text = {u.text for u in chosen["train"]}
    overlap = {}
    for split in ("dev", "test", "test_accent"):
        held = {u.text for u in chosen[split]}
        overlap[split] = {"train": len(held & train_text), "lm_train": len(held & lm_set)}
        assert overlap[split] == {"train": 0, "lm_train": 0}, f"{split} sentences overlap training text: {overlap}"
    chars = TokenSet.characters()
    for split in SPLITS:
        report = validate_manifest(out / f"{split}.jsonl", tokens=chars, jobs=args.jobs * 4)
        if not report.ok:
            raise SystemExit("manifest validation failed:\n" + report.format(limit=20))

    summary = summarize(plan, chosen, synth.durations, splits, overlap, time.time() - t0, source)
    (out / "corpus.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def summarize(
    plan: Plan,
    chosen: dict[str, list[Utterance]],
    durations: dict[str, float],
    splits: SentenceSplits,
    overlap: dict[str, dict[str, int]],
    seconds: float,
    source: Path,
) -> dict:
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip()
    per_split = {}
    for split, utts in chosen.items():
        secs = [durations[u.id] for u in utts]
        per_split[split] = {
            "utterances": len(utts),
            "hours": round(sum(secs) / 3600, 3),
            "mean_seconds": round(sum(secs) / max(1, len(secs)), 2),
            "words": sum(word_count(u.text) for u in utts),
            "distinct_sentences": len({u.text for u in utts}),
            "accents": sorted({u.voice for u in utts}),
            "variants": sorted({u.variant for u in utts}),
            "speakers": len({u.speaker for u in utts}),
        }
    return {
        "splits": per_split,
        "lm_train_sentences": len(splits.lm),
        "overlap_with_train_and_lm_text": overlap,
        "plan": plan.to_json(),
        "source": str(source),
        "espeak_ng": version,
        "sample_rate": SAMPLE_RATE,
        "build_seconds_this_run": round(seconds, 1),
        "command": " ".join([sys.executable, *sys.argv]),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_source_args(p)
    p.add_argument("--out", type=Path, required=True, help="output directory (required; keep it outside the repo)")
    p.add_argument("--hours", type=float, default=10.0, help="hours of training audio (default: 10.0)")
    p.add_argument("--dev-utts", type=int, default=1000, help="dev utterances (default: 1000)")
    p.add_argument("--test-utts", type=int, default=1000, help="utterances in test and in test_accent (default: 1000)")
    p.add_argument("--test-accent", default="en-gb-scotland",
                   help=f"accent kept out of training, one of {', '.join(ACCENTS)} (default: en-gb-scotland)")
    p.add_argument("--min-words", type=int, default=5, help="shortest utterance in words (default: 5)")
    p.add_argument("--max-words", type=int, default=30, help="longest utterance in words (default: 30)")
    p.add_argument("--speed", type=int, nargs=2, default=(140, 200), metavar=("MIN", "MAX"),
                   help="speaking rate range in words per minute (default: 140 200)")
    p.add_argument("--pitch", type=int, nargs=2, default=(30, 70), metavar=("MIN", "MAX"),
                   help="espeak-ng pitch range, 0-99 (default: 30 70)")
    p.add_argument("--seed", type=int, default=0, help="decides sentences, voices, speeds, pitches (default: 0)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help=f"parallel synthesis processes (default: {os.cpu_count() or 1}, the CPU count)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    summary = build(parse_args(argv))
    for split, s in summary["splits"].items():
        print(f"{split:12s} {s['utterances']:6d} utterances {s['hours']:7.2f} h  accents {','.join(s['accents'])}  "
              f"variants {','.join(s['variants'])}")
    print(f"lm_train.txt: {summary['lm_train_sentences']} sentences; dev/test overlap with train and LM text: 0")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
