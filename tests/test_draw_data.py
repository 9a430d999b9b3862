"""MNIST IDX reading (gzipped or raw), downloading from a mirror, binarisation and splits, the fixed binarised-MNIST
file, and image folders."""

from __future__ import annotations

import gzip
import hashlib
import shutil

import numpy as np
import pytest
import torch
from draw_fixtures import BINARIZED_NPZ, MNIST_DIR, require, toy_larochelle, write_idx
from PIL import Image

from speechdraw.draw import data as D


def test_read_idx_reads_gzipped_and_raw_files_by_content(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    ints = np.array([[1, -2], [70000, 3]], dtype=np.int32)
    write_idx(tmp_path / "a.gz", arr, compress=True)
    write_idx(tmp_path / "a", arr, compress=False)
    write_idx(tmp_path / "misnamed.gz", ints, compress=False)  # named .gz but not compressed
    np.testing.assert_array_equal(D.read_idx(tmp_path / "a.gz"), arr)
    np.testing.assert_array_equal(D.read_idx(tmp_path / "a"), arr)
    np.testing.assert_array_equal(D.read_idx(tmp_path / "misnamed.gz"), ints)
    (tmp_path / "bad").write_bytes(b"\x00\x01\x02\x03junk")
    with pytest.raises(ValueError):
        D.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes((tmp_path / "a").read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated"):
        D.read_idx(tmp_path / "short")


def test_load_mnist_from_any_directory_gzipped_or_not(tmp_path):
    src = require(MNIST_DIR)
    images, labels = D.load_mnist(src, "test")
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    # the same files uncompressed, with the dotted names some archives use, in another directory
    for stem in D.MNIST_FILES["test"]:
        with gzip.open(src / f"{stem}.gz") as f, open(tmp_path / stem.replace("-idx", ".idx"), "wb") as out:
            shutil.copyfileobj(f, out)
    raw_images, raw_labels = D.load_mnist(tmp_path, "test")
    np.testing.assert_array_equal(raw_images, images)
    np.testing.assert_array_equal(raw_labels, labels)
    with pytest.raises(FileNotFoundError, match="download_mnist"):
        D.load_mnist(tmp_path, "train")


def test_download_mnist_from_a_mirror_skips_present_files_and_leaves_no_partial_files(tmp_path):
    src = require(MNIST_DIR)
    mirror = src.as_uri() + "/"  # file:// serves the same bytes as an HTTP mirror would
    # The shared copy is re-compressed, so its md5 sums are not the published ones (D.MD5): give them.
    sums = {p.name.removesuffix(".gz"): hashlib.md5(p.read_bytes()).hexdigest() for p in src.glob("*.gz")}
    out = D.download_mnist(tmp_path / "mnist", mirrors=("file:///nonexistent/", mirror), checksums=sums)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.gz" for pair in D.MNIST_FILES.values() for s in pair)
    np.testing.assert_array_equal(D.load_mnist(out, "test")[1], D.load_mnist(src, "test")[1])
    (out / "t10k-labels-idx1-ubyte.gz").unlink()
    D.download_mnist(out, mirrors=(mirror,), checksums=sums)  # fetches only what is missing
    with pytest.raises(RuntimeError, match="md5 .* expected f68b3c2dcbeaaa9fbdd348bbdeb94873"):
        D.download_mnist(tmp_path / "published", mirrors=(mirror,))  # the published sums are checked by default
    assert (out / "t10k-labels-idx1-ubyte.gz").exists()
    broken = tmp_path / "broken"
    broken.mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (broken / f"{stem}.gz").write_bytes(b"not an idx file")
    with pytest.raises(RuntimeError, match="could not download"):
        D.download_mnist(tmp_path / "fresh", mirrors=(broken.as_uri() + "/",))
    assert list((tmp_path / "fresh").iterdir()) == []


def test_fixed_binarisation_is_a_seeded_bernoulli_draw():
    grey = np.array([[0, 255, 128, 64]] * 20000, dtype=np.uint8)
    a = D.binarize(grey)
    np.testing.assert_array_equal(a, D.binarize(grey, seed=D.BINARIZE_SEED))
    assert not np.array_equal(a, D.binarize(grey, seed=D.BINARIZE_SEED + 7))
    assert set(np.unique(a)) <= {0.0, 1.0}
    assert a[:, 0].sum() == 0 and a[:, 1].min() == 1
    np.testing.assert_allclose(a.mean(0)[2:], [128 / 255, 64 / 255], atol=0.01)


def test_mnist_splits_are_50k_10k_10k_with_fixed_or_dynamic_binarisation():
    root = require(MNIST_DIR)
    fixed = D.mnist_splits(root)
    assert (len(fixed.train), len(fixed.valid), len(fixed.test)) == (50_000, 10_000, 10_000)
    assert fixed.train.image_shape == (1, 28, 28) and fixed.train.images.dtype == torch.float32
    train_u8, train_labels = D.load_mnist(root, "train")
    # validation = the last 10,000 training images, binarised in the same single draw as the training split
    expect = torch.from_numpy(D.binarize(train_u8)).unsqueeze(1)
    assert torch.equal(fixed.valid.images, expect[50_000:]) and torch.equal(fixed.train.images, expect[:50_000])
    assert fixed.valid[0][1] == int(train_labels[50_000])
    assert abs(fixed.train.images.mean().item() - 0.1307) < 0.002
    again = D.mnist_splits(root)
    assert torch.equal(again.test.images, fixed.test.images)

    dyn = D.mnist_splits(root, binarization="dynamic")
    assert isinstance(dyn.train, D.DynamicBinarized) and torch.equal(dyn.valid.images, fixed.valid.images)
    epoch0 = dyn.train.images.clone()
    dyn.train.set_epoch(1)
    assert not torch.equal(dyn.train.images, epoch0)
    assert set(dyn.train.images.unique().tolist()) == {0.0, 1.0}
    dyn.train.set_epoch(0)
    assert torch.equal(dyn.train.images, epoch0)  # a pure function of (seed, epoch)
    agree = (dyn.train.images == fixed.train.images).float().mean().item()
    assert 0.9 < agree < 0.999  # same grey levels, independent draws

    grey = D.mnist_splits(root, binarization="none")
    assert torch.equal(grey.test.images * 255, torch.from_numpy(D.load_mnist(root, "test")[0]).float().unsqueeze(1))


def test_binarized_mnist_npz_has_the_standard_split():
    splits = D.load_binarized_mnist(require(BINARIZED_NPZ))
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (50_000, 10_000, 10_000)
    assert splits.test.image_shape == (1, 28, 28) and splits.test.labels is None
    assert splits.test[0][1] == -1
    assert abs(splits.test.images.mean().item() - 0.1325) < 5e-4



def test_larochelle_splits_are_a_shuffled_pick_of_the_mnist_training_digits():
    """Why dynamic binarisation of the npz's digits needs larochelle_grey_sources: each npz validation image is a
    binarisation of some grey MNIST training digit, but not of train[50000 + i], and some come from train[:50000],
    which a grey training split taken by index would therefore share with the npz validation split."""
    splits = D.load_binarized_mnist(require(BINARIZED_NPZ))
    grey, _ = D.load_mnist(require(MNIST_DIR), "train")
    idx = torch.randperm(10_000, generator=torch.Generator().manual_seed(0))[:60]
    best, loglik = D.match_grey_sources(splits.valid.images[idx], grey)  # (60,): the likeliest of the 60,000
    # Its own digit explains a binarised image at about -45 nats; another digit at below -150 (measured: 200 of 200
    # validation images matched some training digit at > -150, the median at -44).
    assert (loglik > -150).all()
    assert (best != 50_000 + idx).all()  # not the index correspondence train[50000:] = valid
    assert (best < 50_000).sum() >= 30  # about 5 in 6 come from the first 50,000 (measured 169 of 200)


def test_larochelle_training_images_are_traced_to_their_grey_digits_and_redrawn_each_epoch(tmp_path, monkeypatch):
    """larochelle_grey_sources finds the grey digit behind each training image of a shuffled binarisation (not by
    index), bars the validation images' digits, caches the answer, and refuses an npz that is no binarisation of the
    digits; load_splits then re-draws those digits every epoch while validation and test stay the npz's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root, npz, order = toy_larochelle(tmp_path)
    index, loglik = D.larochelle_grey_sources(npz, root)
    assert index.tolist() == order[50:250].tolist()  # every one of the 200, found among 300 digits
    assert -150 < loglik.min() and loglik.max() < 0
    assert not set(index.tolist()) & set(order[:50].tolist())
    cached = list((tmp_path / "cache" / "speechdraw" / "draw").glob("larochelle-grey-sources-*.npz"))
    assert len(cached) == 1

    def not_again(*args, **kwargs):
        raise AssertionError("matched again instead of reading the cache")

    monkeypatch.setattr(D, "match_grey_sources", not_again)
    again, _ = D.larochelle_grey_sources(npz, root)
    assert torch.equal(again, index)
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    splits = D.load_splits(D.DataSource(root=str(root), binarized_npz=str(npz), binarization="dynamic"))
    fixed = D.load_binarized_mnist(npz)
    grey, _ = D.load_mnist(root, "train")
    assert torch.equal(splits.train.probs.flatten(1), torch.from_numpy(grey[order[50:250]].reshape(200, 784) / 255.0)
                       .float())
    first = splits.train.images.clone()
    splits.train.set_epoch(1)
    assert not torch.equal(first, splits.train.images) and set(first.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(splits.valid.images, fixed.valid.images) and torch.equal(splits.test.images, fixed.test.images)
    assert torch.equal(D.load_test(D.DataSource(binarized_npz=str(npz), binarization="dynamic")).images,
                       fixed.test.images)  # no grey digits needed to evaluate
    described = D.DataSource(binarized_npz=str(npz), binarization="dynamic").describe_test()
    assert "fixed binarisation" in described and "re-drawn" not in described  # what evaluate.py records

    # A training image whose only source is a validation digit, or that no digit explains: one line naming it.
    with np.load(npz) as d:
        arrays = dict(d)
    arrays["X_train"][3] = arrays["X_valid"][0]
    np.savez(tmp_path / "leak.npz", **arrays)
    with pytest.raises(ValueError, match=r"leak.npz: X_train\[3\] is no binarisation"):
        D.larochelle_grey_sources(tmp_path / "leak.npz", root)
    arrays["X_train"][3] = np.random.default_rng(0).random(784) < 0.5
    np.savez(tmp_path / "noise.npz", **arrays)
    with pytest.raises(ValueError, match=r"X_train\[3\]"):
        D.larochelle_grey_sources(tmp_path / "noise.npz", root)


def test_image_folder_resizes_colour_images_and_labels_by_subfolder(tmp_path):
    rng = np.random.default_rng(0)
    for cls, size in (("cats", (40, 30)), ("dogs", (16, 16))):
        (tmp_path / cls).mkdir()
        for i in range(2):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / cls / f"{i}.png")
    solid = np.zeros((32, 32, 3), dtype=np.uint8)
    solid[..., 0] = 255
    Image.fromarray(solid).save(tmp_path / "dogs" / "red.jpg", quality=100)
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    ds = D.image_folder(tmp_path, size=(24, 20))
    assert ds.images.shape == (5, 3, 24, 20) and ds.labels.tolist() == [0, 0, 1, 1, 1]
    assert torch.equal(torch.round(ds.images * 255), ds.images * 255)  # on the 8-bit grid
    red = ds.images[4]
    assert red[0].mean() > 0.97 and red[1:].mean() < 0.03
    grey = D.image_folder(tmp_path / "cats", size=(8, 8), channels=1)
    assert grey.images.shape == (2, 1, 8, 8) and grey.labels is None
    with pytest.raises(FileNotFoundError):
        D.image_folder(tmp_path / "empty_does_not_exist", size=(8, 8))


def test_load_splits_holds_out_a_seeded_random_part_of_an_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(10):
            Image.fromarray((rng.random((6, 5)) * 255).astype(np.uint8)).save(tmp_path / cls / f"{i}.png")
    src = D.DataSource(image_folder=str(tmp_path), binarization="none", valid_fraction=0.2, height=6, width=5,
                       channels=1)
    splits = D.load_splits(src)
    assert len(splits.train) == 16 and len(splits.valid) == 4 and splits.test is splits.valid
    assert sorted(splits.train.labels.tolist() + splits.valid.labels.tolist()) == [0] * 10 + [1] * 10
    assert splits.valid.labels.tolist() != [1, 1, 1, 1]  # not simply the last files (all of the last class)
    again = D.load_splits(src)
    assert torch.equal(again.valid.images, splits.valid.images)  # the pick is a function of the seed
    binary = D.load_splits(D.DataSource(**{**src.__dict__, "binarization": "fixed"}))
    assert set(binary.train.images.unique().tolist()) <= {0.0, 1.0}
    assert isinstance(D.load_splits(D.DataSource(**{**src.__dict__, "binarization": "dynamic"})).train,
                      D.DynamicBinarized)
    with pytest.raises(ValueError, match="binarization"):
        D.load_splits(D.DataSource(**{**src.__dict__, "binarization": "otsu"}))
