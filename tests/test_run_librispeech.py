"""recipes/asr/run_librispeech.py end to end against a miniature LibriSpeech mirror: archives with the published names
and layout (LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<n>.flac + <speaker>-<chapter>.trans.txt,
SPEAKERS.TXT ...), spoken by espeak-ng, plus a small librispeech-lm-norm.txt.gz and their md5 sums, served by a real
http.server on 127.0.0.1; every stage with the tiny preset under torchrun (1 process), to an archive that transcribes
the test set."""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from asr_fixtures import REPO, prep

from speechdraw.asr.audio import resample
from speechdraw.asr.manifest import read_manifest

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

# (speaker, chapter, sentences) per subset; dev/test repeat training sentences so the tiny model has a chance.
TRAIN = ["the cat sat on the mat", "a dog ran in the park", "open the red door", "we like green apples",
         "the sun is very hot", "he reads a long book", "birds sing at dawn", "put the cup down",
         "the river runs fast", "her hat is blue", "turn off the light", "rain falls on the roof"]
SUBSETS = {
    "train-clean-100": [("19", "198", TRAIN[:6]), ("26", "495", TRAIN[6:])],
    "dev-clean": [("84", "121123", ["the cat sat on the mat", "her hat is blue"])],
    "dev-other": [("116", "288045", ["open the red door"])],
    "test-clean": [("1089", "134686", ["birds sing at dawn", "we like green apples"])],
    "test-other": [("1688", "142285", ["turn off the light"])],
}
LM_EXTRA = ["THE CAT SAT ON THE RED MAT", "A DOG RAN TO THE DOOR", "THE SUN IS HOT", "PUT THE BOOK DOWN",
            "BIRDS RUN IN THE PARK", "WE LIKE THE RAIN", "HE TURNED OFF THE LIGHT", "HER CUP IS BLUE"]
LM_VOCAB = 23  # of the 39 words in the LM text
TOP_FILES = ("SPEAKERS.TXT", "CHAPTERS.TXT", "BOOKS.TXT", "LICENSE.TXT", "README.TXT")


def speak(text: str, tmp: Path) -> np.ndarray:
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "170", "-w", str(tmp), text], check=True, capture_output=True)
    wave, sr = sf.read(str(tmp), dtype="float32")
    return resample(torch.from_numpy(wave), sr, 16_000).numpy()


