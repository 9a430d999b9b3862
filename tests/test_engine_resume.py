"""Resume equivalence and crash safety, with real processes and real checkpoint files."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import read_metrics, run_script

from speechdraw.engine.checkpoint import CheckpointManager, load_checkpoint

RECIPE = "recipes/example/train.py"
# Shuffling, dropout, gradient accumulation, bucketing and EMA all on. 16 batches per epoch in windows of 3: five
# full windows and a tail of one, so 6 steps per epoch.
COMMON = [RECIPE, "--preset", "tiny", "--train.accum_steps", "3", "--model.dropout", "0.2", "--data.num_buckets", "4",
          "--train.ema_decay", "0.9", "--train.log_every", "1"]
N = 5  # falls mid-epoch, before the tail; 2N crosses the tail (step 6) and the epoch boundary


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run of 2N steps."""
    run_dir = tmp_path_factory.mktemp("reference")
    run_script([*COMMON, "--train.run_dir", str(run_dir), "--train.max_steps", str(2 * N)])
    return run_dir


def _checkpoint(run_dir, step):
    return load_checkpoint(run_dir / "checkpoints" / f"ckpt-{step:09d}.pt")


def test_resume_is_bit_identical(reference, tmp_path):
    run_script([*COMMON, "--train.run_dir", str(tmp_path), "--train.max_steps", str(N)])
    assert [r["step"] for r in read_metrics(tmp_path)] == list(range(1, N + 1))
    resumed = run_script([*COMMON, "--train.run_dir", str(tmp_path), "--train.max_steps", str(2 * N),
                          "--train.resume", "auto"])
    assert f"at step {N}" in resumed.stderr
    # Each start is kept, oldest first (config.json holds the last): the resume names its checkpoint and its change.
    starts = [json.loads(line) for line in (tmp_path / "starts.jsonl").read_text().splitlines()]
    assert [s["resumed_from"] for s in starts] == [None, str(tmp_path / "checkpoints" / f"ckpt-{N:09d}.pt")]
    assert [s["changed_on_resume"] for s in starts] == [{}, {"train.max_steps": [N, 2 * N]}]
    assert starts[0]["time"] <= starts[1]["time"] and all(s["code"]["package"] for s in starts)
    assert {k: v for k, v in starts[1].items() if k != "time"} == json.loads((tmp_path / "config.json").read_text())

    full_losses = [r["loss"] for r in read_metrics(reference)]
    assert len(full_losses) == 2 * N
    assert [r["loss"] for r in read_metrics(tmp_path)] == full_losses  # exact float equality, all 2N steps
    assert ([r["accuracy"] for r in read_metrics(reference, "val")]
            == [r["accuracy"] for r in read_metrics(tmp_path, "val")])
    # The tail is trained: epoch 0 ends on step 6 (on step 5 when the tail was dropped).
    assert [r["step"] for r in read_metrics(tmp_path, "val")] == [6]
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [0] * 6 + [1] * 4

    a, b = _checkpoint(reference, 2 * N), _checkpoint(tmp_path, 2 * N)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["ema"]["shadow"]:
        assert torch.equal(a["ema"]["shadow"][key], b["ema"]["shadow"][key]), key
    assert a["loop"] == b["loop"]
    assert a["optimizer"]["state"][0]["exp_avg"].equal(b["optimizer"]["state"][0]["exp_avg"])


def test_crash_between_write_and_rename_and_truncated_file(reference, tmp_path):
    args = [*COMMON, "--train.run_dir", str(tmp_path), "--train.ckpt_every", "2"]
    run_script([*args, "--train.max_steps", "4"])
    ckdir = tmp_path / "checkpoints"
    assert [s for s, _ in CheckpointManager(ckdir).list()] == [4, 2]

    # A fresh start must not clobber an existing run.
    clobber = run_script([*args, "--train.max_steps", "6"], check=False)
    assert clobber.returncode != 0 and "--train.resume auto" in clobber.stderr

    # 1. The process dies after the temporary file is written, before the rename.
    crashed = run_script([*args, "--train.max_steps", "6", "--train.resume", "auto"], check=False,
                         SPEECHDRAW_FAULT="before_rename")
    assert crashed.returncode == 86, crashed.stderr
    assert (ckdir / "ckpt-000000006.pt.tmp").exists()
    assert not (ckdir / "ckpt-000000006.pt").exists()
    _, state = CheckpointManager(ckdir).load_latest()
    assert state["loop"]["step"] == 4
    again = run_script([*args, "--train.max_steps", "6", "--train.resume", "auto"])
    assert "at step 4" in again.stderr

    # 2. The newest checkpoint is truncated: --resume auto warns and falls back to the previous one.
    newest = ckdir / "ckpt-000000006.pt"
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    fallback = run_script([*args, "--train.max_steps", "8", "--train.resume", "auto"])
    assert "skipping checkpoint" in fallback.stderr and "ckpt-000000006.pt" in fallback.stderr
    assert "at step 4" in fallback.stderr

    # After both accidents the run still reproduces the uninterrupted one exactly.
    rows = {r["step"]: r["loss"] for r in read_metrics(tmp_path)}
    assert [rows[s] for s in range(1, 9)] == [r["loss"] for r in read_metrics(reference)][:8]


def test_schedule_ends_on_the_last_real_step_with_tails(tmp_path):
    """accum_steps 6 on 16 batches: windows of 6, 6 and 4 per epoch. Cosine decay with no warm-up reaches its floor
    (5% of the peak) on exactly the last step of epoch 2, so the horizon equals the steps really taken."""
    run_script([RECIPE, "--preset", "tiny", "--train.accum_steps", "6", "--train.warmup_steps", "0",
                "--train.lr", "0.002", "--train.run_dir", str(tmp_path)])
    assert [r["step"] for r in read_metrics(tmp_path)] == list(range(1, 7))
    assert [r["step"] for r in read_metrics(tmp_path, "val")] == [3, 6]
    last = _checkpoint(tmp_path, 6)
    assert last["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.002 * 0.05, rel=1e-9)
    # The rate each step used: cosine over a horizon of exactly 6 steps (a 5-step horizon hits the floor at step 6).
    expected = [0.002 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * k / 6))) for k in range(6)]
    assert [r["lr"] for r in read_metrics(tmp_path)] == pytest.approx(expected, rel=1e-9)
