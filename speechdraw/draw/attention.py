"""DRAW's selective attention (Gregor et al. 2015, section 3): Gaussian filterbanks, read and write.

An N x N grid of Gaussian filters is laid over a B x A image (B rows, A columns; the paper's notation, here `height` x
`width`). Five numbers emitted by a linear map of the decoder state place it:

    (g~X, g~Y, log sigma^2, log delta~, log gamma) = W(h_dec)
    gX = (A + 1) / 2 * (g~X + 1)            gY = (B + 1) / 2 * (g~Y + 1)
    delta = (max(A, B) - 1) / (N - 1) * delta~
    mu_X^i = gX + (i - N/2 - 0.5) * delta   mu_Y^j = gY + (j - N/2 - 0.5) * delta      i, j = 1..N
    F_X[i, a] = exp(-(a - mu_X^i)^2 / (2 sigma^2)) / Z_X    a = 1..A (rows sum to 1); F_Y likewise over b = 1..B

    read(x, x^)  = gamma * [F_Y x F_X^T, F_Y x^ F_X^T]       (2 x N x N per channel)
    write(w)     = 1 / gamma * F_Y^T w F_X                   (B x A per channel)

Pixel coordinates a, b run from 1, as in the paper, so that g~ = 0 (an untrained head) puts the grid centre exactly on
the image centre (A + 1) / 2; a 0-indexed port is half a pixel off and its windows drift. Each row's exponents are
shifted so the largest is 0 before exp (as a softmax is): the same normalised filter, but it cannot underflow to 0 / 0
when sigma is tiny or the window lies far outside the image, so no epsilon is needed. Colour images share one
filterbank across channels. read() and write() take the raw head outputs and build their filterbanks inside one
autograd node with a hand-derived backward; filterbanks() exposes the same computation on its own.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NUM_PARAMS = 5  # (g~X, g~Y, log sigma^2, log delta~, log gamma)


class Window(NamedTuple):
    """Where an N x N filter grid sits, in 1-indexed pixel coordinates. Every field has the same shape (...,)."""

    gx: Tensor  # grid centre, column coordinate in [1, A] when inside the image
    gy: Tensor  # grid centre, row coordinate in [1, B]
    delta: Tensor  # stride between neighbouring filters, in pixels
    sigma2: Tensor  # variance of every filter, in pixels^2
    gamma: Tensor  # intensity: multiplies a read, divides a write

    def box(self, n: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(x_lo, y_lo, x_hi, y_hi), 1-indexed: the square an N x N grid covers, N strides wide (half a stride beyond
        the outermost filter means mu^1 and mu^N), centred on (gX, gY)."""
        half = n / 2 * self.delta
        return self.gx - half, self.gy - half, self.gx + half, self.gy + half

    def detach(self) -> Window:
        return Window(*(t.detach() for t in self))


def stride_scale(n: int, height: int, width: int) -> float:
    """(max(A, B) - 1) / (N - 1): with delta~ = 1 the grid spans the whole image. N = 1 has no stride to scale."""
    return float(max(height, width) - 1) / max(n - 1, 1)


def window_from_params(params: Tensor, n: int, height: int, width: int) -> Window:
    """Decode the five raw head outputs (..., 5) into a Window for an N x N grid on a height x width image."""
    gx_, gy_, log_sigma2, log_delta, log_gamma = params.unbind(-1)
    return Window(
        gx=(width + 1) / 2 * (gx_ + 1),
        gy=(height + 1) / 2 * (gy_ + 1),
        delta=stride_scale(n, height, width) * torch.exp(log_delta),
        sigma2=torch.exp(log_sigma2),
        gamma=torch.exp(log_gamma),
    )


def filter_offsets(n: int, device=None, dtype=None) -> Tensor:
    """(N,) the factors (i - N/2 - 0.5) for i = 1..N: filter i's mean is g + offset_i * delta."""
    return torch.arange(1, n + 1, device=device, dtype=dtype) - (n / 2 + 0.5)