def build_mirror(where: Path) -> Path:
    """<where>/resources/12/<subset>.tar.gz, <where>/resources/11/librispeech-lm-norm.txt.gz, <where>/md5sum.txt."""
    (where / "resources" / "12").mkdir(parents=True)
    (where / "resources" / "11").mkdir(parents=True)
    sums = []
    for subset, chapters in SUBSETS.items():
        tree = where / "build" / subset
        top = tree / "LibriSpeech"
        for name in TOP_FILES:
            (top / name).parent.mkdir(parents=True, exist_ok=True)
            (top / name).write_text(f"; {name} of the miniature mirror\n")
        for speaker, chapter, sentences in chapters:
            chapter_dir = top / subset / speaker / chapter
            chapter_dir.mkdir(parents=True)
            lines = []
            for n, text in enumerate(sentences):
                utt = f"{speaker}-{chapter}-{n:04d}"
                sf.write(str(chapter_dir / f"{utt}.flac"), speak(text, where / "tmp.wav"), 16_000)
                lines.append(f"{utt} {text.upper()}")
            (chapter_dir / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
        archive = where / "resources" / "12" / f"{subset}.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(top, arcname="LibriSpeech")
        sums.append((archive, f"{subset}.tar.gz"))
    lm = where / "resources" / "11" / "librispeech-lm-norm.txt.gz"
    with gzip.open(lm, "wt") as f:  # the published text is upper case, one sentence per line
        f.write("\n".join([t.upper() for t in TRAIN] + LM_EXTRA + [t.upper() for t in SUBSETS["test-clean"][0][2]])
                + "\n")
    sums.append((lm, lm.name))
    (where / "md5sum.txt").write_text("".join(f"{hashlib.md5(p.read_bytes()).hexdigest()}  {name}\n"
                                              for p, name in sums))
    return where


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    where = build_mirror(tmp_path_factory.mktemp("mirror"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(where)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield where, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def run_runner(mirror, root: Path, exp: Path, *extra: str, checksums: Path | None = None):
    where, url = mirror
    cmd = [sys.executable, str(REPO / "recipes" / "asr" / "run_librispeech.py"), "--root", str(root), "--exp",
           str(exp), "--mirror", f"{url}/resources/12", "--lm-mirror", f"{url}/resources/11",
           "--checksums", str(checksums or where / "md5sum.txt"), "--lm-vocab", str(LM_VOCAB), "--preset", "tiny",
           "--nproc", "1", "--jobs", "2",
           "--train-args", "--train.epochs 12 --train.log_every 50",
           "--tune-args", "--lm-weights 0.5,1 --word-scores 0,1 --rounds 1 --beam-size 20 --threads 1",
           *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def full_run(mirror, tmp_path_factory):
    base = tmp_path_factory.mktemp("run")
    root, exp = base / "corpora", base / "exp"
    done = run_runner(mirror, root, exp)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root, exp, done


def test_every_stage_from_archives_to_a_release_that_transcribes(full_run, tmp_path):
    root, exp, done = full_run
    for n, name in enumerate(("download", "manifests", "lm_text", "ngram", "train", "tune", "evaluate", "release")):
        assert f"stage {n} {name}: running" in done.stdout
        assert (exp / "stamps" / f"{n:02d}-{name}.done").is_file()
    # download: unpacked in the published layout
    for subset, chapters in SUBSETS.items():
        speaker, chapter, sentences = chapters[0]
        assert (root / "LibriSpeech" / subset / speaker / chapter / f"{speaker}-{chapter}.trans.txt").is_file()
    assert (root / "LibriSpeech" / "SPEAKERS.TXT").is_file()
    # manifests: every utterance, normalised text, train = the train set, dev = dev-clean + dev-other
    train = read_manifest(exp / "data" / "train.jsonl")
    assert [e.text for e in train] == TRAIN
    assert [e.extra["id"] for e in train][:2] == ["19-198-0000", "19-198-0001"]
    assert len(read_manifest(exp / "data" / "dev.jsonl")) == 3
    assert [e.text for e in read_manifest(exp / "data" / "test-clean.jsonl")] == SUBSETS["test-clean"][0][2]
    # LM text: normalised (lower case), the dev/test sentences removed, the rest kept
    lm_lines = (exp / "data" / "lm_text.txt").read_text().splitlines()
    assert "birds sing at dawn" not in lm_lines and "the cat sat on the mat" not in lm_lines
    assert "the cat sat on the red mat" in lm_lines and "a dog ran in the park" in lm_lines
    held = {t for subset, chapters in SUBSETS.items() if subset != "train-clean-100" for c in chapters for t in c[2]}
    assert len(lm_lines) == len(TRAIN) - len(held) + len(LM_EXTRA)  # every held-out sentence is a TRAIN sentence
    # n-gram + lexicon
    assert "ngram 4=" in (exp / "lm" / "word4.arpa").read_text()
    lexicon = (exp / "lm" / "lexicon.txt").read_text().splitlines()
    assert "the\tt h e" in lexicon and len(lexicon) == LM_VOCAB  # the vocabulary limit reached the trainer
    # training, tuning, evaluation
    assert (exp / "am" / "release" / "config.json").is_file()
    assert json.loads((exp / "release" / "decoder.json").read_text())["lexicon"]
    results = json.loads((exp / "eval.json").read_text())["results"]
    assert {(Path(r["manifest"]).stem, r["decoder"]) for r in results} == {
        (s, d) for s in ("dev-clean", "dev-other", "test-clean", "test-other") for d in ("greedy", "beam")}
    assert all(r["utterances"] == len(read_manifest(r["manifest"])) for r in results)
    # the archive: a model card with the measured figures, and it transcribes the test set
    archive = exp / "asr-en-librispeech-clean-100.tar.gz"
    with tarfile.open(archive) as tar:
        card = json.load(tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("card.json"))))
    assert "LibriSpeech train-clean-100" in card["trained_on"]
    assert "test-clean WER" in card["headline"]
    figures = {k: v for r in card["results"] for k, v in r["figures"].items()}
    assert figures["test-clean WER, beam"] == next(r["wer"] for r in results if r["decoder"] == "beam"
                                                   and Path(r["manifest"]).stem == "test-clean")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    test_audio = [e.audio for e in read_manifest(exp / "data" / "test-clean.jsonl")]
    out = subprocess.run([sys.executable, "-m", "speechdraw", "transcribe", *test_audio, "--model", str(archive),
                          "--output-dir", str(tmp_path / "out"), "--device", "cpu", "--quiet"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    written = sorted((tmp_path / "out").glob("*.txt"))
    assert [p.stem for p in written] == sorted(Path(a).stem for a in test_audio)
    assert all(set(p.read_text().strip()) <= set(" 'abcdefghijklmnopqrstuvwxyz") for p in written)


def test_rerun_is_a_no_op_and_stage_range_runs_only_that_part(full_run, mirror):
    root, exp, _ = full_run
    before = {p: p.stat().st_mtime_ns for p in (exp / "eval.json", exp / "lm" / "word4.arpa",
                                                 exp / "am" / "release" / "config.json")}
    again = run_runner(mirror, root, exp)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "running" not in again.stdout and again.stdout.count("done already") == 8
    assert {p: p.stat().st_mtime_ns for p in before} == before
    # deleting a stage's output makes it run again; --stage/--stop-stage confine the run to that stage
    (exp / "eval.json").unlink()
    part = run_runner(mirror, root, exp, "--stage", "5", "--stop-stage", "6")
    assert part.returncode == 0, part.stderr[-2000:]
    assert "stage 5 tune: done already" in part.stdout and "stage 6 evaluate: running" in part.stdout
    assert "stage 7" not in part.stdout and "stage 4" not in part.stdout
    assert (exp / "eval.json").is_file()


def test_a_wrong_checksum_stops_the_download_and_deletes_the_file(mirror, tmp_path):
    where, _ = mirror
    sums = (where / "md5sum.txt").read_text().splitlines()
    bad = tmp_path / "md5sum.txt"
    bad.write_text("\n".join(("0" * 32 + "  dev-clean.tar.gz") if line.endswith(" dev-clean.tar.gz") else line
                             for line in sums) + "\n")
    done = run_runner(mirror, tmp_path / "corpora", tmp_path / "exp", "--stop-stage", "0", checksums=bad)
    assert done.returncode != 0
    assert "dev-clean.tar.gz: md5" in done.stderr and "expected 00000000" in done.stderr.splitlines()[-1]
    assert not (tmp_path / "corpora" / "downloads" / "dev-clean.tar.gz").exists()
    assert not (tmp_path / "exp" / "stamps" / "00-download.done").exists()


def test_published_checksums_are_the_default():
    corpus = prep("librispeech")
    assert corpus.MD5["train-clean-100.tar.gz"] == "2a93770f6d5c6c964bc36631d331a522"
    assert corpus.MD5["librispeech-lm-norm.txt.gz"] == "c83c64c726a1aedfe65f80aa311de402"
    assert set(corpus.MD5) == {f"{s}.tar.gz" for s in corpus.SUBSETS} | {"librispeech-lm-norm.txt.gz"}
