"""--threads, --precision and the one default --device (speechdraw.engine.device: resolve_device, default_threads,
set_threads, inference_precision) in `transcribe` and `sample`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from asr_recipe_fixtures import needs_espeak
from conftest import needs_cpu_bf16, run_script
from transcribe_fixtures import SR, noise

import speechdraw.engine.device as device_mod
from speechdraw.asr.transcribe import Transcriber
from speechdraw.engine.device import (
    Precision,
    cpu_bf16,
    cpu_bf16_is_faster,
    cpu_flags,
    default_threads,
    inference_precision,
    resolve_device,
    resolve_precision,
    set_threads,
)


def test_default_threads_follow_the_affinity_mask():
    """A process allowed one CPU gets one thread whatever the machine has; set_threads(0) applies the default."""
    code = ("import os, torch; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
            "from speechdraw.engine.device import default_threads, set_threads; "
            "n = torch.get_num_threads; print(default_threads(), set_threads(0), n(), set_threads(3), n())")
    assert run_script(["-c", code]).stdout.split() == ["1", "1", "1", "3", "3"]
    assert 1 <= default_threads() <= len(os.sched_getaffinity(0))
    old = torch.get_num_threads()
    try:
        with pytest.raises(ValueError, match="--threads must be >= 0"):
            set_threads(-1)
    finally:
        torch.set_num_threads(old)


def test_precision_and_device_checks():
    cpu = torch.device("cpu")
    if cpu_bf16() == "none":
        with pytest.raises(ValueError, match="bf16 on this CPU: oneDNN has no bfloat16 kernels"):
            inference_precision("bf16", cpu)
    else:
        assert inference_precision("bf16", cpu).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        inference_precision("fp16", cpu)
    with pytest.raises(ValueError, match="unknown precision"):
        inference_precision("fp8", cpu)
    assert resolve_device("cpu") == cpu and resolve_device(cpu) == cpu
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_bad_precision_or_threads_is_a_one_line_error_in_both_commands(tmp_path):
    for cmd in (["transcribe", str(tmp_path / "x.wav")], ["sample", "--out", str(tmp_path / "o")]):
        proc = run_script(["-m", "speechdraw", *cmd, "--device", "cpu", "--precision", "fp16"], check=False)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [
            f"speechdraw {cmd[0]}: error: --precision fp16 needs a CUDA device, not cpu (use bf16 or fp32)"]
        proc = run_script(["-m", "speechdraw", *cmd, "--threads", "-2"], check=False)
        assert proc.returncode == 2 and "--threads must be >= 0" in proc.stderr


def test_auto_precision_is_bf16_only_where_it_was_measured_faster(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    assert Precision("auto", cpu).name == ("bf16" if cpu_bf16_is_faster() else "fp32")
    # the same decision for the other kinds of CPU, by their /proc/cpuinfo vendor and flags: AVX512-BF16 makes bf16
    # the faster precision on AMD (bench/results/draw_speed.json) but the slower one on Intel without AMX
    # (bench/results/draw_speed_intel.json), and the faster one again on Intel with AMX
    # (bench/results/draw_speed_amx.json)
    for vendor, flags, expected in [
            ("AuthenticAMD", {"avx2", "avx512f", "avx512_bf16"}, "bf16"),
            ("GenuineIntel", {"avx2", "avx512f", "avx512_bf16", "avx512_fp16"}, "fp32"),
            ("GenuineIntel", {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, "bf16"),
            ("", {"fp", "asimd", "bf16"}, "bf16"), ("AuthenticAMD", {"avx2", "fma"}, "fp32"),
            ("GenuineIntel", {"avx2", "fma"}, "fp32"), ("", set(), "fp32")]:
        monkeypatch.setattr(device_mod, "cpu_flags", lambda flags=flags: flags)
        monkeypatch.setattr(device_mod, "cpu_vendor", lambda vendor=vendor: vendor)
        assert resolve_precision("auto", cpu) == expected, (vendor, flags)


def test_cpu_flags_are_read_from_proc_cpuinfo():
    flags = cpu_flags()
    if Path("/proc/cpuinfo").exists():
        assert flags and ("sse2" in flags or "asimd" in flags or "fp" in flags), sorted(flags)[:10]
    assert cpu_bf16() in ("native", "emulated", "none")
    if "avx2" in flags and "avx512f" not in flags:
        assert cpu_bf16() == "none"  # oneDNN's bf16 kernels need AVX-512


@needs_cpu_bf16
@needs_espeak
def test_bf16_transcribes_like_fp32(release, pieces, tmp_path):
    """bf16 autocast really changes the arithmetic (the log-probabilities move) but not the transcripts."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        x = np.concatenate([np.zeros(4000, np.float32), pieces[i].wave, np.zeros(4000, np.float32)])
        paths.append(tmp_path / f"{i}.wav")
        sf.write(str(paths[-1]), x + noise(len(x), rng), SR)
    fp32 = Transcriber(release, device="cpu")
    bf16 = Transcriber(release, device="cpu", precision="bf16")
    waves = [torch.from_numpy(sf.read(str(p), dtype="float32")[0]) for p in paths]
    with torch.no_grad():
        a, _ = fp32.asr.log_probs(waves)
        with bf16.precision.autocast():
            b, _ = bf16.asr.log_probs(waves)
    assert (a - b.float()).abs().max() > 1e-3  # bf16 kept 8 bits of mantissa: the numbers differ
    assert [t.text for t in bf16.transcribe(paths)] == [t.text for t in fp32.transcribe(paths)]
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        Transcriber(release, device="cpu", precision="fp16")
