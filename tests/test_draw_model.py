"""The DRAW model: equivalence with a straightforward implementation, the paper's details that ports get wrong, the
KL and importance-weighted bounds, generation. (The short training run on real MNIST is the tiny recipe, in
tests/test_draw_recipe.py.)"""

from __future__ import annotations

import gc
import math
from dataclasses import asdict

import pytest
import torch
from conftest import needs_cpu_bf16
from draw_fixtures import calm_model, reference_module, tiny_config

from speechdraw.draw.model import (
    Draw,
    DrawConfig,
    SharedLinear,
    _Stash,
    discretized_logistic_nll,
    gaussian_kl,
)


def test_config_round_trips_through_a_plain_dict_and_checks_fields():
    cfg = DrawConfig(height=32, width=24, channels=3, steps=10, attention=False, likelihood="logistic", num_classes=10)
    d = asdict(cfg)
    assert all(isinstance(v, (int, str, bool)) for v in d.values())
    assert DrawConfig(**d) == cfg
    with pytest.raises(ValueError):
        DrawConfig(likelihood="gaussian")
    with pytest.raises(ValueError):
        DrawConfig(read_n=0)


def test_plain_state_dict_loads_strictly_into_a_fresh_model_and_the_reference():
    cfg = tiny_config(num_classes=3)
    model = Draw(cfg)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    assert "read_head.linear.weight" in sd and "write_head.linear.weight" in sd and "encoder.weight_ih" in sd
    fresh = Draw(DrawConfig(**asdict(cfg)))
    fresh.load_state_dict(sd, strict=True)
    reference_module().ReferenceDraw(cfg).load_state_dict(sd, strict=True)
    with pytest.raises(RuntimeError):
        Draw(tiny_config(num_classes=3, attention=False)).load_state_dict(sd, strict=True)


@pytest.mark.parametrize("overrides", [
    dict(),  # attention, square, unconditional
    dict(attention=False),
    dict(height=10, width=14, channels=3, read_n=3, write_n=4, num_classes=4),
])
def test_matches_the_straightforward_implementation_in_values_and_gradients(overrides):
    cfg = tiny_config(**overrides)
    model = calm_model(cfg, seed=1, dtype=torch.float64)
    ref = reference_module().ReferenceDraw(cfg).double()
    ref.load_state_dict(model.state_dict(), strict=True)
    torch.manual_seed(2)
    x = (torch.rand(5, *cfg.image_shape) < 0.3).double()
    eps = torch.randn(cfg.steps, 5, cfg.z_size, dtype=torch.float64)
    labels = torch.randint(0, cfg.num_classes, (5,)) if cfg.num_classes else None
    out = model(x, labels, eps=eps)
    recon, kl, kl_steps = ref(x, labels, eps=eps)
    # float64: the only difference left is the reference's filter normalisation by (sum + 1e-8)
    torch.testing.assert_close(out.recon, recon, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(out.kl_steps, kl_steps, rtol=1e-7, atol=1e-7)
    (out.nll_bound.sum()).backward()
    (recon + kl).sum().backward()
    ref_params = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_params[name].grad, rtol=1e-6, atol=1e-7, msg=name)


