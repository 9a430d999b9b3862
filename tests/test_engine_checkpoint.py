"""Checkpoint files and releases: atomic writes, rotation, weights-only loading, clear refusals."""

from __future__ import annotations

import os

import pytest
import torch

from speechdraw.engine.checkpoint import CheckpointError, CheckpointManager, load_checkpoint, safe_load
from speechdraw.engine.release import ReleaseError, load_release, save_release


class Payload:
    """Unpickling this runs a shell command: exactly what weights_only loading must prevent."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_object_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "ckpt-000000001.pt"
    torch.save({"format_version": 1, "model": {}, "loop": {"step": 1}, "payload": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="refused to load.*weights_only=True"):
        load_checkpoint(path)
    assert not marker.exists()
    # --resume auto skips it rather than loading it.
    with pytest.warns(UserWarning, match="refused"):
        assert CheckpointManager(tmp_path).load_latest() is None
    assert not marker.exists()


def test_manager_keeps_last_k_plus_best(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=2)
    for step in range(1, 6):
        m.save({"model": {"w": torch.full((2,), float(step))}, "loop": {"step": step}}, step, is_best=step == 2)
    assert [s for s, _ in m.list()] == [5, 4]
    assert not list(tmp_path.glob("*.tmp"))
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["loop"]["step"] == 2 and torch.equal(best["model"]["w"], torch.full((2,), 2.0))
    path, state = m.load_latest()
    assert path.name == "ckpt-000000005.pt" and state["format_version"] == 1


def test_unreadable_files_have_clear_errors(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip archive at all")
    with pytest.raises(CheckpointError, match="junk.pt: unreadable or truncated"):
        safe_load(junk)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        safe_load(tmp_path / "missing.pt")
    torch.save({"just": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a speechdraw resume checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_release_round_trip_and_errors(tmp_path):
    model = torch.nn.Linear(3, 2)
    out = save_release(tmp_path / "rel", {"module." + k: v for k, v in model.state_dict().items()},
                       {"in": 3, "out": 2}, kind="example", metrics={"acc": 0.5},
                       extra_files={"tokens.txt": "a\nb\n", "stats.bin": b"\x00\x01"})
    rel = load_release(out, kind="example")
    assert rel.model_config == {"in": 3, "out": 2} and rel.metrics == {"acc": 0.5}
    assert rel.config["format_version"] == 1 and "git_commit" in rel.config
    restored = torch.nn.Linear(3, 2)
    restored.load_state_dict(rel.state_dict, strict=True)  # DDP's "module." prefix was stripped
    assert torch.equal(restored.weight, model.weight)
    assert (out / "tokens.txt").read_text() == "a\nb\n" and (out / "stats.bin").read_bytes() == b"\x00\x01"
    assert load_release(out / "model.pt").dir == out

    # Contents and copies are separate arguments: a text that names an existing file is still written as text.
    src = tmp_path / "vocab.txt"
    src.write_text("x\ny\n")
    out2 = save_release(tmp_path / "rel2", model.state_dict(), {}, kind="example",
                        extra_files={"note.txt": str(src)}, copy_files={"vocab.txt": src})
    assert (out2 / "note.txt").read_text() == str(src) and (out2 / "vocab.txt").read_text() == "x\ny\n"
    with pytest.raises(TypeError, match="copy_files"):
        save_release(tmp_path / "rel3", model.state_dict(), {}, kind="example", extra_files={"v.txt": src})
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        save_release(tmp_path / "rel3", model.state_dict(), {}, kind="example", copy_files={"v.txt": "nope.txt"})
    with pytest.raises(ValueError, match="outside"):
        save_release(tmp_path / "rel3", model.state_dict(), {}, kind="example", extra_files={"../x.txt": "x"})
    assert not (tmp_path / "x.txt").exists()

    with pytest.raises(ReleaseError, match="is a 'example' model, but a 'draw' model is needed"):
        load_release(out, kind="draw")
    with pytest.raises(ReleaseError, match="no such model"):
        load_release(tmp_path / "nope")
    (out / "config.json").unlink()
    with pytest.raises(ReleaseError, match="config.json is missing"):
        load_release(out)

    evil = tmp_path / "evil"
    save_release(evil, model.state_dict(), {}, kind="example")
    torch.save({"w": Payload(tmp_path / "pwned")}, evil / "model.pt")
    with pytest.raises(ReleaseError, match="refused to load"):
        load_release(evil)
    assert not (tmp_path / "pwned").exists()