# Filter weights below e^-40 (4e-18) of their row's largest are set to exactly 0. In fp32 they cannot change a sum
# that holds the largest weight, but left in they become denormal numbers in the products downstream, and every
# arithmetic instruction on a denormal takes a CPU microcode assist: 20-30% of a training step, measured.
_LOG_FLOOR = -40.0
_FLOOR = 5e-18  # just above e^-40, so clamped logits come out as exact zeros


def _constants(n: int, height: int, width: int, device: torch.device, dtype: torch.dtype):
    """_make_constants, cached per shape in eager mode. Under torch.compile they are built inside the graph instead
    (and folded into it): dynamo does not trace through an lru_cache, and warns on every compiled run if asked to."""
    make = _make_constants if torch.compiler.is_compiling() else _cached_constants
    return make(n, height, width, device, dtype)


def _make_constants(n: int, height: int, width: int, device: torch.device, dtype: torch.dtype):
    """Per-shape constants: centre scales (2,), scaled filter offsets (N,), pixel coordinates (2, 1, S), mask or None,
    last pixel per axis (2, 1).

    Both axes share one (B, 2, N, S) tensor, S = max(A, B); on a non-square image the shorter axis's extra columns
    are masked to zero weight."""
    size = max(height, width)
    centre_scale = torch.tensor([(width + 1) / 2, (height + 1) / 2], device=device, dtype=dtype)
    offsets = filter_offsets(n, device, dtype) * stride_scale(n, height, width)
    coords = torch.arange(1, size + 1, device=device, dtype=dtype).expand(2, 1, size).contiguous()
    mask = None
    if height != width:
        # The shorter axis repeats its last coordinate (so its row maximum is a real pixel's) and is masked to 0.
        mask = torch.zeros(2, 1, size, device=device, dtype=dtype)
        for axis, length in enumerate((width, height)):
            coords[axis, :, length:] = length
            mask[axis, :, :length] = 1
    last = torch.tensor([[width], [height]], device=device, dtype=dtype)  # (2, 1) each axis's last pixel
    return centre_scale, offsets, coords, mask, last


_cached_constants = functools.lru_cache(maxsize=64)(_make_constants)


class _Bank(NamedTuple):
    """One batch of filterbanks and what their backward needs."""

    f: Tensor  # (B, 2, N, S) X filters then Y filters, rows summing to 1 over the image's pixels
    d: Tensor  # (B, 2, N, S) a - mu
    k: Tensor  # (B,) -1 / (2 sigma^2)
    e: Tensor  # (B, 3) sigma^2, delta~, gamma
    height: int
    width: int

    @property
    def fx(self) -> Tensor:  # (B, N, A)
        return self.f[:, 0, :, : self.width]

    @property
    def fy(self) -> Tensor:  # (B, N, B)
        return self.f[:, 1, :, : self.height]

    @property
    def gamma(self) -> Tensor:  # (B,)
        return self.e[:, 2]


def _bank_forward(params: Tensor, n: int, height: int, width: int) -> _Bank:
    """(B, 5) raw head outputs -> filterbanks, computed without autograd (the Functions below own the backward)."""
    b = params.shape[0]
    centre_scale, offsets, coords, mask, last = _constants(n, height, width, params.device, params.dtype)
    g = (params[:, :2] + 1) * centre_scale  # (B, 2) grid centre (gX, gY), 1-indexed
    e = params[:, 2:].exp()  # (B, 3) sigma^2, delta~, gamma
    mu = torch.addcmul(g[:, :, None], offsets, e[:, 1, None, None])  # (B, 2, N) filter means
    d = coords - mu[..., None]  # (B, 2, N, S) a - mu
    k = -0.5 / e[:, 0]  # (B,)
    # Shift each row so its largest logit is 0 (exp cannot underflow the whole row): the largest is at the pixel
    # nearest mu, known without a reduction over pixels.
    nearest = torch.minimum(mu.round().clamp_min_(1), last)  # (B, 2, N)
    f = torch.mul(d, d).sub_((nearest - mu).square_()[..., None]).mul_(k.view(b, 1, 1, 1))
    f.clamp_min_(_LOG_FLOOR).exp_()
    F.threshold(f, _FLOOR, 0.0, inplace=True)
    if mask is not None:
        f.mul_(mask)
    f.div_(f.sum(-1, keepdim=True))
    return _Bank(f, d, k, e, height, width)