def test_fused_lstm_step_and_deferred_weight_gradient_match_autograd():
    torch.manual_seed(3)
    steps, b, k1, k2, h = 3, 4, 2, 5, 3
    w_t = torch.randn(k1 + k2, 4 * h, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4 * h, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(b, h, dtype=torch.float64, requires_grad=True)
    xs = torch.randn(steps, b, k1, dtype=torch.float64, requires_grad=True)

    def run(fused: bool):
        lin = SharedLinear(w_t, bias, steps, b, deferred=fused)
        hid, c = torch.zeros(b, h, dtype=torch.float64), c0
        outs = []
        for t in range(steps):
            # a second parts slot of width k2 fed by the last state (padded), like [r, h_dec, h_enc]
            other = torch.cat((hid, torch.zeros(b, k2 - h, dtype=torch.float64)), 1)
            hid, c = lin.lstm(c, xs[t], other)
            outs.append(hid)
        return torch.stack(outs).sum() + c.square().sum()

    assert torch.autograd.gradcheck(lambda *_: run(True), (w_t, bias, c0, xs))
    grads = torch.autograd.grad(run(True), (w_t, bias, c0, xs))
    expect = torch.autograd.grad(run(False), (w_t, bias, c0, xs))
    for g, e in zip(grads, expect):
        torch.testing.assert_close(g, e)
    # and one step is exactly nn.LSTMCell (gate order i, f, g, o) with its two weight matrices side by side
    cell = torch.nn.LSTMCell(k1, h).double()
    x, h0 = torch.randn(b, k1, dtype=torch.float64), torch.randn(b, h, dtype=torch.float64)
    with torch.no_grad():
        expect_h, expect_c = cell(x, (h0, c0))
        w_t2 = torch.cat((cell.weight_ih, cell.weight_hh), 1).t()
        b2 = cell.bias_ih + cell.bias_hh
        plain_h, plain_c = SharedLinear(w_t2, b2, 1, b).lstm(c0, x, h0)  # no grad: plain addmm path
    fused = SharedLinear(w_t2.clone().requires_grad_(), b2, 1, b)
    assert fused.deferred
    fused_h, fused_c = fused.lstm(c0, x, h0)
    for got_h, got_c in ((plain_h, plain_c), (fused_h, fused_c)):
        torch.testing.assert_close(got_h.detach(), expect_h)
        torch.testing.assert_close(got_c.detach(), expect_c)


@pytest.mark.parametrize("overrides,block", [({}, 1), ({"num_classes": 4}, 2), ({"attention": False}, 3)])
def test_the_blocks_compile_step_traces_give_the_same_loss_and_gradients(overrides, block):
    """What Draw.compile_step hands torch.compile (_traced_block: `block` glimpses of plain ops on constant weights,
    taps carrying each GEMM output's gradient to the deferred weight gradients), run without the compiler, in
    float64; 3 glimpses per block over the 4 glimpses leaves a block of 1."""
    cfg = tiny_config(height=12, width=16, **overrides)
    plain = calm_model(cfg, seed=5).double()
    traced = Draw(cfg).double()
    traced.load_state_dict(plain.state_dict())
    traced._compiled_block, traced._block_size = traced._traced_block, block
    x = (torch.rand(6, 1, 12, 16) < 0.4).double()
    labels = torch.tensor([0, 1, 2, 3, 0, 1]) if cfg.num_classes else None
    eps = torch.randn(cfg.steps, 6, cfg.z_size, dtype=torch.float64)
    for model in (plain, traced):
        model(x, labels, eps=eps).nll_bound.sum().backward()
    gc.collect()  # the graphs are gone, and with them every stash (a kept input copied with its history leaked them)
    assert not [o for o in gc.get_objects() if type(o) is _Stash]
    torch.testing.assert_close(traced(x, labels, eps=eps).nll_bound, plain(x, labels, eps=eps).nll_bound)
    for (name, p), q in zip(plain.named_parameters(), traced.parameters()):
        assert p.grad.abs().max() > 0, name
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-9, atol=1e-12, msg=name)


def test_untrained_read_window_starts_at_the_image_centre():
    model = Draw(tiny_config(height=12, width=16))
    with torch.no_grad():
        model.read_head.linear.weight.zero_()
        model.read_head.linear.bias.zero_()
    trace = model.reconstruct(torch.rand(2, 1, 12, 16).round())
    assert trace.read.gx[0].tolist() == [8.5, 8.5] and trace.read.gy[0].tolist() == [6.5, 6.5]


