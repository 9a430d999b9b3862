"""Resume equivalence and crash safety, with real processes and real checkpoint files."""

from __future__ import annotations

import pytest
import torch
from conftest import read_metrics, run_script

from speechdraw.engine.checkpoint import CheckpointManager, load_checkpoint

RECIPE = "recipes/example/train.py"
# Shuffling, dropout, gradient accumulation, bucketing and EMA all on; 8 steps per epoch.
COMMON = [RECIPE, "--preset", "tiny", "--train.accum_steps", "2", "--model.dropout", "0.2", "--data.num_buckets", "4",
          "--train.ema_decay", "0.9", "--train.log_every", "1"]
N = 5  # falls mid-epoch; 2N crosses an epoch boundary


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

    full_losses = [r["loss"] for r in read_metrics(reference)]
    assert len(full_losses) == 2 * N
    assert [r["loss"] for r in read_metrics(tmp_path)] == full_losses  # exact float equality, all 2N steps
    assert ([r["accuracy"] for r in read_metrics(reference, "val")]
            == [r["accuracy"] for r in read_metrics(tmp_path, "val")])

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
