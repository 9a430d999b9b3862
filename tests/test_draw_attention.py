"""Gaussian-filter attention: the filterbank formula, the paper's coordinate conventions, read/write identities, and
the hand-written backward passes against autograd."""

from __future__ import annotations

import math

import pytest
import torch

from speechdraw.draw import attention as A


def naive_filterbanks(params: torch.Tensor, n: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's formulas evaluated pixel by pixel in float64 Python loops."""
    out_x = torch.zeros(params.shape[0], n, width, dtype=torch.float64)
    out_y = torch.zeros(params.shape[0], n, height, dtype=torch.float64)
    for b, (gx_, gy_, log_s2, log_d, _) in enumerate(params.double().tolist()):
        gx = (width + 1) / 2 * (gx_ + 1)
        gy = (height + 1) / 2 * (gy_ + 1)
        delta = (max(width, height) - 1) / (n - 1) * math.exp(log_d)
        s2 = math.exp(log_s2)
        for i in range(1, n + 1):
            mu_x = gx + (i - n / 2 - 0.5) * delta
            mu_y = gy + (i - n / 2 - 0.5) * delta
            wx = [math.exp(-((a - mu_x) ** 2) / (2 * s2)) for a in range(1, width + 1)]
            wy = [math.exp(-((b_ - mu_y) ** 2) / (2 * s2)) for b_ in range(1, height + 1)]
            out_x[b, i - 1] = torch.tensor(wx) / sum(wx)
            out_y[b, i - 1] = torch.tensor(wy) / sum(wy)
    return out_x, out_y


@pytest.mark.parametrize("height,width,n", [(28, 28, 3), (20, 28, 5), (28, 17, 2)])
def test_filterbanks_match_naive_per_pixel_formula(height, width, n):
    torch.manual_seed(0)
    params = torch.randn(6, 5) * torch.tensor([0.5, 0.5, 0.5, 0.3, 0.5]) + torch.tensor([0, 0, 0.5, -0.5, 0])
    fx, fy, gamma = A.filterbanks(params, n, height, width)
    nx, ny = naive_filterbanks(params, n, height, width)
    assert fx.shape == (6, n, width) and fy.shape == (6, n, height)
    torch.testing.assert_close(fx.double(), nx, atol=2e-6, rtol=1e-4)
    torch.testing.assert_close(fy.double(), ny, atol=2e-6, rtol=1e-4)
    torch.testing.assert_close(gamma, params[:, 4].exp())


def test_exponent_divides_by_two_sigma_squared():
    # One filter (N = 1) centred exactly on pixel 10 with sigma^2 = 1: the neighbour's weight is e^{-1/2} of the
    # centre's. A port that writes -(a - mu)^2 / sigma^2 gets e^{-1}.
    gx_ = 2 * 10 / 29 - 1
    params = torch.tensor([[gx_, gx_, 0.0, 0.0, 0.0]], dtype=torch.float64)
    fx, _, _ = A.filterbanks(params, 1, 28, 28)
    assert fx[0, 0].argmax() == 9  # 0-based index of pixel 10
    assert fx[0, 0, 10] / fx[0, 0, 9] == pytest.approx(math.exp(-0.5), rel=1e-9)
    assert fx[0, 0, 11] / fx[0, 0, 9] == pytest.approx(math.exp(-2.0), rel=1e-9)


def test_untrained_window_is_centred_with_one_indexed_pixels():
    # g~ = 0 must put the grid centre at (A + 1) / 2 in 1-indexed pixels, i.e. exactly between the two middle pixels
    # of a 28-wide image: the filterbank is mirror-symmetric and a mirrored image gives the mirrored glimpse.
    # A 0-indexed port puts the centre half a pixel left and breaks both.
    params = torch.zeros(1, 5, dtype=torch.float64)
    win = A.window_from_params(params, 3, 28, 28)
    assert win.gx.item() == 14.5 and win.gy.item() == 14.5
    fx, fy, _ = A.filterbanks(params, 3, 28, 28)
    torch.testing.assert_close(fx[0], fx[0].flip(0).flip(1), rtol=0, atol=1e-12)
    assert fx[0, 1, 13] == pytest.approx(fx[0, 1, 14].item(), rel=1e-12)  # middle filter: pixels 14 and 15 tie
    torch.manual_seed(0)
    x = torch.rand(1, 1, 28, 28, dtype=torch.float64)
    canvas = torch.zeros_like(x)
    window = torch.tensor([[0, 0, 0.3, -0.5, 0]], dtype=torch.float64)
    r = A.read(x, canvas, window, 3).view(2, 3, 3)
    r_flip = A.read(x.flip(3), canvas, window, 3).view(2, 3, 3)
    torch.testing.assert_close(r_flip, r.flip(2))


def test_rows_sum_to_one_even_far_outside_with_tiny_sigma():
    # A straightforward exp / (sum + eps) underflows to an all-zero row here; the paper's normalised filter is the
    # limit: all weight on the nearest pixel.
    params = torch.tensor([[6.0, -7.0, -8.0, 0.0, 0.0], [0.0, 0.0, -12.0, -3.0, 0.0]])
    fx, fy, _ = A.filterbanks(params, 4, 28, 28)
    assert torch.isfinite(fx).all() and torch.isfinite(fy).all()
    torch.testing.assert_close(fx.sum(-1), torch.ones(2, 4))
    torch.testing.assert_close(fy.sum(-1), torch.ones(2, 4))
    assert (fx[0].argmax(-1) == 27).all() and (fy[0].argmax(-1) == 0).all()
    assert (fx[0, :, 27] > 0.999).all()


def test_full_window_with_tiny_sigma_reads_the_image_back_and_writes_it_back():
    # N = image size, delta = 1 (delta~ = 1 since (max - 1) / (N - 1) = 1), centred, sigma^2 = 1e-4, gamma = 1:
    # the filters are one-hot on pixels 1..28, so read returns x and x - sigmoid(c), and write returns the patch.
    torch.manual_seed(1)
    x = torch.rand(3, 1, 28, 28)
    canvas = torch.randn(3, 1, 28, 28)
    params = torch.tensor([[0.0, 0.0, math.log(1e-4), 0.0, 0.0]]).expand(3, 5)
    r = A.read(x, canvas, params, 28).view(3, 2, 28, 28)
    torch.testing.assert_close(r[:, 0], x[:, 0], rtol=0, atol=1e-6)
    torch.testing.assert_close(r[:, 1], (x - torch.sigmoid(canvas))[:, 0], rtol=0, atol=1e-6)
    torch.testing.assert_close(A.write(canvas, x, params), canvas + x, rtol=0, atol=1e-6)


def test_read_scales_by_gamma_and_write_divides_by_gamma():
    torch.manual_seed(2)
    x, canvas = torch.rand(2, 1, 10, 10), torch.randn(2, 1, 10, 10)
    patch = torch.randn(2, 1, 3, 3)
    base = torch.tensor([[0.1, -0.2, 0.0, -0.5, 0.0]] * 2)
    doubled = base.clone()
    doubled[:, 4] = math.log(2.0)
    torch.testing.assert_close(A.read(x, canvas, doubled, 3), 2 * A.read(x, canvas, base, 3))
    torch.testing.assert_close(A.write(canvas, patch, doubled) - canvas, 0.5 * (A.write(canvas, patch, base) - canvas))


def test_read_and_write_match_matrix_products_per_channel():
    torch.manual_seed(3)
    b, c, h, w, n = 3, 3, 7, 9, 4
    x, canvas = torch.rand(b, c, h, w), torch.randn(b, c, h, w)
    params = torch.randn(b, 5) * 0.3
    fx, fy, gamma = A.filterbanks(params, n, h, w)
    x_hat = x - torch.sigmoid(canvas)
    expect = torch.cat([(fy[:, None] @ img @ fx.transpose(1, 2)[:, None]).flatten(1) for img in (x, x_hat)], 1)
    torch.testing.assert_close(A.read(x, canvas, params, n), expect * gamma[:, None])
    patch = torch.randn(b, c, n, n)
    expect_w = fy.transpose(1, 2)[:, None] @ patch @ fx[:, None] / gamma[:, None, None, None]
    torch.testing.assert_close(A.write(canvas, patch, params), canvas + expect_w)


def test_hand_written_backward_passes_match_numerical_gradients():
    torch.manual_seed(4)
    b, c, h, w, n = 2, 2, 5, 6, 3
    params = (torch.randn(b, 5, dtype=torch.float64) * 0.3).requires_grad_()
    x = torch.rand(b, c, h, w, dtype=torch.float64)
    canvas = torch.randn(b, c, h, w, dtype=torch.float64, requires_grad=True)
    patch = torch.randn(b, c, n, n, dtype=torch.float64, requires_grad=True)

    def bank(p):
        return A.filterbanks(p, n, h, w)

    def read(p, cv):
        return A.read(x, cv, p, n)

    def write(p, pt, cv):
        return A.write(cv, pt, p)

    assert torch.autograd.gradcheck(bank, (params,))
    assert torch.autograd.gradcheck(read, (params, canvas))
    assert torch.autograd.gradcheck(write, (params, patch, canvas))
    square = (torch.randn(b, 5, dtype=torch.float64) * 0.3).requires_grad_()  # the square-image path too
    x_sq = torch.rand(b, c, 6, 6, dtype=torch.float64)
    c_sq = torch.randn(b, c, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, cv: A.read(x_sq, cv, p, n), (square, c_sq))
    assert torch.autograd.gradcheck(lambda p, pt, cv: A.write(cv, pt, p), (square, patch, c_sq))
    one = torch.randn(b, 1, n, n, dtype=torch.float64, requires_grad=True)  # single channel: the baddbmm path
    c_one = torch.randn(b, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, pt, cv: A.write(cv, pt, p), (square, one, c_one))


def test_attention_free_read_and_write():
    torch.manual_seed(5)
    x, canvas = torch.rand(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    r = A.read_no_attention(x, canvas)
    torch.testing.assert_close(r, torch.cat([x.flatten(1), (x - torch.sigmoid(canvas)).flatten(1)], 1))
    layer = torch.nn.Linear(5, 16)
    h = torch.randn(2, 5)
    torch.testing.assert_close(A.write_no_attention(h, layer, (1, 4, 4)), layer(h).view(2, 1, 4, 4))


def test_attention_head_maps_a_state_to_its_own_window():
    head = A.AttentionHead(8, n=3, height=10, width=12)
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, math.log(3.0)]))
    win = head.window(torch.randn(4, 8))
    assert win.gx.tolist() == [6.5] * 4 and win.gy.tolist() == [5.5] * 4
    torch.testing.assert_close(win.delta, torch.full((4,), 11 / 2))
    fx, fy, gamma = head(torch.randn(4, 8))
    assert fx.shape == (4, 3, 12) and fy.shape == (4, 3, 10)
    torch.testing.assert_close(gamma, torch.full((4,), 3.0))


