"""A real `torchrun --nproc_per_node=2` run on CPU (gloo) against one process with 2-step accumulation."""

from __future__ import annotations

import torch
from conftest import read_metrics, run_script

from speechdraw.engine.release import load_release

RECIPE = "recipes/example/train.py"
# Dropout off (ranks draw different dropout masks); 256 items / 16 = 16 batches: 8 global steps per epoch.
COMMON = ["--preset", "tiny", "--model.dropout", "0", "--train.log_every", "1", "--train.epochs", "2"]


def test_torchrun_two_ranks_match_one_process(tmp_path):
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    run_script(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", RECIPE, *COMMON,
                "--train.run_dir", str(ddp), "--train.accum_steps", "1"], timeout=600)
    run_script([RECIPE, *COMMON, "--train.run_dir", str(single), "--train.accum_steps", "2"])

    ddp_losses = [r["loss"] for r in read_metrics(ddp)]
    single_losses = [r["loss"] for r in read_metrics(single)]
    assert len(ddp_losses) == len(single_losses) == 16
    assert torch.allclose(torch.tensor(ddp_losses), torch.tensor(single_losses), rtol=1e-4, atol=1e-5)

    a, b = load_release(ddp / "release"), load_release(single / "release")
    for key, value in a.state_dict.items():
        assert torch.allclose(value, b.state_dict[key], rtol=1e-4, atol=1e-5), key

    # Validation: 65 sequences split 33/32 between the ranks, nothing counted twice.
    ddp_val, single_val = read_metrics(ddp, "val"), read_metrics(single, "val")
    assert [r["frames"] for r in ddp_val] == [r["frames"] for r in single_val]
    assert abs(ddp_val[-1]["accuracy"] - single_val[-1]["accuracy"]) < 1e-4
    # Only rank 0 wrote files.
    assert not list(ddp.glob("*rank*"))