def _bank_backward(bank: _Bank, dfx: Tensor, dfy: Tensor, dgamma: Tensor) -> Tensor:
    """Gradients of F_X (B, N, A), F_Y (B, N, B), gamma (B,) -> gradient of the raw params (B, 5)."""
    f, d, k, e, height, width = bank
    b, _, n, size = f.shape
    centre_scale, offsets, _, _, _ = _constants(n, height, width, f.device, f.dtype)
    if height == width:
        df = torch.stack((dfx, dfy), dim=1)
    else:
        df = f.new_zeros(f.shape)
        df[:, 0, :, :width] = dfx
        df[:, 1, :, :height] = dfy
    dl = (df - (df * f).sum(-1, keepdim=True)).mul_(f)  # d loss / d logit: the normalisation's Jacobian
    dk = (dl * d * d).sum((1, 2, 3))  # logit = k d^2
    dmu = (dl * d).sum(-1).mul_(-2 * k.view(b, 1, 1))  # (B, 2, N); d logit / d mu = -2 k d
    dg = dmu.sum(-1)  # (B, 2)
    ddelta_t = (dmu * offsets).sum((1, 2))
    # log-parameterised: d/d log v = v d/dv; k = -1/(2 sigma^2) gives d/d log sigma^2 = -k dk.
    return torch.stack((dg[:, 0] * centre_scale[0], dg[:, 1] * centre_scale[1], -k * dk, ddelta_t * e[:, 1],
                        dgamma * e[:, 2]), dim=1)


class _Filterbanks(torch.autograd.Function):
    @staticmethod
    def forward(ctx, params: Tensor, n: int, height: int, width: int):
        bank = _bank_forward(params, n, height, width)
        ctx.bank = bank
        return bank.fx.contiguous(), bank.fy.contiguous(), bank.gamma.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dfx: Tensor, dfy: Tensor, dgamma: Tensor):
        return _bank_backward(ctx.bank, dfx, dfy, dgamma), None, None, None


