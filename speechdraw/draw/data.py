"""Images for DRAW: MNIST / Fashion-MNIST IDX files, binarisation, the standard binarised-MNIST splits, image folders.

Every loader returns an `ImageSet`: float32 images (N, C, H, W) in [0, 1] plus integer labels (or none), which is a
torch Dataset yielding (image, label) with label -1 where there are none.

Binarised MNIST, two ways:
- `mnist_splits(root)` derives it from the four standard IDX files in any directory (gzipped or not): the 60,000
  training images are split into the first 50,000 (train) and the last 10,000 (validation), plus the 10,000 test
  images, and each grey level p = pixel / 255 is turned into a 1 with probability p, once, with numpy's
  default_rng(BINARIZE_SEED) for the training file and default_rng(BINARIZE_SEED + 1) for the test file: a fixed
  stochastic binarisation, the usual density-modelling protocol. With
  binarization="dynamic" the training split is re-drawn every epoch instead (`DynamicBinarized.set_epoch`), a
  regulariser; validation and test stay fixed so figures remain comparable.
- `load_binarized_mnist(npz)` reads the fixed binarisation of Larochelle & Murray (2011), the 50k/10k/10k split the DRAW
  paper and most VAE papers quote test NLL on (arrays X_train, X_valid, X_test). Figures comparable with the paper
  must use this one: a different binarisation of the same digits scores differently. Its images are a shuffled pick
  of all 60,000 MNIST training digits, not train[:50,000] / train[50,000:]; `larochelle_grey_sources` traces each
  training image to its grey digit, so that DataSource(binarized_npz=..., root=..., binarization="dynamic") can
  re-draw the npz's own training digits every epoch while its validation and test images stay as published.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from speechdraw.engine.download import DownloadError, download

BINARIZE_SEED = 2015  # numpy default_rng seed of the fixed binarisation (the DRAW paper's year; any fixed value works)
NUM_VALID = 10_000  # the last 10,000 training images are the validation split

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Mirrors that serve the four gzipped files under their standard names, tried in order.
MIRRORS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
# The published md5 sums of the gzipped files (the ones torchvision checks).
MD5 = {
    "mnist": {"train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
              "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
              "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
              "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c"},
    "fashion-mnist": {"train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                      "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
                      "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
                      "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310"},
}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# ---------------------------------------------------------------------------------------------------------------------
# containers


class ImageSet(Dataset):
    """images (N, C, H, W) float32 in [0, 1]; labels (N,) int64 or None. Items are (image, label), label -1 if none."""

    def __init__(self, images: Tensor, labels: Tensor | None = None):
        if images.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W), got {tuple(images.shape)}")
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(labels)} labels for {len(images)} images")
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.images[i], (int(self.labels[i]) if self.labels is not None else -1)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def mean_image(self) -> Tensor:
        """(C, H, W) the mean pixel values, for Draw.init_canvas_from_data."""
        return self.images.mean(0)

    def with_next_labels(self, num_classes: int) -> ImageSet:
        """The same images, each labelled with the next class, (label + 1) mod num_classes: scored beside the true
        labels, it shows how much a class-conditional model relies on its labels."""
        if self.labels is None:
            raise ValueError("these images have no labels")
        return ImageSet(self.images, (self.labels + 1) % num_classes)


class DynamicBinarized(ImageSet):
    """Grey images re-binarised every epoch: image = (u < p), u ~ U(0, 1) drawn from a generator seeded by (seed,
    epoch), so an epoch's images are a pure function of (seed, epoch) and a resumed run sees the same ones."""

    def __init__(self, probs: Tensor, labels: Tensor | None = None, seed: int = BINARIZE_SEED):
        super().__init__(torch.empty_like(probs), labels)
        self.probs = probs
        self.seed = seed
        self.epoch = -1
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        if epoch == self.epoch:
            return
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        self.images = (torch.rand(self.probs.shape, generator=g) < self.probs).float()
        self.epoch = epoch


@dataclass
class ImageSplits:
    train: ImageSet
    valid: ImageSet
    test: ImageSet


