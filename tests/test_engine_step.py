"""TrainStep: accumulation equivalence, precision paths, the non-finite guard."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import needs_cpu_bf16
from torch import nn

from speechdraw.engine.device import Precision
from speechdraw.engine.step import NonFiniteError, TrainStep

CPU = torch.device("cpu")


class Tagger(nn.Module):
    """Per-frame classifier over padded sequences; padding frames are ignored by the loss."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 16, batch_first=True)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        return self.out(self.lstm(x)[0])


def make_batch(lengths, seed):
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    x = torch.zeros(len(lengths), T, 4)
    y = torch.full((len(lengths), T), -100)
    for i, n in enumerate(lengths):
        x[i, :n] = torch.randn(n, 4, generator=g)
        y[i, :n] = torch.randint(0, 3, (n,), generator=g)
    return x, y


def forward(model, batch):
    return model(batch[0])


def loss_fn(logits, batch):
    return F.cross_entropy(logits.transpose(1, 2), batch[1], ignore_index=-100, reduction="sum")


def frames(batch):
    return int((batch[1] != -100).sum())


def concat(batches):
    T = max(b[0].shape[1] for b in batches)
    xs = torch.cat([F.pad(b[0], (0, 0, 0, T - b[0].shape[1])) for b in batches])
    ys = torch.cat([F.pad(b[1], (0, T - b[1].shape[1]), value=-100) for b in batches])
    return xs, ys


def make_step(model, precision="fp32", **kw):
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    p = Precision(precision, CPU)
    return TrainStep(model, opt, p, forward=forward, loss_fn=loss_fn, scaler=p.make_scaler(), **kw)


def test_accumulation_with_variable_lengths_equals_one_big_batch():
    torch.manual_seed(0)
    a, b, c = Tagger(), Tagger(), Tagger()
    b.load_state_dict(a.state_dict())
    c.load_state_dict(a.state_dict())
    # Three micro-batches with very different frame counts: averaging per micro-batch would weight them wrongly.
    window = [make_batch([3, 2], 1), make_batch([17, 30, 25, 9], 2), make_batch([5], 3)]
    big = concat(window)
    ra = make_step(a, clip_norm=0)(window, [frames(w) for w in window])
    rb = make_step(b, clip_norm=0)([big], [frames(big)])
    assert ra.count == rb.count == sum(frames(w) for w in window)
    assert math.isclose(ra.loss, rb.loss, rel_tol=1e-6)
    assert math.isclose(ra.grad_norm, rb.grad_norm, rel_tol=1e-5)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6), name
    # The naive alternative (mean per micro-batch, averaged over micro-batches) gives a different update.
    opt = torch.optim.SGD(c.parameters(), lr=0.5)
    for w in window:
        (loss_fn(c(w[0]), w) / frames(w) / len(window)).backward()
    opt.step()
    assert not torch.allclose(a.out.weight, c.out.weight, atol=1e-4)


def _train(precision, steps=100):
    torch.manual_seed(0)
    model = Tagger()
    step = make_step(model, precision)
    # A learnable rule: class = sign pattern of the first input feature.
    losses = []
    for i in range(steps):
        x, _ = make_batch([20] * 8, 100 + i % 4)
        y = (x[..., 0] > 0).long() + (x[..., 1] > 0).long()
        losses.append(step([(x, y)], [y.numel()]).loss)
    return losses, step


@needs_cpu_bf16
def test_bf16_autocast_trains_on_cpu():
    losses, step = _train("bf16")
    ref, _ = _train("fp32")
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    assert abs(sum(losses[-5:]) - sum(ref[-5:])) / sum(ref[-5:]) < 0.1  # tracks the fp32 run...
    assert losses != ref  # ...but really ran in bf16
    assert step.nonfinite_skips == 0


@needs_cpu_bf16
def test_loss_is_fp32_outside_autocast():
    seen = {}

    def spy_loss(logits, batch):
        seen["dtype"] = logits.dtype
        seen["autocast"] = torch.is_autocast_enabled("cpu")
        return loss_fn(logits, batch)

    model = Tagger()
    p = Precision("bf16", CPU)
    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1), p, forward=forward, loss_fn=spy_loss)
    batch = make_batch([5, 7], 0)
    step([batch], [frames(batch)])
    assert seen == {"dtype": torch.float32, "autocast": False}


class FrameMLP(nn.Module):
    """oneDNN has no fp16 LSTM on most CPUs; the fp16 path is exercised with linear layers."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(4, 16)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(x)))


def test_fp16_gradscaler_skips_injected_inf_without_counting_it():
    torch.manual_seed(0)
    model = FrameMLP()
    step = make_step(model, "fp16", max_consecutive_skips=1)
    inject = {"on": False}
    model.out.weight.register_hook(lambda g: g * math.inf if inject["on"] else g)
    batch = make_batch([6, 9, 4], 7)
    step([batch], [frames(batch)])  # a normal fp16 step
    scale_before = step.scaler.get_scale()
    before = [p.detach().clone() for p in model.parameters()]
    inject["on"] = True
    result = step([batch], [frames(batch)])  # max_consecutive_skips=1 would raise if this counted
    assert result.overflow and not result.skipped
    assert step.overflow_skips == 1 and step.nonfinite_skips == 0
    assert step.scaler.get_scale() < scale_before
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    inject["on"] = False
    assert not step([batch], [frames(batch)]).overflow
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_nonfinite_guard_skips_counts_and_stops():
    model = Tagger()
    bad = {"on": False}

    def maybe_nan(logits, batch):
        loss = loss_fn(logits, batch)
        return loss * math.nan if bad["on"] else loss

    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1), Precision("fp32", CPU), forward=forward,
                     loss_fn=maybe_nan, max_consecutive_skips=3, describe=lambda b: f"batch{b[0].shape[0]}")
    batch = make_batch([5, 7], 0)
    bad["on"] = True
    before = [p.detach().clone() for p in model.parameters()]
    assert step([batch], [frames(batch)]).skipped
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())
    bad["on"] = False
    assert not step([batch], [frames(batch)]).skipped  # a good step resets the consecutive count
    assert step.nonfinite_skips == 1 and step.consecutive_skips == 0
    bad["on"] = True
    step([batch], [frames(batch)])
    step([batch], [frames(batch)])
    with pytest.raises(NonFiniteError, match="3 consecutive steps.*non-finite loss.*step 42.*batch2"):
        step([batch], [frames(batch)], step=42)