def filterbanks(params: Tensor, n: int, height: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """Raw head outputs (B, 5) -> (F_X (B, N, A), F_Y (B, N, B), gamma (B,)): the Gaussian filterbanks, rows summing
    to 1, of window_from_params(params, n, height, width), differentiable in params."""
    return _Filterbanks.apply(params, n, height, width)


# read and write compute their window's filterbanks inside one autograd node each, with hand-derived backward passes:
# composed from torch ops a glimpse's attention is ~80 autograd nodes (and view nodes whose backward zero-fills and
# copies), and at these sizes each op costs more in dispatch than in arithmetic.


class _Read(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, canvas: Tensor, params: Tensor, n: int):
        b, c, h, w = x.shape
        bank = _bank_forward(params, n, h, w)
        fx, fy, gamma = bank.fx, bank.fy, bank.gamma
        s = torch.sigmoid(canvas)
        imgs = torch.cat((x, x - s), dim=1)  # (B, 2C, H, W): x and the error image x^
        cols = torch.bmm(imgs.view(b, 2 * c * h, w), fx.transpose(1, 2))  # (B, 2C H, N): image F_X^T
        cols = cols.view(b, 2 * c, h, n).transpose(1, 2).reshape(b, h, 2 * c * n)  # (B, H, 2C N)
        g = torch.bmm(fy, cols).view(b, n, 2 * c, n).transpose(1, 2).reshape(b, 2 * c * n * n)  # (B, 2C N N)
        ctx.save_for_backward(imgs, cols, g, s)
        ctx.bank = bank
        return g * gamma[:, None]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout: Tensor):
        imgs, cols, g, s = ctx.saved_tensors
        bank = ctx.bank
        fx, fy, gamma = bank.fx, bank.fy, bank.gamma
        b, c2, h, w = imgs.shape
        n = fx.shape[1]
        dgamma = (dout * g).sum(1)
        dg = (dout * gamma[:, None]).view(b, c2, n, n).transpose(1, 2).reshape(b, n, c2 * n)  # (B, N, 2C N)
        dfy = torch.bmm(dg, cols.transpose(1, 2))  # (B, N, H)
        dcols = torch.bmm(fy.transpose(1, 2), dg).view(b, h, c2, n).transpose(1, 2).reshape(b, c2 * h, n)
        dfx = torch.bmm(dcols.transpose(1, 2), imgs.view(b, c2 * h, w))  # (B, N, W)
        dcanvas = None
        if ctx.needs_input_grad[1]:
            half = c2 // 2 * h  # rows of x^ in the (2C H) stack
            dx_hat = torch.bmm(dcols[:, half:], fx).view(b, c2 // 2, h, w)
            dcanvas = dx_hat.mul_(s * s - s)  # x^ = x - sigmoid(c): d x^ / dc = -s (1 - s)
        dparams = _bank_backward(bank, dfx, dfy, dgamma) if ctx.needs_input_grad[2] else None
        return None, dcanvas, dparams, None


def read(x: Tensor, canvas: Tensor, params: Tensor, n: int) -> Tensor:
    """gamma * [F_Y x F_X^T, F_Y x^ F_X^T] with x^ = x - sigmoid(canvas), through the N x N window of the raw head
    outputs params (B, 5): (B, C, H, W) image and canvas logits c_{t-1} -> (B, 2*C*N*N).

    The order of the output is (image/error, channel, row, column), which the encoder's input weights are laid out for.
    Differentiable in the canvas and the params (not in x: the data).
    """
    return _Read.apply(x, canvas, params, n)


class _Write(torch.autograd.Function):
    @staticmethod
    def forward(ctx, canvas: Tensor, patch: Tensor, params: Tensor):
        b, c, n, _ = patch.shape
        h, w = canvas.shape[2], canvas.shape[3]
        bank = _bank_forward(params, n, h, w)
        fx, fy, gamma = bank.fx, bank.fy, bank.gamma
        wp = patch / gamma.view(b, 1, 1, 1)  # divide the N x N patch, not the H x W result: same value, fewer flops
        rows = torch.bmm(wp.view(b, c * n, n), fx)  # (B, C N, W): w F_X
        ctx.save_for_backward(wp)
        ctx.bank = bank
        if c == 1:
            ctx.rows_t = rows
            return torch.baddbmm(canvas.reshape(b, h, w), fy.transpose(1, 2), rows).view(b, 1, h, w)
        rows_t = rows.view(b, c, n, w).transpose(1, 2).reshape(b, n, c * w)  # (B, N, C W)
        ctx.rows_t = rows_t
        out = torch.bmm(fy.transpose(1, 2), rows_t)  # (B, H, C W): F_Y^T w F_X
        return canvas + out.view(b, h, c, w).transpose(1, 2)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout: Tensor):
        (wp,) = ctx.saved_tensors
        bank, rows_t = ctx.bank, ctx.rows_t
        fx, fy, gamma = bank.fx, bank.fy, bank.gamma
        b, c, n, _ = wp.shape
        h, w = fy.shape[2], fx.shape[2]
        dout_t = dout.transpose(1, 2).reshape(b, h, c * w)  # (B, H, C W)
        drows_t = torch.bmm(fy, dout_t)  # (B, N, C W)
        dfy = torch.bmm(rows_t, dout_t.transpose(1, 2))  # (B, N, H)
        drows = drows_t.view(b, n, c, w).transpose(1, 2).reshape(b, c * n, w)  # (B, C N, W)
        dwp = torch.bmm(drows, fx.transpose(1, 2)).view(b, c, n, n)
        dfx = torch.bmm(wp.view(b, c * n, n).transpose(1, 2), drows)  # (B, N, W)
        dpatch = dwp / gamma.view(b, 1, 1, 1)
        dgamma = -(dwp * wp).sum((1, 2, 3)) / gamma  # d(patch / gamma) / d gamma = -wp / gamma
        return dout, dpatch, _bank_backward(bank, dfx, dfy, dgamma)