def test_read_and_write_have_separate_heads():
    cfg = tiny_config()
    model = calm_model(cfg)
    assert model.read_head.linear.weight.data_ptr() != model.write_head.linear.weight.data_ptr()
    gen = model.generate(5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.read_head.linear.bias.add_(1.0)  # generation never reads: nothing may change
    same = model.generate(5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(same.canvases, gen.canvases, rtol=0, atol=0)
    x = (torch.rand(3, 1, 12, 12) < 0.3).float()
    trace = model.reconstruct(x, eps=torch.zeros(cfg.steps, 3, cfg.z_size))
    h0 = model.h_dec0[None]
    torch.testing.assert_close(trace.read.gx[0], model.read_head.window(h0).gx.expand(3))
    assert not torch.allclose(trace.read.gx, trace.write.gx)
    with torch.no_grad():
        model.write_head.linear.bias.add_(0.5)
    moved = model.generate(5, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(moved.canvases, gen.canvases)


def test_write_divides_by_the_write_heads_own_gamma():
    # Decoder states do not depend on the canvas during generation, so doubling the write head's gamma halves every
    # canvas increment exactly; the read head's gamma must have no effect on writing.
    cfg = tiny_config()
    model = calm_model(cfg, dtype=torch.float64)
    c0 = model.canvas0.detach()

    def increments(m):
        canv = m.generate(4, generator=torch.Generator().manual_seed(1)).canvases
        return torch.logit(canv) - c0

    base = increments(model)
    with torch.no_grad():
        model.write_head.linear.bias[4] += math.log(2.0)
    torch.testing.assert_close(increments(model), base / 2, rtol=1e-9, atol=1e-9)
    with torch.no_grad():
        model.write_head.linear.bias[4] -= math.log(2.0)
        model.read_head.linear.bias[4] += math.log(2.0)
    torch.testing.assert_close(increments(model), base, rtol=1e-9, atol=1e-9)


def test_kl_is_zero_when_the_posterior_is_the_prior():
    # The constant is -1/2 per latent dimension per glimpse; a port that subtracts T/2 once per image reports
    # (Z - 1) T / 2 nats of KL here.
    cfg = tiny_config(z_size=7, steps=5)
    model = calm_model(cfg)
    with torch.no_grad():
        model.posterior.weight.zero_()
        model.posterior.bias.zero_()
    out = model((torch.rand(3, 1, 12, 12) < 0.3).float())
    assert out.kl_steps.shape == (3, 5)
    assert out.kl_steps.abs().max().item() == 0.0


def test_analytic_kl_matches_monte_carlo():
    torch.manual_seed(4)
    mu = torch.tensor([[0.5, -1.0, 0.0]], dtype=torch.float64)
    log_sigma = torch.tensor([[-0.3, 0.4, 0.0]], dtype=torch.float64)
    q = torch.distributions.Normal(mu, log_sigma.exp())
    z = q.sample((400_000,))
    p = torch.distributions.Normal(0.0, 1.0)
    samples = (q.log_prob(z) - p.log_prob(z)).sum(-1).squeeze(1)
    se = samples.std() / math.sqrt(len(samples))
    assert abs(samples.mean() - gaussian_kl(mu, log_sigma)[0]) < 4 * se
    # and in the model: the sampled log Q - log p of whole sequences averages to the analytic KL sum
    cfg = tiny_config(steps=3, z_size=4)
    model = calm_model(cfg, seed=5)
    with torch.no_grad():
        model.posterior.weight.mul_(5.0)  # a posterior far from the prior, so the KL is not near 0
    x = (torch.rand(1, 1, 12, 12) < 0.3).float().expand(4000, 1, 12, 12)
    eps = torch.randn(cfg.steps, x.shape[0], cfg.z_size)
    out = model(x, eps=eps)
    sampled = -model.log_weights(x, eps=eps) - out.recon.detach()  # per-sample log Q - log p
    diff = sampled - out.kl.detach()
    assert out.kl.mean() > 1.0
    assert abs(diff.mean()) < 4 * diff.std() / math.sqrt(len(diff))


def test_importance_weighted_bound_tightens_with_k():
    cfg = tiny_config(steps=3, z_size=4)
    model = calm_model(cfg, seed=6)
    with torch.no_grad():
        model.posterior.weight.mul_(3.0)
    torch.manual_seed(7)
    x = (torch.rand(6, 1, 12, 12) < 0.3).float()
    elbo = model(x.repeat(200, 1, 1, 1)).nll_bound.detach().view(200, 6).mean(0)
    k1 = model.iwae_bound(x.repeat(200, 1, 1, 1), k=1).view(200, 6).mean(0)
    k20 = model.iwae_bound(x, k=20)
    k400 = model.iwae_bound(x, k=400)
    torch.testing.assert_close(k1, elbo, rtol=0.02, atol=0)  # K = 1 is the ELBO, sampled
    assert (k20 < elbo).all()
    assert k400.mean() < k20.mean() < elbo.mean() - 0.5


def test_fresh_noise_for_every_latent_and_generation_shapes():
    cfg = tiny_config(steps=6, z_size=50)
    model = calm_model(cfg)
    trace = model.generate(200, generator=torch.Generator().manual_seed(3))
    assert trace.canvases.shape == (6, 200, 1, 12, 12) and trace.images.shape == (200, 1, 12, 12)
    assert trace.write.gx.shape == (6, 200) and trace.read is None
    z = trace.z
    assert not torch.allclose(z[0], z[1]) and not torch.allclose(z[:, 0], z[:, 1])
    corr = torch.corrcoef(z.reshape(6, -1))
    assert (corr - torch.eye(6)).abs().max() < 0.05
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    again = model.generate(200, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(again.canvases, trace.canvases, rtol=0, atol=0)
    final_only = model.generate(3, return_steps=False)
    assert final_only.canvases.shape == (1, 3, 1, 12, 12) and final_only.write is None


def test_class_conditional_model_uses_its_labels():
    cfg = tiny_config(num_classes=10)
    model = calm_model(cfg, seed=8)
    with pytest.raises(ValueError):
        model.generate(2)
    with pytest.raises(ValueError):
        model.generate(2, labels=torch.tensor([3, 10]))
    a = model.generate(4, labels=torch.full((4,), 3), generator=torch.Generator().manual_seed(0))
    b = model.generate(4, labels=torch.full((4,), 7), generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(a.canvases, b.canvases)
    x = (torch.rand(4, 1, 12, 12) < 0.3).float()
    eps = torch.randn(cfg.steps, 4, cfg.z_size)
    la = model(x, torch.full((4,), 3), eps=eps).nll_bound
    lb = model(x, torch.full((4,), 7), eps=eps).nll_bound
    assert not torch.allclose(la, lb)


def test_discretised_logistic_is_a_distribution_over_256_levels():
    levels = torch.arange(256, dtype=torch.float64) / 255
    mean = torch.tensor([0.0, 0.3, 0.97], dtype=torch.float64)
    log_scale = torch.tensor([-3.0, -5.0, -1.0], dtype=torch.float64)
    for c in range(3):
        logp = -torch.stack([discretized_logistic_nll(mean[c].view(1, 1, 1, 1), log_scale[c].view(1, 1, 1, 1),
                                                      levels[i].view(1, 1, 1, 1)) for i in range(256)])
        assert torch.logsumexp(logp.squeeze(1), 0).exp().item() == pytest.approx(1.0, abs=1e-6)


def test_colour_images_with_discretised_logistic_report_bits_per_dim():
    cfg = tiny_config(height=8, width=10, channels=3, likelihood="logistic")
    model = calm_model(cfg)
    x = torch.randint(0, 256, (4, 3, 8, 10)).float() / 255
    out = model(x)
    assert torch.isfinite(out.nll_bound).all()
    torch.testing.assert_close(out.bits_per_dim, out.nll_bound / (3 * 8 * 10 * math.log(2)))
    out.nll_bound.mean().backward()
    assert model.log_scale.grad is not None and model.canvas0.grad.abs().sum() > 0
    trace = model.reconstruct(x)
    assert trace.canvases.shape == (cfg.steps, 4, 3, 8, 10) and trace.read.gx.shape == (cfg.steps, 4)


def test_two_graphs_alive_at_once_keep_separate_gradient_buffers():
    # Gradient accumulation: both forward passes are alive before either backward runs; the reused stash buffers
    # must not be shared between them.
    cfg = tiny_config()
    model = calm_model(cfg, seed=9)
    torch.manual_seed(10)
    xs = [(torch.rand(4, 1, 12, 12) < 0.3).float() for _ in range(2)]
    eps = [torch.randn(cfg.steps, 4, cfg.z_size) for _ in range(2)]
    expect = []
    for x, e in zip(xs, eps):
        model.zero_grad()
        model(x, eps=e).nll_bound.sum().backward()
        expect.append({n: p.grad.clone() for n, p in model.named_parameters()})
    model.zero_grad()
    losses = [model(x, eps=e).nll_bound.sum() for x, e in zip(xs, eps)]
    for loss in losses:
        loss.backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expect[0][n] + expect[1][n], msg=n)


@needs_cpu_bf16
def test_bf16_autocast_runs_the_gemms_in_bf16_and_keeps_the_state_in_fp32():
    # The engine's --train.precision bf16 runs forward under autocast. DRAW then does its GEMMs in bf16 (3-4x faster
    # on a CPU with AVX512-BF16) but keeps LSTM cells, attention and the canvas (a sum of T writes) in fp32.
    cfg = tiny_config(steps=6)
    model = calm_model(cfg, seed=11)
    torch.manual_seed(12)
    x = (torch.rand(8, 1, 12, 12) < 0.3).float()
    eps = torch.randn(cfg.steps, 8, cfg.z_size)

    def run(autocast: bool):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(x, eps=eps)
        out.nll_bound.sum().backward()
        return out, {n: p.grad.clone() for n, p in model.named_parameters()}

    (full, g_full), (half, g_half) = run(False), run(True)
    assert half.recon.dtype == torch.float32 and half.kl_steps.dtype == torch.float32
    assert not torch.equal(half.nll_bound, full.nll_bound)  # the GEMMs did run in bf16 ...
    torch.testing.assert_close(half.nll_bound, full.nll_bound, rtol=5e-3, atol=0.05)  # ... and nothing else did
    for n, g in g_full.items():
        err = ((g_half[n] - g).norm() / g.norm().clamp_min(1e-6)).item()
        assert err < 0.05, (n, err)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        drawn = model.generate(4, generator=torch.Generator().manual_seed(0))
        assert model.reconstruct(x, eps=eps).canvases.dtype == torch.float32
    assert drawn.canvases.dtype == torch.float32  # under plain autocast the write's bmm would make it bf16
    torch.testing.assert_close(drawn.images, model.generate(4, generator=torch.Generator().manual_seed(0)).images,
                               atol=0.02, rtol=0)


def test_the_gemm_rule_takes_onednn_for_fp32_only_on_amd_cpus_with_avx512(monkeypatch):
    from speechdraw.draw import gemm

    monkeypatch.delenv("SPEECHDRAW_GEMM", raising=False)
    if not gemm._usable(torch.float32, torch.device("cpu")):
        pytest.skip("this torch has no oneDNN")
    cases = [("AuthenticAMD", {"avx2", "avx512f", "avx512_bf16"}, torch.float32, "onednn"),
             ("AuthenticAMD", {"avx2", "fma"}, torch.float32, "blas"),  # MKL was 1.21x faster on an AVX2-only EPYC
             ("GenuineIntel", {"avx2", "avx512f"}, torch.float32, "blas"),
             ("AuthenticAMD", {"avx2", "avx512f"}, torch.bfloat16, "blas")]
    for vendor, flags, dtype, expected in cases:
        monkeypatch.setattr(gemm, "cpu_vendor", lambda vendor=vendor: vendor)
        monkeypatch.setattr(gemm, "cpu_flags", lambda flags=flags: frozenset(flags))
        monkeypatch.setattr(gemm, "_CHOICE", {})
        if dtype == torch.bfloat16 and not gemm._usable(dtype, torch.device("cpu")):
            continue
        assert gemm.choose(dtype, torch.device("cpu"), 100, 256, 1024) == expected, (vendor, flags, dtype)


@pytest.mark.parametrize("kernel", ["blas", "onednn"])
def test_gemm_kernels_compute_bias_plus_a_times_w_transposed(kernel, monkeypatch):
    from speechdraw.draw import gemm

    monkeypatch.setenv("SPEECHDRAW_GEMM", kernel)
    if kernel == "onednn" and not gemm._usable(torch.float32, torch.device("cpu")):
        pytest.skip("this torch has no oneDNN")
    assert gemm.choose(torch.float32, torch.device("cpu"), 7, 13, 5) == kernel
    torch.manual_seed(0)
    a, w = torch.randn(7, 13), torch.randn(5, 13)
    bias, per_row = torch.randn(5), torch.randn(7, 5)
    exact = a.double() @ w.double().t()
    torch.testing.assert_close(gemm.linear(a, w).double(), exact, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gemm.linear(a, w, bias).double(), exact + bias.double(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gemm.linear(a, w, per_row).double(), exact + per_row.double(), rtol=1e-5, atol=1e-5)
    # transposed operands (the weight-gradient GEMM reads G^T and X^T views)
    torch.testing.assert_close(gemm.linear(a.t().contiguous().t(), w.t().contiguous().t()).double(), exact,
                               rtol=1e-5, atol=1e-5)
    # bf16 operands, fp32 bias: the result is fp32 and rounds like a bf16 GEMM
    out = gemm.linear(a.bfloat16(), w.bfloat16(), bias)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), exact + bias.double(), rtol=0.05, atol=0.1)


@pytest.mark.parametrize("kernel", ["blas", "onednn"])
def test_each_gemm_kernel_gives_the_reference_loss_and_gradients_in_fp32(kernel, monkeypatch):
    monkeypatch.setenv("SPEECHDRAW_GEMM", kernel)
    cfg = tiny_config(num_classes=3)
    model = calm_model(cfg, seed=4)
    ref = reference_module().ReferenceDraw(cfg)
    ref.load_state_dict(model.state_dict(), strict=True)
    torch.manual_seed(5)
    x = (torch.rand(6, *cfg.image_shape) < 0.3).float()
    eps = torch.randn(cfg.steps, 6, cfg.z_size)
    labels = torch.randint(0, 3, (6,))
    out = model(x, labels, eps=eps)
    recon, kl, _ = ref(x, labels, eps=eps)
    torch.testing.assert_close(out.nll_bound, recon + kl, rtol=1e-5, atol=1e-4)
    out.nll_bound.sum().backward()
    (recon + kl).sum().backward()
    ref_params = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_params[name].grad, rtol=1e-4, atol=1e-5, msg=name)


def test_an_unconditional_state_dict_starts_a_conditional_model_that_ignores_its_label():
    plain = calm_model(tiny_config(), seed=4)
    cond = Draw(tiny_config(num_classes=10))
    widened = cond.label_columns_added(plain.state_dict())
    cond.load_state_dict(widened, strict=True)
    for cell in ("encoder", "decoder"):
        w = getattr(cond, cell).weight_ih
        assert w[:, -10:].abs().max() == 0 and torch.equal(w[:, :-10], getattr(plain, cell).weight_ih)
    x = (torch.rand(3, 1, 12, 12) < 0.3).float()
    eps = torch.randn(plain.cfg.steps, 3, plain.cfg.z_size)
    want = plain(x, eps=eps).nll_bound
    for label in (0, 9):
        torch.testing.assert_close(cond(x, torch.full((3,), label), eps=eps).nll_bound, want)
    same = cond.label_columns_added(cond.state_dict())  # already fits: unchanged
    assert all(torch.equal(same[k], v) for k, v in cond.state_dict().items())
    with pytest.raises(RuntimeError):  # other mismatches are left for load_state_dict to refuse
        Draw(tiny_config(num_classes=10, z_size=7)).load_state_dict(
            Draw(tiny_config(num_classes=10, z_size=7)).label_columns_added(plain.state_dict()), strict=True)


def test_compiled_step_stays_one_graph_per_batch_size_through_validation():
    """Draw.compile_step's blocks compile without a graph break, with gradients and without (validation), one graph
    each; training after a validation at another batch size still runs compiled (a graph break in the no-gradient
    path once sent the block back to eager for the rest of a run: 0.26 -> 0.42 s/step). The compiled losses match
    the eager model's."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    cfg = tiny_config(height=12, width=16)
    eager = calm_model(cfg, seed=3)
    compiled = Draw(cfg)
    compiled.load_state_dict(eager.state_dict())
    compiled.compile_step(glimpses_per_call=1)  # the smallest graph to compile; 4 blocks per pass
    gen = torch.Generator().manual_seed(0)
    train_x, valid_x = ((torch.rand(n, 1, 12, 16, generator=gen) < 0.4).float() for n in (6, 10))
    train_eps, valid_eps = (torch.randn(cfg.steps, n, cfg.z_size, generator=gen) for n in (6, 10))
    for _ in range(2):  # train, validate, train: no new graph the second time round
        for model in (eager, compiled):
            model(train_x, eps=train_eps).nll_bound.mean().backward()
        torch.testing.assert_close(compiled.canvas0.grad, eager.canvas0.grad, rtol=1e-4, atol=1e-6)
        with torch.no_grad():
            torch.testing.assert_close(compiled(valid_x, eps=valid_eps).nll_bound,
                                       eager(valid_x, eps=valid_eps).nll_bound, rtol=1e-4, atol=1e-4)
    assert dict(counters["graph_break"]) == {}
    assert counters["stats"]["unique_graphs"] == 2
