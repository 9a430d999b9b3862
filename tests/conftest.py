"""Shared test helpers: run recipes and commands in real subprocesses from the checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def _cpu_bf16() -> str:
    from speechdraw.engine.device import cpu_bf16
    return cpu_bf16()


# bf16 on the CPU needs oneDNN's bf16 kernels (AVX-512 or newer); elsewhere the engine refuses it (engine/device.py).
needs_cpu_bf16 = pytest.mark.skipif(_cpu_bf16() == "none", reason="this CPU has no bf16 kernels (no AVX-512)")


def subprocess_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")  # two processes on two cores: don't oversubscribe
    env.pop("SPEECHDRAW_FAULT", None)
    env.update(extra)
    return env


def run_script(args: list[str], *, check: bool = True, timeout: float = 300, **env) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=subprocess_env(**env), capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def read_metrics(run_dir: Path, split: str = "train") -> list[dict]:
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == split]


@pytest.fixture
def repo() -> Path:
    return REPO


# The speech model the transcription tests share (test_asr_transcribe, _media, _hotwords): trained once per session,
# as its training takes minutes (tests/transcribe_fixtures.py says what it is).
@pytest.fixture(scope="session")
def pieces(tmp_path_factory):
    from transcribe_fixtures import speak_pieces

    return speak_pieces(tmp_path_factory.mktemp("pieces"))


@pytest.fixture(scope="session")
def release(tmp_path_factory, pieces):
    from transcribe_fixtures import padded_corpus

    from speechdraw.asr.manifest import read_manifest, write_manifest

    d = tmp_path_factory.mktemp("transcribe-model")
    manifest = padded_corpus(d / "corpus", pieces, copies=8)
    dev = d / "corpus" / "dev.jsonl"
    write_manifest(dev, read_manifest(manifest)[:24])  # one copy of each sentence: validation stays cheap
    run_script(["recipes/asr/train.py", "--preset", "tiny", "--data.train", str(manifest), "--data.dev", str(dev),
                "--train.epochs", "30", "--train.run_dir", str(d / "run")], timeout=400)
    return d / "run" / "release"