@pytest.mark.parametrize("n", [2, 5])
def test_untrained_heads_tile_the_image_at_unit_gain(n):
    # An untrained window must see the whole image (at delta~ = 1, sigma = 1 px the paper's 2 x 2 read sat on the four
    # corner pixels of MNIST: blank, no gradient, posterior collapse) and pass signal at the attention-free model's
    # scale: a one-pixel dot under a read filter's centre reads 1, a unit patch value adds 1 under a write filter's
    # centre. At gamma = 1 the spread 5 x 5 write added 0.02 per unit and the paper preset stalled near 200 nats.
    size = 28
    read_head, write_head = (A.AttentionHead(16, n, size, size, role) for role in ("read", "write"))
    h = torch.zeros(1, 16)
    win = read_head.window(h)
    lo_x, lo_y, hi_x, hi_y = win.box(n)  # the grid spans the image
    assert lo_x.item() == pytest.approx(0.5, abs=1e-4) and hi_x.item() == pytest.approx(size + 0.5, abs=1e-4)
    assert lo_y.item() == pytest.approx(0.5, abs=1e-4) and hi_y.item() == pytest.approx(size + 0.5, abs=1e-4)
    assert win.sigma2.item() == pytest.approx((size / n / 2) ** 2)
    fx, fy, _ = read_head(h)
    col, row = int(fx[0, 0].argmax()), int(fy[0, 0].argmax())  # pixel under the first filter's centre
    dot = torch.zeros(1, 1, size, size)
    dot[0, 0, row, col] = 1.0
    r = A.read(dot, torch.full_like(dot, -50.0), read_head.linear(h), n).view(2, n, n)
    assert r[0, 0, 0].item() == pytest.approx(1.0, rel=1e-5)  # the x glimpse; x^ = x - sigmoid(-50) reads the same
    assert r[0].max().item() == pytest.approx(1.0, rel=1e-5)
    patch = torch.zeros(1, 1, n, n)
    patch[0, 0, 0, 0] = 1.0
    out = A.write(torch.zeros(1, 1, size, size), patch, write_head.linear(h))
    assert out.max().item() == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError, match="role"):
        A.AttentionHead(16, n, size, size, "look")
