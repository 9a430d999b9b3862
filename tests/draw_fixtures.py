"""Shared helpers for the DRAW tests: data locations, the bench's straightforward reference model, tiny configs."""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from speechdraw.draw.model import Draw, DrawConfig

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
MNIST_DIR = SHARED_DATA / "mnist"
BINARIZED_NPZ = SHARED_DATA / "binarized_mnist" / "binarized_mnist.npz"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"test data not found: {path}")
    return path


def write_idx(path, array: np.ndarray, compress: bool) -> None:
    code = {np.uint8: 0x08, np.int32: 0x0C}[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


def toy_larochelle(tmp_path: Path, n: int = 300, n_train: int = 200, n_valid: int = 50):
    """A small copy of the Larochelle situation from real MNIST digits: an IDX directory holding the first n grey
    training digits (and 20 test digits), and an npz whose X_train / X_valid are one fixed binarisation of a shuffled
    pick of them. Returns (idx_dir, npz, order): X_train[i] is a binarisation of grey digit order[n_valid + i],
    X_valid[i] of order[i]."""
    from speechdraw.draw.data import binarize, load_mnist

    grey, labels = load_mnist(require(MNIST_DIR), "train")
    test, test_labels = load_mnist(MNIST_DIR, "test")
    root = tmp_path / "idx"
    root.mkdir()
    write_idx(root / "train-images-idx3-ubyte", grey[:n], compress=False)
    write_idx(root / "train-labels-idx1-ubyte", labels[:n].astype(np.uint8), compress=False)
    write_idx(root / "t10k-images-idx3-ubyte", test[:20], compress=False)
    write_idx(root / "t10k-labels-idx1-ubyte", test_labels[:20].astype(np.uint8), compress=False)
    order = np.random.default_rng(7).permutation(n)
    pick = binarize(grey[order[:n_valid + n_train]], seed=11).reshape(-1, 784)
    npz = tmp_path / "toy_binarized_mnist.npz"
    np.savez(npz, X_valid=pick[:n_valid], X_train=pick[n_valid:], X_test=binarize(test[:20], 12).reshape(-1, 784))
    return root, npz, order


def reference_module():
    """bench/draw_speed.py, whose ReferenceDraw writes the equations out op by op with nn.LSTMCell."""
    name = "draw_speed_bench"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "bench" / "draw_speed.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def tiny_config(**overrides) -> DrawConfig:
    base = dict(height=12, width=12, channels=1, steps=4, enc_size=16, dec_size=16, z_size=3, read_n=2, write_n=3)
    base.update(overrides)
    return DrawConfig(**base)


def calm_model(cfg: DrawConfig, seed: int = 0, dtype=torch.float32) -> Draw:
    """A model with random weights whose attention windows stay on the image (strides and variances near their
    untrained values), so a straightforward implementation, whose filterbank normalisation divides by sum + 1e-8,
    does not underflow to all-zero filter rows where the library's stays exact."""
    torch.manual_seed(seed)
    model = Draw(cfg).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
        if cfg.attention:
            for head in (model.read_head, model.write_head):
                head.linear.weight.mul_(0.2)
                head.linear.bias[3] = -1.0  # delta~ = e^-1: the grid spans ~1/3 of the image
                head.linear.bias[4] = 0.0  # gamma = 1, not the unit-gain init: O(1) reads and writes
    return model


@contextlib.contextmanager
def threads(n: int):
    """Run torch on n intra-op threads inside the block. Two OpenMP threads on a 2-core machine that other jobs share
    spin-wait on each other; one thread keeps timing-sensitive tests predictable."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