# ---------------------------------------------------------------------------------------------------------------------
# IDX files


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not: recognised by content, not by name."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (magic bytes {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(shape)) if shape else 1
    if len(raw) - header < count * dtype.itemsize:
        raise ValueError(f"{path}: truncated IDX file: header says {shape}, {len(raw) - header} bytes of data")
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=header)
    return data.reshape(shape).astype(dtype.newbyteorder("="))  # a writable, native-endian copy


def find_idx(root: str | os.PathLike, stem: str) -> Path:
    """The file for `stem` (e.g. 'train-images-idx3-ubyte') in root: stem.gz, stem, or the 'train-images.idx3-ubyte'
    spelling some archives use."""
    root = Path(root)
    dotted = stem.replace("-idx", ".idx")
    for name in (stem + ".gz", stem, dotted + ".gz", dotted):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"no {stem}[.gz] in {root} (expected the four standard MNIST IDX files; "
                            f"download_mnist({str(root)!r}) fetches them)")


def load_mnist(root: str | os.PathLike, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """MNIST or Fashion-MNIST from the standard IDX files in root: uint8 images (N, 28, 28), int64 labels (N,)."""
    if split not in MNIST_FILES:
        raise ValueError(f"split must be one of {list(MNIST_FILES)}, got {split!r}")
    images_stem, labels_stem = MNIST_FILES[split]
    images = read_idx(find_idx(root, images_stem))
    labels = read_idx(find_idx(root, labels_stem)).astype(np.int64)
    if images.ndim != 3 or labels.shape != (images.shape[0],):
        raise ValueError(f"{root}: {split} images {images.shape} and labels {labels.shape} do not match")
    return images, labels


def download_mnist(root: str | os.PathLike, dataset: str = "mnist", mirrors: tuple[str, ...] | None = None,
                   checksums: dict[str, str] | None = None, timeout: float = 60.0) -> Path:
    """Fetch the four gzipped IDX files into root (skipping those present), for users who are online.

    dataset: 'mnist' or 'fashion-mnist'; mirrors: base URLs tried in order (default MIRRORS[dataset]); checksums: md5
    per file stem (default: the published MD5[dataset]). Each file is fetched by speechdraw.engine.download (a timeout
    on every request, resumed partial files, the md5 checked before the file is kept) and checked to parse as IDX."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    mirrors = tuple(mirrors or MIRRORS[dataset])
    checksums = MD5[dataset] if checksums is None else checksums
    for stems in MNIST_FILES.values():
        for stem in stems:
            try:
                find_idx(root, stem)
                continue
            except FileNotFoundError:
                pass
            errors = []
            for base in mirrors:
                url = base.rstrip("/") + "/" + stem + ".gz"
                target = root / (stem + ".gz")
                try:
                    download(url, target, md5=checksums.get(stem), timeout=timeout)
                    read_idx(target)
                    break
                except (DownloadError, OSError, ValueError) as e:
                    errors.append(str(e) if isinstance(e, DownloadError) else f"{url}: {e}")
                    target.unlink(missing_ok=True)
            else:
                raise RuntimeError(f"could not download {stem}.gz:\n  " + "\n  ".join(errors))
    return root


# ---------------------------------------------------------------------------------------------------------------------
# binarisation and splits


def binarize(images: np.ndarray, seed: int = BINARIZE_SEED) -> np.ndarray:
    """Fixed stochastic binarisation: uint8 grey levels (any shape) -> float32 0/1, 1 with probability pixel / 255,
    drawn with numpy default_rng(seed) in C order. The same input and seed give the same output on every platform."""
    probs = np.asarray(images, dtype=np.float32) / 255.0
    return (np.random.default_rng(seed).random(probs.shape, dtype=np.float32) < probs).astype(np.float32)


def _to_tensor(images: np.ndarray) -> Tensor:
    """(N, H, W) or (N, H, W, C) numpy -> (N, C, H, W) float32 tensor."""
    t = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    return t.unsqueeze(1) if t.dim() == 3 else t.permute(0, 3, 1, 2).contiguous()


def mnist_splits(root: str | os.PathLike, binarization: str = "fixed", seed: int = BINARIZE_SEED,
                 num_valid: int = NUM_VALID) -> ImageSplits:
    """Train (first 60,000 - num_valid), validation (last num_valid) and test splits from the IDX files in root.

    binarization: 'fixed' (every split binarised once, seed), 'dynamic' (training split re-drawn each epoch, see
    DynamicBinarized; validation and test fixed), or 'none' (grey levels k / 255, for the discretised logistic)."""
    if binarization not in ("fixed", "dynamic", "none"):
        raise ValueError(f"binarization must be 'fixed', 'dynamic' or 'none', got {binarization!r}")
    train_u8, train_labels = load_mnist(root, "train")
    test_u8, test_labels = load_mnist(root, "test")
    n_train = train_u8.shape[0] - num_valid
    if n_train <= 0 or num_valid < 0:
        raise ValueError(f"num_valid={num_valid} leaves no training images out of {train_u8.shape[0]}")
    labels = torch.from_numpy(train_labels)
    test_y = torch.from_numpy(test_labels)
    if binarization == "none":
        grey = _to_tensor(train_u8) / 255.0
        return ImageSplits(ImageSet(grey[:n_train], labels[:n_train]), ImageSet(grey[n_train:], labels[n_train:]),
                           ImageSet(_to_tensor(test_u8) / 255.0, test_y))
    # One draw over all 60,000 training images, then split, so the validation images do not depend on num_valid.
    train_bin = _to_tensor(binarize(train_u8, seed))
    test_bin = _to_tensor(binarize(test_u8, seed + 1))
    valid = ImageSet(train_bin[n_train:], labels[n_train:])
    if binarization == "dynamic":
        train = DynamicBinarized(_to_tensor(train_u8[:n_train]) / 255.0, labels[:n_train], seed)
    else:
        train = ImageSet(train_bin[:n_train], labels[:n_train])
    return ImageSplits(train, valid, ImageSet(test_bin, test_y))


def load_binarized_mnist(path: str | os.PathLike) -> ImageSplits:
    """The Larochelle & Murray fixed binarisation: an .npz with float 0/1 arrays X_train, X_valid, X_test of (N, 784)
    (no labels)."""
    with np.load(path) as d:
        missing = {"X_train", "X_valid", "X_test"} - set(d.files)
        if missing:
            raise ValueError(f"{path}: missing arrays {sorted(missing)} (has {d.files})")
        sets = [ImageSet(torch.from_numpy(np.asarray(d[k], dtype=np.float32)).view(-1, 1, 28, 28))
                for k in ("X_train", "X_valid", "X_test")]
    return ImageSplits(*sets)


def match_grey_sources(binary: Tensor, grey: np.ndarray, exclude: Tensor | None = None,
                       chunk: int = 1000) -> tuple[Tensor, Tensor]:
    """For each binarised image, the grey image most likely to have produced it by stochastic binarisation.

    binary: (N, ...) 0/1; grey: (M, ...) uint8 with the same pixels per image; exclude: (M,) bool, grey images that may
    not be picked. Pixel d of a binarisation of grey image j is 1 with probability p_jd = grey[j, d] / 255, so
    log P(x | j) = sum_d x_d log p_jd + (1 - x_d) log(1 - p_jd) = x . (log p_j - log(1 - p_j)) + sum_d log(1 - p_jd):
    one (N, D) x (D, M) product. Returns indices into grey (N,) and their log-likelihoods (N,) in nats (for MNIST an
    image's own digit explains it at about -45, any other digit below -150; thin digits such as 1s can have two
    sources within a few nats of each other, either of which is as good a grey version)."""
    p = torch.from_numpy(grey.reshape(len(grey), -1).astype(np.float32) / 255.0).clamp(1e-4, 1 - 1e-4)
    w = (p.log() - (1 - p).log()).T.contiguous()  # (D, M)
    b = (1 - p).log().sum(1)  # (M,)
    if exclude is not None:
        b = b.masked_fill(exclude, -math.inf)
    best, loglik = [], []
    for x in binary.flatten(1).split(chunk):  # (chunk, D): (chunk, M) scores at a time, not (N, M)
        v, i = (x @ w + b).max(1)
        best.append(i)
        loglik.append(v)
    return torch.cat(best), torch.cat(loglik)


def larochelle_grey_sources(npz: str | os.PathLike, root: str | os.PathLike) -> tuple[Tensor, Tensor]:
    """The grey MNIST training digits (IDX files in root) that the Larochelle npz's X_train images are binarisations
    of, so that they can be re-binarised every epoch: indices into the 60,000 (50,000,) and the log-likelihoods of
    the matches. The npz's validation images are matched first and their digits barred from training, so a dynamic
    training set never holds a validation digit. An image that no digit explains (log-likelihood below -150) is an
    error: the npz is not a binarisation of these digits. About 3 minutes on one core, so the result is cached in
    ~/.cache/speechdraw/draw/ under the sha256 of both files."""
    from speechdraw.models import file_sha256, user_cache

    images = find_idx(root, MNIST_FILES["train"][0])
    key = hashlib.sha256(f"{file_sha256(npz)} {file_sha256(images)}".encode()).hexdigest()[:16]
    cache = user_cache() / "draw" / f"larochelle-grey-sources-{key}.npz"
    if cache.is_file():
        with np.load(cache) as d:
            return torch.from_numpy(d["index"]), torch.from_numpy(d["loglik"])
    splits = load_binarized_mnist(npz)
    grey, _ = load_mnist(root, "train")
    valid_src, valid_ll = match_grey_sources(splits.valid.images, grey)
    barred = torch.zeros(len(grey), dtype=torch.bool)
    barred[valid_src] = True
    index, loglik = match_grey_sources(splits.train.images, grey, exclude=barred)
    for name, ll in (("X_valid", valid_ll), ("X_train", loglik)):
        worst = int(ll.argmin())
        if ll[worst] < -150:
            raise ValueError(f"{npz}: {name}[{worst}] is no binarisation of any training digit in {root} (best "
                             f"log-likelihood {float(ll[worst]):.0f} nats; its own digit scores about -45)")
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez(tmp, index=index.numpy(), loglik=loglik.numpy())
    os.replace(tmp, cache)
    return index, loglik


# ---------------------------------------------------------------------------------------------------------------------
# image files


def load_image(path: str | os.PathLike, size: tuple[int, int], channels: int = 3) -> Tensor:
    """One image file -> (C, H, W) float32 on the 8-bit grid k / 255, converted to RGB (3) or grey (1) and resized to
    size = (H, W) (Lanczos; aspect ratio not kept)."""
    from PIL import Image

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    h, w = size
    with Image.open(path) as im:
        im = im.convert("RGB" if channels == 3 else "L")
        if im.size != (w, h):
            im = im.resize((w, h), Image.Resampling.LANCZOS)
        arr = np.asarray(im, dtype=np.uint8)
    t = torch.from_numpy(arr.copy()).float().div_(255.0)
    return t.unsqueeze(0) if channels == 1 else t.permute(2, 0, 1).contiguous()


def list_images(root: str | os.PathLike) -> list[Path]:
    """Image files under root (recursively), sorted by path."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"no such file or directory: {root}")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def image_folder(root: str | os.PathLike, size: tuple[int, int], channels: int = 3) -> ImageSet:
    """Every image under root, resized to size = (H, W). When the images sit in one sub-folder per class (as
    torchvision's ImageFolder), the label is the index of the sub-folder's name in sorted order; otherwise no labels."""
    root = Path(root)
    paths = list_images(root)
    if not paths:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    images = torch.stack([load_image(p, size, channels) for p in paths])
    labels = None
    parents = [p.relative_to(root).parts for p in paths] if root.is_dir() else []
    if parents and all(len(parts) >= 2 for parts in parents):
        classes = sorted({parts[0] for parts in parents})
        index = {c: i for i, c in enumerate(classes)}
        labels = torch.tensor([index[parts[0]] for parts in parents], dtype=torch.int64)
    return ImageSet(images, labels)


# ---------------------------------------------------------------------------------------------------------------------
# one entry point for the recipes


@dataclass
class DataSource:
    """Where a run's images come from; recorded in the release so `speechdraw sample --reconstruct test:N` and
    recipes/draw/evaluate.py can load the same test images again. image_folder, if set, wins over binarized_npz, which
    wins over root. binarization applies to IDX files and image folders; the npz is binarised already, and with
    binarization 'dynamic' its training images are replaced by their grey MNIST digits from root (found by
    larochelle_grey_sources), re-binarised every epoch, while its validation and test images stay as they are."""

    root: str = ""  # directory with the four MNIST / Fashion-MNIST IDX files
    binarized_npz: str = ""  # Larochelle & Murray binarized_mnist.npz
    image_folder: str = ""  # any folder of images, resized to (height, width)
    binarization: str = "fixed"  # fixed, dynamic or none (grey levels k / 255)
    seed: int = BINARIZE_SEED  # seed of the stochastic binarisation
    num_valid: int = NUM_VALID  # IDX: last num_valid training images validate
    valid_fraction: float = 0.1  # image folder: this fraction, picked at random with `seed`, validates
    height: int = 28
    width: int = 28
    channels: int = 1

    @property
    def kind(self) -> str:
        return "image_folder" if self.image_folder else "binarized_npz" if self.binarized_npz else "idx"

    def describe(self) -> str:
        if self.kind == "image_folder":
            return f"images under {self.image_folder} at {self.height}x{self.width}x{self.channels}"
        if self.kind == "binarized_npz":
            if self.binarization == "dynamic":
                return (f"Larochelle & Murray binarisation {self.binarized_npz}, its training digits re-drawn every "
                        f"epoch from their grey versions in {self.root} (seed {self.seed})")
            return f"Larochelle & Murray fixed binarisation {self.binarized_npz}"
        extra = f", seed {self.seed}" if self.binarization != "none" else ""
        return f"IDX files in {self.root}, binarisation {self.binarization}{extra}"

    def describe_test(self) -> str:
        """Where load_test's images come from: the npz's test images are its fixed ones whatever the training saw."""
        if self.kind == "binarized_npz":
            return replace(self, binarization="fixed").describe()
        return self.describe()


def load_splits(src: DataSource) -> ImageSplits:
    """Train / validation / test ImageSets for a DataSource. An image folder has no test split: its validation split
    stands in for it."""
    if src.binarization not in ("fixed", "dynamic", "none"):
        raise ValueError(f"binarization must be 'fixed', 'dynamic' or 'none', got {src.binarization!r}")
    if src.kind == "image_folder":
        images = image_folder(src.image_folder, (src.height, src.width), src.channels)
        n_valid = max(1, round(len(images) * src.valid_fraction))
        if n_valid >= len(images):
            raise ValueError(f"{src.image_folder}: {len(images)} images are too few to hold out {n_valid}")
        # A seeded random pick, not the last files: those would all come from the last class folder.
        perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(src.seed))
        valid_idx, train_idx = perm[:n_valid].sort().values, perm[n_valid:].sort().values
        lab = images.labels
        grey = images.images
        fixed = grey
        if src.binarization != "none":
            fixed = torch.from_numpy(binarize((grey * 255).round().to(torch.uint8).numpy(), src.seed))
        train_labels = None if lab is None else lab[train_idx]
        if src.binarization == "dynamic":
            train = DynamicBinarized(grey[train_idx], train_labels, src.seed)
        else:
            train = ImageSet(fixed[train_idx], train_labels)
        valid = ImageSet(fixed[valid_idx], None if lab is None else lab[valid_idx])
        return ImageSplits(train, valid, valid)
    if src.kind == "binarized_npz":
        splits = load_binarized_mnist(src.binarized_npz)
        if src.binarization == "dynamic":  # the same training digits, re-drawn from their grey versions every epoch
            index, _ = larochelle_grey_sources(src.binarized_npz, src.root)
            grey, _ = load_mnist(src.root, "train")
            splits.train = DynamicBinarized(_to_tensor(grey[index.numpy()]) / 255.0, None, src.seed)
        return splits
    return mnist_splits(src.root, src.binarization, src.seed, src.num_valid)


def load_test(src: DataSource) -> ImageSet:
    """The test split alone, for evaluation and reconstruction: never matches or re-draws training images."""
    if src.kind == "binarized_npz":
        return load_binarized_mnist(src.binarized_npz).test
    return load_splits(src).test