def write(canvas: Tensor, patch: Tensor, params: Tensor) -> Tensor:
    """c + 1 / gamma * F_Y^T w F_X: canvas logits (B, C, H, W) plus the (B, C, N, N) patch w drawn through the N x N
    window of the raw head outputs params (B, 5), with that window's own gamma."""
    return _Write.apply(canvas, patch, params)


def read_no_attention(x: Tensor, canvas: Tensor) -> Tensor:
    """The attention-free read [x, x^], x^ = x - sigmoid(canvas): (B, C, H, W) x 2 -> (B, 2*C*H*W)."""
    return torch.cat((x.flatten(1), (x - torch.sigmoid(canvas)).flatten(1)), dim=1)


def write_no_attention(h_dec: Tensor, layer: nn.Linear, shape: tuple[int, int, int]) -> Tensor:
    """The attention-free write: a linear map of the decoder state onto every pixel, (B, H_dec) -> (B, C, H, W)."""
    return layer(h_dec).view(-1, *shape)


class AttentionHead(nn.Module):
    """The linear map from a decoder state to one window's five parameters. Read and write each own one (a port that
    shares a single head ties where the model looks to where it draws, which the paper does not). `role` ("read" or
    "write") sets the untrained window's gain gamma, see reset_window_bias."""

    def __init__(self, hidden_size: int, n: int, height: int, width: int, role: str = "read"):
        super().__init__()
        if role not in ("read", "write"):
            raise ValueError(f"AttentionHead role must be 'read' or 'write', got {role!r}")
        self.n, self.height, self.width, self.role = n, height, width, role
        self.linear = nn.Linear(hidden_size, NUM_PARAMS)
        self.reset_window_bias()

    @torch.no_grad()
    def reset_window_bias(self) -> None:
        """Start the untrained window centred, its N filters tiling the image (stride max(A, B) / N, sigma = stride / 2)
        and at unit gain: gamma = 1 / p for a read and p for a write, p the peak weight F_Y[j, b] F_X[i, a] of one
        filter. The paper leaves initialisation open; both choices are measured, on the paper preset.

        Tiling: with the raw outputs at 0 (delta~ = 1, sigma = 1 px) the outermost filters sit on the border pixels,
        and for the paper's 2 x 2 read that is all of them: on MNIST they read blank border, no gradient reaches the
        window and the posterior collapses (KL 0.00, the independent-pixel bound of 206 nats after 1,000 steps).

        Gain: rows summing to 1 make a read an average and a write a spread. At gamma = 1 a 2 x 2 read (sigma 7 px)
        is a blurred mean over ~300 pixels that differs little between digits, and a unit patch value of a 5 x 5 write
        (sigma 2.8 px) adds 0.02 to a canvas logit: the z -> canvas path is ~50x weaker than the attention-free
        model's, the KL wins and the bound stalls at 190-200 nats for 300 steps. At unit gain a one-pixel dot under
        a read filter's centre reads 1 and a unit patch value adds 1 under a write filter's centre, as one input and
        one output of the attention-free read and write do. Gamma stays learned."""
        size = max(self.height, self.width)
        delta = size / self.n
        bias = self.linear.bias
        bias.zero_()
        bias[2] = math.log((delta / 2) ** 2)  # log sigma^2
        bias[3] = math.log(delta / stride_scale(self.n, self.height, self.width))  # log delta~
        fx, fy, _ = filterbanks(bias[None].double(), self.n, self.height, self.width)
        log_peak = float(fx.max().log() + fy.max().log())
        bias[4] = -log_peak if self.role == "read" else log_peak  # log gamma

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, hidden) -> (F_X (B, N, A), F_Y (B, N, B), gamma (B,))."""
        return filterbanks(self.linear(h), self.n, self.height, self.width)

    def window(self, h: Tensor) -> Window:
        """(B, hidden) -> where the grid sits, Window of (B,) tensors."""
        return window_from_params(self.linear(h), self.n, self.height, self.width)


__all__ = [
    "NUM_PARAMS",
    "AttentionHead",
    "Window",
    "filter_offsets",
    "filterbanks",
    "read",
    "read_no_attention",
    "stride_scale",
    "window_from_params",
    "write",
    "write_no_attention",
]
