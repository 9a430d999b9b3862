"""Transcription speed on this machine: real-time factor (processing seconds per audio second, lower is faster) of
greedy and beam search + n-gram LM decoding, batch 1 and batched, and the peak memory for a 1-hour file. Greedy runs
twice, with the acoustic model in PyTorch and as ONNX in onnxruntime (a copy of the release given model.onnx as
recipes/asr/export.py --onnx writes it; skipped without speechdraw[onnx]), both with --threads threads.

The audio is synthesized: a few dozen sentences spoken by espeak-ng, placed between 0.6-1.6 s pauses over a faint
noise floor and repeated until the wanted length, written block by block as 16 kHz FLAC. The LM is a character
6-gram trained on those sentences (or --lm/--lexicon). RTF runs transcribe a --minutes file in this process after one
warm-up; the hour runs in a fresh process per measurement (peak RSS from getrusage), with the 2-minute file beside it.

    python bench/transcribe_speed.py --model ~/speechdraw-runs/asr-cpu/release
    python bench/transcribe_speed.py --model ~/speechdraw-runs/transcribe/tinypad8c/release --minutes 3 --threads 1
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: no spinning against other processes

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "data_prep"))
from record import parse_bench_args, write_record  # noqa: E402

from speechdraw.asr.audio import resample  # noqa: E402
from speechdraw.asr.lm.ngram import NGramConfig, train_ngram  # noqa: E402
from speechdraw.asr.onnx import export_onnx  # noqa: E402
from speechdraw.asr.release import load_speech_release  # noqa: E402
from speechdraw.asr.transcribe import Transcriber  # noqa: E402

SR = 16_000
SENTENCES = [
    "the cat sat on the mat", "a dog ran in the park", "she sells sea shells", "good morning to you",
    "open the red door", "we like green apples", "the sun is very hot", "my bag is on the desk",
    "he reads a long book", "birds sing at dawn", "put the cup down", "the river runs fast",
    "they play in the snow", "her hat is blue", "milk is in the fridge", "the old man sleeps",
    "turn off the light", "six small fish swim", "rain falls on the roof", "we walk to school",
    "the baby is happy", "close the window now", "a big ship sails", "the tree has leaves",
]

PEAK_CODE = """
import resource, sys, time, torch
torch.set_num_threads(int(sys.argv[3]))
from speechdraw.asr.transcribe import Transcriber
tr = Transcriber(sys.argv[2], device="cpu", batch_size=int(sys.argv[4]))
t0 = time.perf_counter()
t = tr.transcribe(sys.argv[1])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, t.duration, time.perf_counter() - t0, len(t.words))
"""


def speak_all(tmp: Path) -> list[np.ndarray]:
    import synth_speech

    waves = []
    for i, text in enumerate(SENTENCES):
        utt = synth_speech.Utterance(f"bench-{i}", "test", text, "en-us", "m3", 170, 50)
        samples, sr = synth_speech.speak(utt, tmp / f"s{i}.wav")
        w = resample(torch.from_numpy(samples), sr, SR).numpy()
        db = 10 * np.log10(np.maximum(np.square(w[:len(w) // 160 * 160]).reshape(-1, 160).mean(1), 1e-10))
        speech = np.flatnonzero(db > -55)
        waves.append(w[speech[0] * 160:(speech[-1] + 1) * 160])
    return waves


def write_long(path: Path, waves: list[np.ndarray], seconds: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    total, pos, i = int(seconds * SR), 0, 0
    with sf.SoundFile(str(path), "w", SR, 1, subtype="PCM_16", format="FLAC") as f:
        while pos < total:
            block = np.concatenate([np.zeros(int(rng.uniform(0.6, 1.6) * SR), np.float32), waves[i % len(waves)]])
            block = block[: total - pos]
            f.write(np.clip(block + rng.standard_normal(len(block)).astype(np.float32) * 1e-3, -1, 1))
            pos += len(block)
            i += 1


def rtf(tr: Transcriber, path: Path, seconds: float) -> float:
    t0 = time.perf_counter()
    tr.transcribe(path)
    return (time.perf_counter() - t0) / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="speech release directory")
    ap.add_argument("--lm", help="ARPA LM for the beam runs (default: a character 6-gram of the bench sentences)")
    ap.add_argument("--lexicon", help="lexicon for the beam runs (with a word --lm)")
    ap.add_argument("--minutes", type=float, default=5.0, help="length of the RTF file (default: 5)")
    ap.add_argument("--hour-minutes", type=float, default=60.0, help="length of the peak-memory file (default: 60)")
    ap.add_argument("--batch-size", type=int, default=8, help="the batched runs' batch size (default: 8)")
    ap.add_argument("--beam", type=int, default=50, help="beam size (default: 50)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    ap.add_argument("--name", default="transcribe_speed", help="record name (default: transcribe_speed)")
    args = parse_bench_args(ap)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        waves = speak_all(tmp)
        rtf_file = tmp / "rtf.flac"
        write_long(rtf_file, waves, args.minutes * 60, seed=1)
        lm, lexicon = args.lm, args.lexicon
        if lm is None:
            train_ngram(SENTENCES, NGramConfig(order=6, units="char")).write_arpa(tmp / "char6.arpa")
            lm = str(tmp / "char6.arpa")
        figures: dict = {"model": str(args.model), "threads": args.threads, "rtf_audio_minutes": args.minutes,
                         "batch_size": args.batch_size, "beam": args.beam, "lm": Path(lm).name,
                         "load_average_start": os.getloadavg()[0]}
        seconds = args.minutes * 60
        runs = [("greedy", args.model, {}), ("beam_lm", args.model, {"lm": lm, "lexicon": lexicon, "beam": args.beam})]
        if all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime")):
            onnx_release = shutil.copytree(args.model, tmp / "release-onnx")
            export_onnx(load_speech_release(onnx_release))
            runs.insert(1, ("greedy_onnxruntime", onnx_release, {"backend": "onnxruntime"}))
        for name, model, kw in runs:
            for bs in (1, args.batch_size):
                tr = Transcriber(model, device="cpu", batch_size=bs, **kw)
                tr.transcribe_array(waves[0], SR)  # warm-up
                figures[f"rtf_{name}_batch{bs}"] = round(rtf(tr, rtf_file, seconds), 5)
                print(name, bs, figures[f"rtf_{name}_batch{bs}"], flush=True)
                if name == "greedy_onnxruntime":  # > 1: onnxruntime is faster
                    figures[f"onnxruntime_speedup_batch{bs}"] = round(figures[f"rtf_greedy_batch{bs}"] /
                                                                      figures[f"rtf_{name}_batch{bs}"], 3)

        for label, minutes in (("2min", 2.0), ("hour", args.hour_minutes)):
            path = tmp / f"{label}.flac"
            write_long(path, waves, minutes * 60, seed=2)
            out = subprocess.run([sys.executable, "-c", PEAK_CODE, str(path), str(args.model), str(args.threads),
                                  str(args.batch_size)], capture_output=True, text=True, check=True,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.split()
            figures[f"peak_rss_mb_{label}"] = round(int(out[0]) / 1024, 1)
            figures[f"rtf_greedy_batch{args.batch_size}_{label}"] = round(float(out[2]) / float(out[1]), 5)
            figures[f"words_{label}"] = int(out[3])
            figures[f"audio_seconds_{label}"] = float(out[1])
            print(label, figures[f"peak_rss_mb_{label}"], "MB", flush=True)
            path.unlink()
        figures["load_average_end"] = os.getloadavg()[0]

    write_record(args.name, figures, allow_dirty=args.allow_dirty,
                 title="Transcription speed and memory (speechdraw transcribe)",
                 notes="RTF = processing seconds / audio seconds, whole pipeline (decode file, segment, features, "
                       "model, decoder, word alignment); greedy_onnxruntime: the acoustic model in onnxruntime "
                       "(features still in PyTorch), onnxruntime_speedup = PyTorch RTF / onnxruntime RTF. Peak RSS of "
                       "a fresh process transcribing the file; a "
                       "background training run shares the CPU (see load averages).")


if __name__ == "__main__":
    main()
