"""The loop position (engine/loop.py): accumulation windows keep each epoch's tail, the schedule horizon counts it,
and a resumed position regroups the remaining batches as the uninterrupted run did."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from speechdraw.engine.device import Precision
from speechdraw.engine.loop import epochs, steps_in_epoch, total_steps, windows
from speechdraw.engine.sampler import BucketBatchSampler
from speechdraw.engine.step import TrainStep


def fresh_loop():
    return {"step": 0, "epoch": 0, "batch": 0}


def test_an_epoch_tail_is_a_shorter_window_not_dropped():
    loop = fresh_loop()
    got = [list(w) for w in windows(range(16), loop, 3)]
    assert got == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11], [12, 13, 14], [15]]
    assert loop == {"step": 6, "epoch": 0, "batch": 16}
    assert steps_in_epoch(16, 3) == 6 and steps_in_epoch(15, 3) == 5 and steps_in_epoch(1, 4) == 1


def test_max_steps_stops_without_drawing_another_batch():
    drawn = []

    def batches():
        for i in range(10):
            drawn.append(i)
            yield i

    loop = fresh_loop()
    assert [w for w in windows(batches(), loop, 2, max_steps=2)] == [[0, 1], [2, 3]]
    assert drawn == [0, 1, 2, 3] and loop["batch"] == 4


def test_horizon_is_the_real_number_of_optimiser_steps():
    # SortaGrad: epoch 0 packs tighter than the shuffled ones, so epochs differ in batch count.
    lengths = [float(1 + (i * 7) % 23) for i in range(101)]
    sampler = BucketBatchSampler(lengths, max_total=60.0, num_buckets=1, seed=3, sort_first_epoch=True)
    accum, num_epochs = 4, 3
    loop, steps = fresh_loop(), 0
    for epoch in epochs(loop, sampler, num_epochs):
        steps += sum(1 for _ in windows(sampler, loop, accum))
        loop["epoch"], loop["batch"] = epoch + 1, 0
    counts = sampler.epoch_lengths(num_epochs)
    assert any(n % accum for n in counts)  # there are tails to count
    assert steps == loop["step"] == total_steps(sampler, num_epochs, accum)
    assert sum(counts) // accum != steps  # the old horizon (floored over all epochs) was wrong here


def test_resume_mid_epoch_regroups_the_rest_exactly():
    sampler = BucketBatchSampler([float(i % 9 + 1) for i in range(70)], batch_size=5, num_buckets=2, seed=1)
    full = []
    loop = fresh_loop()
    for epoch in epochs(loop, sampler, 2):
        full += [(epoch, w) for w in windows(sampler, loop, 4)]
        loop["epoch"], loop["batch"] = epoch + 1, 0
    # Stop after 2 steps, then continue from the saved position with a fresh sampler.
    loop = fresh_loop()
    part = []
    for epoch in epochs(loop, sampler, 2, max_steps=2):
        part += [(epoch, w) for w in windows(sampler, loop, 4, max_steps=2)]
    saved = dict(loop)
    assert saved == {"step": 2, "epoch": 0, "batch": 8}
    sampler2 = BucketBatchSampler([float(i % 9 + 1) for i in range(70)], batch_size=5, num_buckets=2, seed=1)
    for epoch in epochs(saved, sampler2, 2):
        part += [(epoch, w) for w in windows(sampler2, saved, 4)]
        saved["epoch"], saved["batch"] = epoch + 1, 0
    assert part == full
    assert [len(w) for e, w in full if e == 0] == [4, 4, 4, 2]  # 14 batches: a tail of 2


def test_a_tail_window_is_trained_and_normalised_by_its_own_count():
    """Four batches with accum_steps 3: the second step is the tail alone, a mean over the tail's own frames."""
    torch.manual_seed(0)
    batches = [(torch.randn(n, 3), torch.randn(n)) for n in (4, 7, 2, 5)]
    model = nn.Linear(3, 1, bias=False)
    w0 = model.weight.detach().clone()
    lr = 0.1
    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=lr), Precision("fp32", torch.device("cpu")),
                     forward=lambda m, b: m(b[0]).squeeze(-1),
                     loss_fn=lambda out, b: F.mse_loss(out, b[1], reduction="sum"), clip_norm=0)
    loop = fresh_loop()
    for window in windows(batches, loop, 3):
        step(window, [len(b[1]) for b in window], step=loop["step"])
    assert loop["step"] == 2

    def mean_grad(w, group):  # gradient of the mean squared error over the group's frames
        x, y = torch.cat([b[0] for b in group]), torch.cat([b[1] for b in group])
        return 2 * ((x @ w.T).squeeze(-1) - y) @ x / len(y)

    w1 = w0 - lr * mean_grad(w0, batches[:3])
    w2 = w1 - lr * mean_grad(w1, batches[3:])
    assert torch.allclose(model.weight.detach(), w2, atol=1e-6)
    assert not torch.allclose(w1, w2, atol=1e-3)  # the tail step moved the weights
