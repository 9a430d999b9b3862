"""Evaluation subsets of the DRAW bounds: a smaller figure is taken on a seeded random sample of the images, never on
the first N (the Larochelle binarised MNIST test set is sorted by class), and the sample is recorded."""

from __future__ import annotations

import torch
from draw_fixtures import calm_model, threads, tiny_config

from speechdraw.draw.bounds import elbo_bound, evaluation_subset, iwae_bound
from speechdraw.draw.data import ImageSet


def class_sorted_set(per_class: int = 60, classes: int = 10) -> ImageSet:
    """A toy test set sorted by class like binarized_mnist.npz's: class c is a 12 x 12 image with its first 14 c
    pixels on, so the classes score differently."""
    labels = torch.arange(classes).repeat_interleave(per_class)  # (N,) 0 0 ... 1 1 ... 9
    images = torch.zeros(len(labels), 1, 12, 12)
    for i, c in enumerate(labels.tolist()):
        images[i].view(-1)[: 14 * c] = 1.0
    return ImageSet(images, labels)


def test_evaluation_subset_is_a_seeded_random_sample_across_classes():
    data = class_sorted_set()
    idx, rule = evaluation_subset(len(data), 100, seed=0)
    classes = data.labels[idx].bincount(minlength=10)
    assert (classes > 0).sum() >= 8, classes  # the first 100 would be classes 0 and 1 only
    assert classes.max() <= 25, classes
    assert len(idx) == len(set(idx.tolist())) == 100 and (idx.diff() > 0).all()
    assert rule["seed"] == 0 and rule["images"] == 100 and rule["of"] == 600 and "random" in rule["rule"]
    again, same_rule = evaluation_subset(len(data), 100, seed=0)
    other, other_rule = evaluation_subset(len(data), 100, seed=1)
    assert torch.equal(idx, again) and same_rule == rule
    assert not torch.equal(idx, other) and other_rule["indices_sha256"] != rule["indices_sha256"]
    everything, all_rule = evaluation_subset(len(data), 0)
    assert torch.equal(everything, torch.arange(600)) and all_rule == {"rule": "all", "images": 600, "of": 600}
    assert evaluation_subset(len(data), 600)[1]["rule"] == "all"


def test_bounds_on_a_subset_score_the_recorded_random_images():
    """elbo_bound / iwae_bound with a size score exactly the images evaluation_subset names, on every rank."""
    data = class_sorted_set()
    model = calm_model(tiny_config(), seed=3)
    with torch.no_grad():
        model.canvas0.fill_(-4.0)  # pixels start off: every pixel that is on costs ~4 nats, so classes differ
    idx, rule = evaluation_subset(len(data), 90, seed=5)
    picked = ImageSet(data.images[idx], data.labels[idx])
    with threads(1):
        part = elbo_bound(model, data, max_images=90, subset_seed=5, batch_size=40)
        direct = elbo_bound(model, picked, batch_size=40)
        first = elbo_bound(model, ImageSet(data.images[:90]), batch_size=40)
        ranks = [elbo_bound(model, data, max_images=90, subset_seed=5, batch_size=40, rank=r, world_size=2)
                 for r in (0, 1)]
        torch.manual_seed(0)
        w_part = iwae_bound(model, data, k=5, num_images=90, subset_seed=5)
        torch.manual_seed(0)
        w_direct = iwae_bound(model, picked, k=5)
    assert part["subset"] == rule and part["images"] == 90 and direct["subset"]["rule"] == "all"
    assert abs(part["bound"] - direct["bound"]) < 1e-4  # same images, same seeded noise
    assert part["bound"] > first["bound"] + 50  # the first 90 images (classes 0, 1) have few pixels on
    assert sum(r["images"] for r in ranks) == 90  # without a process group each rank sees only its shard
    assert w_part["subset"] == rule and abs(w_part["bound"] - w_direct["bound"]) < 1e-4
