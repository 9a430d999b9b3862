"""DRAW: a recurrent variational auto-encoder that builds an image glimpse by glimpse (Gregor et al. 2015).

For t = 1..T (paper, eqs. 3-8):

    x^_t   = x - sigmoid(c_{t-1})                          error image
    r_t    = read(x, x^_t, h_dec_{t-1})                    attention.read, or [x, x^_t] without attention
    h_enc_t = LSTM_enc(h_enc_{t-1}, [r_t, h_dec_{t-1}])
    z_t    ~ Q(z_t | h_enc_t) = N(mu_t, sigma_t)           mu_t, log sigma_t = W(h_enc_t); z_t = mu_t + sigma_t eps_t
    h_dec_t = LSTM_dec(h_dec_{t-1}, z_t)
    c_t    = c_{t-1} + write(h_dec_t)

and the image is drawn from D(x | sigmoid(c_T)). The loss, in nats per image, is the reconstruction negative
log-likelihood plus sum_t KL(Q(z_t | h_enc_t) || N(0, I)) = sum_t 1/2 sum_d (mu^2 + sigma^2 - log sigma^2 - 1); its
mean over the test set is the "NLL bound" the paper reports. c_0, h_enc_0, h_dec_0 (and the LSTM cell states) are
learned biases (section 2.1). With `num_classes` > 0 a one-hot label joins the encoder and decoder inputs.

Parameters live in ordinary nn.LSTMCell / nn.Linear modules, so the state dict reads like the equations and a
straightforward implementation can load it unchanged. The forward pass computes exactly those equations, arranged for a
CPU, where a glimpse's many small ops cost more in dispatch and autograd bookkeeping than in arithmetic:
- once per batch, weights that share an input are concatenated (encoder input and recurrent weights; the write head,
  write patch and next read head, which all read h_dec_t), so a glimpse costs one GEMM per LSTM plus one for all
  decoder heads; inputs constant over the glimpses (the label; x itself without attention) become a per-image bias;
- an LSTM step, a read and a write are one autograd node each, with hand-derived backward passes (attention.py);
- each weight's gradient is one large GEMM over all T glimpses at the end of backward (SharedLinear), instead of T
  skinny ones accumulated one by one.
- every GEMM outside autograd runs on the kernel (MKL or oneDNN) gemm.py measured fastest for its shape on this CPU
  (on AMD CPUs with AVX-512, MKL's fp32 path is AVX2-only and oneDNN's is 2-4x faster);
- under autocast (the engine's --train.precision bf16) only the GEMM operands go to bf16 (3-4x faster GEMMs on a CPU
  with AVX512-BF16); LSTM cell states, attention and the canvas, a sum of T writes, stay fp32 (see _precision).
tests/test_draw_model.py checks values and gradients against the straightforward version in bench/draw_speed.py.
"""

from __future__ import annotations

import contextlib
import functools
import math
import weakref
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechdraw.draw import attention, gemm
from speechdraw.draw.attention import AttentionHead, Window

LIKELIHOODS = ("bernoulli", "logistic")
LOG_2PI = math.log(2 * math.pi)


@dataclass
class DrawConfig:
    height: int = 28  # image rows, B in the paper
    width: int = 28  # image columns, A in the paper
    channels: int = 1  # 1 for MNIST, 3 for SVHN / CIFAR-10
    steps: int = 64  # T, number of glimpses
    enc_size: int = 256  # encoder LSTM units
    dec_size: int = 256  # decoder LSTM units
    z_size: int = 100  # latent dimensions per glimpse
    attention: bool = True  # Gaussian read/write windows; False reads the whole image and writes every pixel
    read_n: int = 2  # read grid is read_n x read_n (paper MNIST: 2)
    write_n: int = 5  # write grid is write_n x write_n (paper MNIST: 5)
    likelihood: str = "bernoulli"  # "bernoulli" for binary images, "logistic" (discretised, 8-bit) for colour
    num_classes: int = 0  # > 0: class-conditional, a one-hot label feeds encoder and decoder

    def __post_init__(self):
        for name in ("height", "width", "channels", "steps", "enc_size", "dec_size", "z_size", "read_n", "write_n"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DrawConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"DrawConfig.likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if self.num_classes < 0:
            raise ValueError(f"DrawConfig.num_classes must be >= 0, got {self.num_classes}")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    @property
    def num_dims(self) -> int:
        return self.channels * self.height * self.width

    @property
    def read_size(self) -> int:
        """Length of r_t: x and x^ glimpses, every channel."""
        per_image = self.read_n**2 if self.attention else self.height * self.width
        return 2 * self.channels * per_image

    @property
    def patch_size(self) -> int:
        """Length of the write patch w_t: an N x N patch per channel, or every pixel without attention."""
        return self.channels * (self.write_n**2 if self.attention else self.height * self.width)


class DrawLoss(NamedTuple):
    """Per-image loss terms, all fp32 nats. nll_bound.mean() is the training objective and the paper's figure."""

    recon: Tensor  # (B,) -log D(x | sigmoid(c_T)), summed over pixels
    kl: Tensor  # (B,) sum_t KL(Q(z_t) || N(0, I))
    kl_steps: Tensor  # (B, T) the KL of each glimpse's latent
    dims: int  # pixels x channels, to convert to bits/dim

    @property
    def nll_bound(self) -> Tensor:
        return self.recon + self.kl

    @property
    def bits_per_dim(self) -> Tensor:
        return self.nll_bound / (self.dims * math.log(2))


@dataclass
class DrawTrace:
    """What happened glimpse by glimpse, for pictures. Window fields are (T, B); None where there is no such window."""

    canvases: Tensor  # (T, B, C, H, W) sigmoid(c_t): the image the model would emit after glimpse t
    write: Window | None  # write windows, None without attention
    read: Window | None  # read windows (reconstruction only), None without attention
    z: Tensor  # (T, B, Z) the latents used
    loss: DrawLoss | None = None  # reconstruction only

    @property
    def images(self) -> Tensor:
        """(B, C, H, W) the final output mean."""
        return self.canvases[-1]


def gaussian_kl(mu: Tensor, log_sigma: Tensor) -> Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) summed over the last dim: 1/2 sum (mu^2 + sigma^2 - log sigma^2 - 1).

    The -1 is per latent dimension (and per glimpse): a port that subtracts T/2 once per image is off by (Z-1) T / 2.
    """
    return 0.5 * (mu.square() + torch.exp(2 * log_sigma) - 2 * log_sigma - 1).sum(-1)


def bernoulli_nll(logits: Tensor, x: Tensor) -> Tensor:
    """-log Bernoulli(x | sigmoid(logits)) summed per image: (B, C, H, W) x 2 -> (B,). Works on the logits for
    stability: sigmoid then log underflows where the canvas saturates."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def discretized_logistic_nll(mean: Tensor, log_scale: Tensor, x: Tensor, bins: int = 256) -> Tensor:
    """-log P(x) for x on the 8-bit grid {0, 1/255, ..., 1} under a logistic(mean, exp(log_scale)) discretised into
    `bins` bins, the end bins absorbing the tails (as PixelCNN++). (B, C, H, W) -> (B,) nats."""
    half = 0.5 / (bins - 1)
    inv_s = torch.exp(-log_scale)
    centred = x - mean
    plus = inv_s * (centred + half)
    minus = inv_s * (centred - half)
    log_cdf_plus = plus - F.softplus(plus)  # log sigmoid(plus), for the bottom bin
    log_one_minus_cdf_minus = -F.softplus(minus)  # log (1 - sigmoid(minus)), for the top bin
    cdf_delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    # Where the bin mass underflows (far tails), fall back to the density at the bin centre times the bin width.
    mid = inv_s * centred
    log_pdf_mid = mid - log_scale - 2 * F.softplus(mid)
    log_mid = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp_min(1e-12)), log_pdf_mid + math.log(2 * half))
    logp = torch.where(x < half, log_cdf_plus, torch.where(x > 1 - half, log_one_minus_cdf_minus, log_mid))
    return -logp.flatten(1).sum(1)


def lstm_pointwise_ops(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """The element-wise half of an LSTM cell from plain torch ops: (B, 4H) gates (i, f, g, o), (B, H) cell -> h, c.

    tanh(v) is written 2 sigmoid(2 v) - 1, as _GlimpseLSTM does: torch's CPU tanh is slow in eager mode, and in the
    loop torch.compile generates for a glimpse the exp-based form made the bf16 training step 3% faster here."""
    i, f, g, o = gates.chunk(4, 1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * (2 * torch.sigmoid(2 * g) - 1)
    return torch.sigmoid(o) * (2 * torch.sigmoid(2 * c_new) - 1), c_new


class _BufferPool:
    """Keeps the stash buffers (tens of MB per batch at the paper's sizes) from one training step for the next.

    Freshly allocated, they are fresh pages from the OS, and first-touch page faults cost ~5% of a CPU step. A buffer
    goes back to the pool only when the autograd graph holding its stash is freed, so two graphs alive at once (e.g.
    gradient accumulation) never share one; at most one buffer per shape is kept."""

    def __init__(self):
        self.free: dict[tuple, Tensor] = {}

    def take(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        buf = self.free.pop((shape, like.dtype, like.device), None)
        return buf if buf is not None else like.new_empty(shape)

    def give(self, *bufs: Tensor) -> None:
        for buf in bufs:
            self.free[(tuple(buf.shape), buf.dtype, buf.device)] = buf


_POOL = _BufferPool()


class _Stash:
    """Inputs X (T, B, K) and output gradients G (T, B, N) of every glimpse's use of one shared weight, and the weight
    (K, N) as the GEMMs read it. All three are in the matmul dtype: fp32, or bf16 under autocast (see Draw)."""

    def __init__(self, steps: int, batch: int, weight_t: Tensor, mm_dtype: torch.dtype):
        k, n = weight_t.shape
        self.w = weight_t.detach().to(mm_dtype)  # the weight_t the GEMMs use (a view when no cast is needed)
        self.x = _POOL.take((steps, batch, k), self.w)
        self.g = _POOL.take((steps, batch, n), self.w)
        weakref.finalize(self, _POOL.give, self.x, self.g)
        self.filled = [False] * steps  # glimpses whose backward has written G[t]
        self.count = 0  # glimpses run so far

    @functools.cached_property
    def w_rows(self) -> Tensor:
        """(K, N) self.w made contiguous once per batch: the layout the input-gradient GEMMs read fastest."""
        return self.w.contiguous()


class _SharedWeightGate(torch.autograd.Function):
    """Identity on (weight_t, bias) whose backward computes their gradients for all glimpses at once.

    Every glimpse's node consumes the gate's outputs, so autograd runs the gate's backward only after all of them have
    run theirs and written their output gradients into the stash. Then dW = G^T X is one (N x T B) @ (T B x K) GEMM,
    where autograd would run T skinny (N x B) @ (B x K) GEMMs and T read-modify-writes of the weight's gradient."""

    @staticmethod
    def forward(ctx, weight_t: Tensor, bias: Tensor, stash: _Stash):
        ctx.stash = stash
        ctx.per_image_bias = bias.dim() == 2
        ctx.weight_dtype = weight_t.dtype
        return weight_t.view_as(weight_t), bias.view_as(bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, _grad_w, _grad_b):  # incoming grads are zeros: the glimpses return none for the weight
        stash = ctx.stash
        t = stash.count
        for i in range(t):
            if not stash.filled[i]:  # that glimpse's output did not reach the loss
                stash.g[i].zero_()
            stash.filled[i] = False  # a second backward (retain_graph) must write them again
        x = stash.x[:t].reshape(-1, stash.x.shape[2])  # (T B, K)
        g = stash.g[:t].reshape(-1, stash.g.shape[2])  # (T B, N)
        dtype = ctx.weight_dtype
        grad_w_t = gemm.linear(g.t(), x.t()).t().to(dtype)  # (K, N), laid out as the transposed view it is the grad of
        grad_b = _sum_rows(stash.g[:t] if ctx.per_image_bias else g, dtype)
        return grad_w_t, grad_b, None


def _sum_rows(g: Tensor, dtype: torch.dtype) -> Tensor:
    """g summed over its first dimension, in dtype. From a bf16 g, summing blocks converted to fp32 one at a time
    took 1.9 ms for a (6400, 1024) g here against 7.3 ms for g.sum(0, dtype=float32), with the same precision."""
    if g.dtype == dtype:
        return g.sum(0)
    out = torch.zeros(g.shape[1:], dtype=dtype, device=g.device)
    for block in g.split(max(1, 409_600 // g[0].numel())):  # ~1.6 MB of fp32 at a time
        out += block.to(dtype).sum(0)
    return out


class _GlimpseLinear(torch.autograd.Function):
    """bias + [parts] @ weight_t for one glimpse; writes its input and output gradient into the stash and returns no
    weight gradient (the gate computes it for all glimpses)."""

    @staticmethod
    def forward(ctx, weight_t: Tensor, bias: Tensor, stash: _Stash, *parts: Tensor):
        t = stash.count
        stash.count += 1
        x = _stash_input(stash, t, parts)
        ctx.stash, ctx.t, ctx.widths = stash, t, [p.shape[1] for p in parts]
        return _matmul_bias(x, stash.w, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        stash, t = ctx.stash, ctx.t
        stash.g[t].copy_(grad)
        stash.filled[t] = True
        return (None, None, None, *_split_input_grad(ctx, stash.g[t], stash.w_rows, grad.dtype))


class _GlimpseLSTM(torch.autograd.Function):
    """One LSTM cell step, gates = bias + [parts] @ weight_t (gate order i, f, g, o as nn.LSTMCell), with a
    hand-written backward that writes d(gates) straight into the stash.

    Composed from torch ops a cell step is ~12 autograd nodes with their own saved tensors; at 2 cells x 64 glimpses
    the bookkeeping costs more than the arithmetic on a CPU. test_draw_model checks the gradients against autograd."""

    @staticmethod
    def forward(ctx, c: Tensor, weight_t: Tensor, bias: Tensor, stash: _Stash, *parts: Tensor):
        t = stash.count
        stash.count += 1
        x = _stash_input(stash, t, parts)
        gates = _matmul_bias(x, stash.w, bias)  # (B, 4H), in c's dtype
        hid = c.shape[1]
        # tanh(v) = 2 sigmoid(2 v) - 1: on CPU torch's tanh kernel is ~10x slower than its sigmoid (measured 54 vs
        # 6 us on (100, 256) fp32), so the g block is doubled in place and every gate goes through one sigmoid.
        gates[:, 2 * hid:3 * hid].mul_(2)
        act = torch.sigmoid(gates)  # i, f, o: their gates; g block: sigmoid(2 v)
        g = act[:, 2 * hid:3 * hid].mul(2).sub_(1)  # tanh(v)
        i, f, o = act[:, :hid], act[:, hid:2 * hid], act[:, 3 * hid:]
        c_new = torch.addcmul(f * c, i, g)
        tc = torch.sigmoid(c_new * 2).mul_(2).sub_(1)  # tanh(c_new)
        h = o * tc
        # Activation derivatives, all gates in one (B, 4H) tensor: s (1 - s) for the sigmoids; for the g block,
        # with s = sigmoid(2 v), d tanh(v) / dv = 1 - tanh(v)^2 = 4 s (1 - s).
        deriv = torch.addcmul(act, act, act, value=-1)
        deriv[:, 2 * hid:3 * hid].mul_(4)
        ctx.save_for_backward(act, g, c, tc, deriv)
        ctx.stash, ctx.t, ctx.widths = stash, t, [p.shape[1] for p in parts]
        return h, c_new

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dh: Tensor, dc_new: Tensor):
        act, g, c, tc, deriv = ctx.saved_tensors
        stash, t = ctx.stash, ctx.t
        hid = c.shape[1]
        i, f, o = act[:, :hid], act[:, hid:2 * hid], act[:, 3 * hid:]
        dc = torch.addcmul(dc_new, dh * o, 1 - tc * tc)  # through h = o tanh(c_new), plus the direct path
        # (B, 4H): d loss / d (activated gate), then times the derivatives in place; written straight into the stash
        # when it has the state's dtype, else computed in full precision and rounded once.
        same = stash.g.dtype == dc.dtype
        dgates = stash.g[t] if same else torch.empty_like(act)
        torch.mul(dc, g, out=dgates[:, :hid])
        torch.mul(dc, c, out=dgates[:, hid:2 * hid])
        torch.mul(dc, i, out=dgates[:, 2 * hid:3 * hid])
        torch.mul(dh, tc, out=dgates[:, 3 * hid:])
        dgates.mul_(deriv)
        if not same:
            dgates = stash.g[t].copy_(dgates)
        stash.filled[t] = True
        return (dc * f, None, None, None, *_split_input_grad(ctx, dgates, stash.w_rows, dc.dtype))


class _GlimpseTaps(torch.autograd.Function):
    """Zeros (k, B, N) per linear map, which a compiled block of k glimpses adds to each map's GEMM outputs (see
    Draw.compile_step): their gradients are those outputs' gradients, which backward writes into the maps' stashes, so
    each gate computes its weight's gradient for all glimpses at once as it does for _GlimpseLinear, while the block
    sees the weights as constants. One node per block for all its maps. Inputs: the stashes, k, the batch size, then
    each map's gated (weight_t, bias), through which the gates' backward waits for every block's."""

    @staticmethod
    def forward(ctx, stashes: tuple[_Stash, ...], k: int, batch: int, *gated: Tensor):
        ctx.stashes, ctx.ts, ctx.k = stashes, [s.count for s in stashes], k
        for s in stashes:
            s.count += k
        # In the stash's dtype: the compiled backward then rounds each gradient to bf16 in a loop it already runs.
        return tuple(s.g.new_zeros(()).expand(k, batch, s.w.shape[1]) for s in stashes)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads: Tensor):
        for s, t, grad in zip(ctx.stashes, ctx.ts, grads):
            s.g[t:t + ctx.k].copy_(grad)
            s.filled[t:t + ctx.k] = [True] * ctx.k
        return (None, None, None, *[None] * (2 * len(ctx.stashes)))


def _stash_input(stash: _Stash, t: int, parts: tuple[Tensor, ...]) -> Tensor:
    """Concatenate a glimpse's input parts into stash.x[t] (casting to the stash's dtype); returns that row block."""
    x = stash.x[t]
    if len(parts) == 1:
        return x.copy_(parts[0])
    if all(p.dtype == x.dtype for p in parts):
        return torch.cat(parts, dim=1, out=x)
    col = 0
    for p in parts:
        x[:, col:col + p.shape[1]].copy_(p)
        col += p.shape[1]
    return x


def _matmul_bias(x: Tensor, w: Tensor, bias: Tensor, choose_kernel: bool = True) -> Tensor:
    """bias + x @ w in bias's dtype: one addmm when the operands share it, else the GEMM in the operands' dtype (bf16)
    and the bias added in full precision. Outside autograd, with choose_kernel, through the kernel gemm.py measured
    fastest on this CPU."""
    no_grad = not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad or bias.requires_grad))
    if choose_kernel and no_grad:
        return gemm.linear(x, w.t(), bias)
    if x.dtype == bias.dtype:
        return torch.addmm(bias, x, w)
    return torch.mm(x, w).to(bias.dtype).add_(bias)


def _plain_map(parts: tuple[Tensor, ...], w: Tensor, bias: Tensor,
               choose_kernel: bool = True) -> tuple[Tensor, Tensor]:
    """[parts] concatenated in w's dtype, and bias + that @ w, with plain (autograd-traced) ops."""
    x = (torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]).to(w.dtype)
    return x, _matmul_bias(x, w, bias, choose_kernel)


def _split_input_grad(ctx, grad_out: Tensor, w: Tensor, dtype: torch.dtype) -> list[Tensor | None]:
    """d[parts] = grad_out @ w^T in dtype, split back into the concatenated parts (None where no grad is needed)."""
    needs = ctx.needs_input_grad[-len(ctx.widths):]
    if not any(needs):
        return [None] * len(needs)
    grad_x = gemm.linear(grad_out, w).to(dtype)
    return [gp if need else None for gp, need in zip(grad_x.split(ctx.widths, dim=1), needs)]


class SharedLinear:
    """bias + [parts] @ weight_t, applied once per glimpse with one weight: (K, N) weight_t, (N,) or (B, N) bias.

    With gradients enabled the inputs and output gradients of all glimpses are kept in one (T, B, .) buffer each and
    the weight's gradient is one GEMM over them (see _SharedWeightGate). Without gradients, or with deferred=False
    (plain autograd, the tests' reference), it is a plain addmm. A compiled glimpse does not call it: it gets
    its weight, bias and tap from _traced_args and hands back its input through keep_input()."""

    def __init__(self, weight_t: Tensor, bias: Tensor, steps: int, batch: int, deferred: bool = True,
                 mm_dtype: torch.dtype | None = None):
        self.deferred = deferred and torch.is_grad_enabled() and (weight_t.requires_grad or bias.requires_grad)
        mm_dtype = mm_dtype or weight_t.dtype
        if self.deferred:
            self.stash = _Stash(steps, batch, weight_t, mm_dtype)
            weight_t, bias = _SharedWeightGate.apply(weight_t, bias, self.stash)
        self.weight_t, self.bias = weight_t, bias
        if not self.deferred:
            self.w_mm = weight_t.to(mm_dtype)  # autograd casts the gradient back

    def __call__(self, *parts: Tensor) -> Tensor:
        """(B, K_1), (B, K_2), ... -> (B, N)."""
        if self.deferred:
            return _GlimpseLinear.apply(self.weight_t, self.bias, self.stash, *parts)
        return _plain_map(parts, self.w_mm, self.bias)[1]

    def lstm(self, c: Tensor, *parts: Tensor) -> tuple[Tensor, Tensor]:
        """An LSTM cell step whose gates are this map of [parts]: (B, H) cell, inputs -> (h, c) of the next step."""
        if self.deferred:
            return _GlimpseLSTM.apply(c, self.weight_t, self.bias, self.stash, *parts)
        return lstm_pointwise_ops(self(*parts), c)

    def keep_input(self, x: Tensor) -> None:
        """A compiled block's inputs (k, B, K), the last k glimpses', for the weight's gradient."""
        if self.deferred:  # detached: copied with its history, the buffer would join the graph that holds it
            self.stash.x[self.stash.count - x.shape[0]:self.stash.count].copy_(x.detach())


class _TracedLinear:
    """SharedLinear inside a compiled glimpse: plain ops on a constant weight, plus the tap that carries the output's
    gradient out (see _GlimpseTaps); remembers its inputs for SharedLinear.keep_input."""

    def __init__(self, w: Tensor, bias: Tensor, taps: Tensor | None):
        self.w, self.bias, self.taps = w, bias, taps  # taps (k, B, N): one per glimpse of the block
        self.xs = []

    def __call__(self, *parts: Tensor) -> Tensor:
        # Not gemm.py's kernel choice, even without gradients (validation): the compiler picks the kernels, and
        # that choice (an environment variable, /proc/cpuinfo, a dict of shapes) breaks the graph, which sent the
        # block back to eager for the rest of a training run after its first validation (0.26 -> 0.42 s/step).
        x, out = _plain_map(parts, self.w, self.bias, choose_kernel=False)
        if self.taps is not None:
            out = out + self.taps[len(self.xs)]
        self.xs.append(x)
        return out

    def lstm(self, c: Tensor, *parts: Tensor) -> tuple[Tensor, Tensor]:
        return lstm_pointwise_ops(self(*parts), c)


class _Fused(NamedTuple):
    """Per-batch linear maps, each from weights concatenated once per batch."""

    enc: SharedLinear  # [r_t, h_dec_{t-1}, h_enc_{t-1}] -> encoder gates (B, 4 H_enc); bias may hold label / x terms
    q: SharedLinear  # h_enc_t -> (mu_t, log sigma_t) (B, 2Z)
    dec: SharedLinear  # [z_t, h_dec_{t-1}] -> decoder gates (B, 4 H_dec)
    heads: SharedLinear  # h_dec_t -> [write params (5), patch (P), next read params (5)]; (B, C H W) w/o attention


def _traced_args(w: _Fused, k: int) -> tuple:
    """For one compiled block of k glimpses, per map: (K, N) weight in the GEMM dtype and bias, both constants to the
    block, and the (k, B, N) zeros whose gradients are the map's outputs' (None without gradients)."""
    deferred = [m for m in w if m.deferred]
    taps = iter(_GlimpseTaps.apply(tuple(m.stash for m in deferred), k, deferred[0].stash.x.shape[1],
                                   *[t for m in deferred for t in (m.weight_t, m.bias)]) if deferred else ())
    return tuple((m.stash.w, m.bias.detach(), next(taps)) if m.deferred else (m.w_mm, m.bias, None) for m in w)


class Draw(nn.Module):
    def __init__(self, cfg: DrawConfig):
        super().__init__()
        self.cfg = cfg
        k = cfg.num_classes
        self.canvas0 = nn.Parameter(torch.zeros(cfg.image_shape))  # c_0 logits; see init_canvas_from_data
        self.h_enc0 = nn.Parameter(torch.zeros(cfg.enc_size))
        self.c_enc0 = nn.Parameter(torch.zeros(cfg.enc_size))
        self.h_dec0 = nn.Parameter(torch.zeros(cfg.dec_size))
        self.c_dec0 = nn.Parameter(torch.zeros(cfg.dec_size))
        # Encoder input columns: [r_t (read_size), h_dec_{t-1} (dec_size), one-hot label (k)].
        self.encoder = nn.LSTMCell(cfg.read_size + cfg.dec_size + k, cfg.enc_size)
        self.posterior = nn.Linear(cfg.enc_size, 2 * cfg.z_size)  # -> (mu, log sigma)
        # Decoder input columns: [z_t (z_size), one-hot label (k)].
        self.decoder = nn.LSTMCell(cfg.z_size + k, cfg.dec_size)
        if cfg.attention:
            self.read_head = AttentionHead(cfg.dec_size, cfg.read_n, cfg.height, cfg.width, "read")
            self.write_head = AttentionHead(cfg.dec_size, cfg.write_n, cfg.height, cfg.width, "write")
        self.write_patch = nn.Linear(cfg.dec_size, cfg.patch_size)  # w_t, (C, N, N) or (C, H, W) per image
        if cfg.likelihood == "logistic":
            # Per-pixel log scale of the output logistic; e^-2.3 ~ 0.1, about the spread of pixels around a blurry mean.
            self.log_scale = nn.Parameter(torch.full(cfg.image_shape, math.log(0.1)))
        self._compiled_block = None  # compile_step()
        self._block_size = 1

    # ------------------------------------------------------------------------------------------------------------
    # set-up helpers

    @torch.no_grad()
    def init_canvas_from_data(self, mean_image: Tensor) -> None:
        """Start c_0 at logit(mean training image) so sigmoid(c_0) is the independent-pixel model from step one."""
        mean = torch.as_tensor(mean_image, dtype=torch.float32).reshape(self.cfg.image_shape)
        self.canvas0.copy_(torch.logit(mean.clamp(1e-3, 1 - 1e-3)))

    def label_columns_added(self, state: dict) -> dict:
        """An unconditional model's state dict made to fit this class-conditional one: the encoder and decoder input
        weights get zero columns for the one-hot label (their last num_classes columns), so the model starts out
        drawing exactly what the unconditional one drew, whatever the label, and learns to use it. A state dict that
        already fits (or does not fit for another reason) is returned unchanged, for load_state_dict to judge."""
        k = self.cfg.num_classes
        out = dict(state)
        for cell in ("encoder", "decoder"):
            key = f"{cell}.weight_ih"
            want = getattr(self, cell).weight_ih  # (4 H, inputs + k)
            w = out.get(key)
            if k and w is not None and w.shape == (want.shape[0], want.shape[1] - k):
                out[key] = torch.cat([w, w.new_zeros(w.shape[0], k)], dim=1)
        return out

    def compile_step(self, glimpses_per_call: int = 4, **compile_kwargs) -> None:
        """Run the glimpses through torch.compile, at most `glimpses_per_call` at a time (optional; the model is
        complete without it; --train.compile true).

        The compiler traces _glimpse with _TracedLinear in place of the hand-written LSTM and linear Functions, which
        it cannot trace, and fuses its element-wise work; the weights enter as constants, so each weight's gradient is
        still one GEMM over all glimpses (_GlimpseTaps). More glimpses per call cost less dispatch per glimpse and more
        compilation; bench/draw_speed.py --compile times 4 (the default) against 1. Traces (reconstruct with trace,
        the drawing process) run the glimpses uncompiled. The compiled function is not a submodule, so the state dict
        keeps its plain names."""
        if glimpses_per_call < 1:
            raise ValueError(f"glimpses_per_call must be >= 1, got {glimpses_per_call}")
        # The largest block that divides T: one compiled graph, no second one for a shorter last block.
        steps = self.cfg.steps
        self._block_size = max(k for k in range(1, min(glimpses_per_call, steps) + 1) if steps % k == 0)
        # Static shapes: a graph per batch size (training's, validation's), none of them slowed by a symbolic batch.
        self._compiled_block = torch.compile(self._traced_block, **{"dynamic": False, **compile_kwargs})

    def _traced_block(self, x: Tensor, state: tuple, eps: Tensor, args: tuple):
        """k glimpses of _glimpse on _TracedLinear maps built from args (_traced_args), eps (k, B, Z): the state
        (canvas, h_enc, c_enc, h_dec, c_dec, read params) after them, (mu, log sigma, z) per glimpse, and each map's
        inputs (k, B, K)."""
        w = _Fused(*(_TracedLinear(*a) for a in args))
        latents = []
        for i in range(eps.shape[0]):
            *state, mu, log_sigma, z, _ = self._glimpse(x, *state, eps[i], w)
            latents.append((mu, log_sigma, z))
        return tuple(state), latents, tuple(torch.stack(m.xs) for m in w)

    def _check_labels(self, labels: Tensor | None, batch: int) -> Tensor | None:
        """(B,) integer class labels on the model's device, or None for an unconditional model."""
        if self.cfg.num_classes == 0:
            return None
        if labels is None:
            raise ValueError("this DRAW model is class-conditional: pass labels")
        labels = torch.as_tensor(labels, device=self.canvas0.device).reshape(-1)
        if labels.shape[0] != batch:
            raise ValueError(f"got {labels.shape[0]} labels for {batch} images")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.cfg.num_classes):
            raise ValueError(f"labels must be in [0, {self.cfg.num_classes}), got {labels.tolist()}")
        return labels

    def _fuse(self, x: Tensor | None, labels: Tensor | None, batch: int, mm_dtype: torch.dtype | None) -> _Fused:
        """Concatenate the weights each glimpse needs, and fold constant inputs into biases. (B, C, H, W) x or None;
        mm_dtype: the dtype of the glimpses' GEMM operands (None: the weights')."""
        cfg, enc, dec = self.cfg, self.encoder, self.decoder
        r_cols = cfg.read_size
        enc_b = enc.bias_ih + enc.bias_hh
        dec_b = dec.bias_ih + dec.bias_hh
        label_col_enc = r_cols + cfg.dec_size
        if labels is not None:
            # onehot(label) @ W^T is a column lookup: add it to the bias once instead of feeding it every glimpse.
            enc_b = enc_b + enc.weight_ih[:, label_col_enc:].t()[labels]  # (B, 4 H_enc)
            dec_b = dec_b + dec.weight_ih[:, cfg.z_size:].t()[labels]  # (B, 4 H_dec)
        if cfg.attention:
            enc_w = torch.cat((enc.weight_ih[:, :label_col_enc], enc.weight_hh), dim=1)
            heads_w = torch.cat((self.write_head.linear.weight, self.write_patch.weight, self.read_head.linear.weight))
            heads_b = torch.cat((self.write_head.linear.bias, self.write_patch.bias, self.read_head.linear.bias))
        else:
            # r_t = [x, x^_t]: the x half is the same at every glimpse, so its product joins the bias once.
            n = cfg.num_dims
            if x is not None:
                enc_b = enc_b + x.flatten(1) @ enc.weight_ih[:, :n].t()
            enc_w = torch.cat((enc.weight_ih[:, n:label_col_enc], enc.weight_hh), dim=1)
            heads_w, heads_b = self.write_patch.weight, self.write_patch.bias
        dec_w = torch.cat((dec.weight_ih[:, : cfg.z_size], dec.weight_hh), dim=1)

        def shared(weight: Tensor, bias: Tensor) -> SharedLinear:
            return SharedLinear(weight.t(), bias, cfg.steps, batch, mm_dtype=mm_dtype)

        return _Fused(shared(enc_w, enc_b), shared(self.posterior.weight, self.posterior.bias), shared(dec_w, dec_b),
                      shared(heads_w, heads_b))

    def _split_heads(self, heads: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, 5 + P + 5) -> write params (B, 5), patch (B, C, N, N), next read params (B, 5)."""
        cfg = self.cfg
        p = cfg.patch_size
        n5 = attention.NUM_PARAMS
        return heads[:, :n5], heads[:, n5:n5 + p].view(-1, cfg.channels, cfg.write_n, cfg.write_n), heads[:, n5 + p:]

    # ------------------------------------------------------------------------------------------------------------
    # one glimpse

    def _glimpse(self, x: Tensor, canvas: Tensor, h_enc: Tensor, c_enc: Tensor, h_dec: Tensor, c_dec: Tensor,
                 read_params: Tensor | None, eps: Tensor, w: _Fused):
        """Glimpse t: (B, C, H, W) x and c_{t-1}, LSTM states (B, H), read params from h_dec_{t-1} (B, 5), eps_t (B, Z).

        Returns c_t, the four states, the next read params (from h_dec_t), mu_t, log sigma_t, z_t and the write params.
        """
        cfg = self.cfg
        if cfg.attention:
            r = attention.read(x, canvas, read_params, cfg.read_n)
        else:
            r = (x - torch.sigmoid(canvas)).flatten(1)  # x^; the x half of [x, x^] is already in w.enc's bias
        h_enc, c_enc = w.enc.lstm(c_enc, r, h_dec, h_enc)
        mu, log_sigma = w.q(h_enc).chunk(2, dim=1)  # (B, Z) each
        z = torch.addcmul(mu, torch.exp(log_sigma), eps)  # reparameterised sample
        h_dec, c_dec = w.dec.lstm(c_dec, z, h_dec)
        heads = w.heads(h_dec)
        if cfg.attention:
            write_params, patch, read_params = self._split_heads(heads)
            canvas = attention.write(canvas, patch, write_params)
        else:
            write_params = None
            canvas = canvas + heads.view_as(canvas)
        return canvas, h_enc, c_enc, h_dec, c_dec, read_params, mu, log_sigma, z, write_params

    # ------------------------------------------------------------------------------------------------------------
    # the full sequence

    def _initial(self, batch: int):
        def expand(p: Tensor) -> Tensor:
            return p.expand(batch, *p.shape)

        read_params = None
        if self.cfg.attention:
            read_params = self.read_head.linear(self.h_dec0).expand(batch, attention.NUM_PARAMS)
        return (expand(self.canvas0), expand(self.h_enc0), expand(self.c_enc0), expand(self.h_dec0),
                expand(self.c_dec0), read_params)

    def _run(self, x: Tensor, labels: Tensor | None, eps: Tensor | None, trace: bool):
        """Encode and decode x (B, C, H, W): final canvas logits, stacked mu, log sigma, z (T, B, Z), trace lists."""
        cfg = self.cfg
        b = x.shape[0]
        if x.shape[1:] != cfg.image_shape:
            raise ValueError(f"expected images of shape (B, {', '.join(map(str, cfg.image_shape))}), "
                             f"got {tuple(x.shape)}")
        labels = self._check_labels(labels, b)
        if eps is None:
            eps = torch.randn(cfg.steps, b, cfg.z_size, device=x.device, dtype=x.dtype)  # fresh noise for every z_t
        with self._precision() as mm_dtype:
            x, eps = x.to(self.canvas0.dtype), eps.to(self.canvas0.dtype)
            return self._glimpses(x, eps, trace, self._fuse(x, labels, b, mm_dtype))

    def _glimpses(self, x: Tensor, eps: Tensor, trace: bool, w: _Fused):
        cfg = self.cfg
        if self._compiled_block is not None and not trace:
            return self._compiled_glimpses(x, eps, w)
        canvas, h_enc, c_enc, h_dec, c_dec, read_params = self._initial(x.shape[0])
        mus, log_sigmas, zs, canvases, rwins, wwins = [], [], [], [], [], []
        for t in range(cfg.steps):
            if trace and cfg.attention:
                rwins.append(attention.window_from_params(read_params, cfg.read_n, cfg.height, cfg.width))
            canvas, h_enc, c_enc, h_dec, c_dec, read_params, mu, log_sigma, z, write_params = self._glimpse(
                x, canvas, h_enc, c_enc, h_dec, c_dec, read_params, eps[t], w)
            mus.append(mu)
            log_sigmas.append(log_sigma)
            zs.append(z)
            if trace:
                canvases.append(torch.sigmoid(canvas))
                if cfg.attention:
                    wwins.append(attention.window_from_params(write_params, cfg.write_n, cfg.height, cfg.width))
        return canvas, torch.stack(mus), torch.stack(log_sigmas), torch.stack(zs), canvases, rwins, wwins

    def _compiled_glimpses(self, x: Tensor, eps: Tensor, w: _Fused):
        """_glimpses through the compiled blocks (compile_step), without a trace."""
        def dense(state):  # the strides of every block's inputs alike (the initial state is expanded, stride 0, and
            return tuple(s if s is None else s.contiguous() for s in state)  # read params a slice): one graph

        state = dense(self._initial(x.shape[0]))
        latents = []
        for t in range(0, self.cfg.steps, self._block_size):
            block = eps[t:t + self._block_size]
            state, block_latents, inputs = self._compiled_block(x, state, block, _traced_args(w, block.shape[0]))
            state = dense(state)
            for m, inp in zip(w, inputs):
                m.keep_input(inp)
            latents += block_latents
        mus, log_sigmas, zs = (torch.stack(v) for v in zip(*latents))
        return state[0], mus, log_sigmas, zs, [], [], []

    @contextlib.contextmanager
    def _precision(self):
        """Under autocast (the engine's bf16 / fp16 precision), the glimpses' GEMMs run in the autocast dtype with
        full-precision results, and everything else (LSTM cell states, attention, the canvas, which sums 64 writes)
        stays in the weights' dtype: autocast is switched off here and the GEMM operands are cast explicitly. Yields
        the GEMM dtype (None: the weights')."""
        dev = self.canvas0.device.type
        mm_dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None
        with torch.autocast(dev, enabled=False):
            yield mm_dtype

    def _recon_nll(self, logits: Tensor, x: Tensor) -> Tensor:
        if self.cfg.likelihood == "bernoulli":
            return bernoulli_nll(logits, x)
        return discretized_logistic_nll(torch.sigmoid(logits), self.log_scale, x)

    def forward(self, x: Tensor, labels: Tensor | None = None, eps: Tensor | None = None) -> DrawLoss:
        """x (B, C, H, W) in [0, 1] (0/1 for Bernoulli, multiples of 1/255 for logistic); labels (B,) when
        class-conditional; eps (T, B, Z) standard-normal noise, drawn here when None. Returns fp32 nats per image."""
        logits, mu, log_sigma, _, _, _, _ = self._run(x, labels, eps, trace=False)
        kl_steps = gaussian_kl(_at_least_fp32(mu), _at_least_fp32(log_sigma)).t()  # (B, T)
        recon = self._recon_nll(_at_least_fp32(logits), _at_least_fp32(x))
        return DrawLoss(recon, kl_steps.sum(1), kl_steps, self.cfg.num_dims)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, labels: Tensor | None = None, eps: Tensor | None = None) -> DrawTrace:
        """Encode real images and record, per glimpse, the canvas and the read and write windows."""
        logits, mu, log_sigma, z, canvases, rwins, wwins = self._run(x, labels, eps, trace=True)
        kl_steps = gaussian_kl(mu, log_sigma).t()
        loss = DrawLoss(self._recon_nll(logits, x), kl_steps.sum(1), kl_steps, self.cfg.num_dims)
        return DrawTrace(torch.stack(canvases), _stack_windows(wwins), _stack_windows(rwins), z, loss)

    @torch.no_grad()
    def generate(self, num: int, labels: Tensor | None = None, return_steps: bool = True,
                 generator: torch.Generator | None = None) -> DrawTrace:
        """Draw `num` images from the prior: z_t ~ N(0, I), decoder and write only. With return_steps=False only the
        final canvas is kept (canvases is (1, num, C, H, W)) and no windows are returned."""
        labels = self._check_labels(labels, num)
        with self._precision() as mm_dtype:
            w = self._fuse(None, labels, num, mm_dtype)
            return self._draw(w, num, return_steps, generator)

    def _draw(self, w: _Fused, num: int, return_steps: bool, generator: torch.Generator | None) -> DrawTrace:
        cfg = self.cfg
        dev = self.canvas0.device
        canvas, _, _, h_dec, c_dec, _ = self._initial(num)
        z_all = torch.randn(cfg.steps, num, cfg.z_size, device=dev, dtype=self.canvas0.dtype, generator=generator)
        canvases, wwins = [], []
        for t in range(cfg.steps):
            h_dec, c_dec = w.dec.lstm(c_dec, z_all[t], h_dec)
            heads = w.heads(h_dec)
            if cfg.attention:
                write_params, patch, _ = self._split_heads(heads)
                canvas = attention.write(canvas, patch, write_params)
                if return_steps:
                    wwins.append(attention.window_from_params(write_params, cfg.write_n, cfg.height, cfg.width))
            else:
                canvas = canvas + heads.view_as(canvas)
            if return_steps:
                canvases.append(torch.sigmoid(canvas))
        if not return_steps:
            canvases = [torch.sigmoid(canvas)]
        return DrawTrace(torch.stack(canvases), _stack_windows(wwins) if wwins else None, None, z_all)

    @torch.no_grad()
    def log_weights(self, x: Tensor, labels: Tensor | None = None, eps: Tensor | None = None) -> Tensor:
        """log w = log p(x | z) + sum_t [log N(z_t; 0, I) - log Q(z_t | ...)] for one sampled sequence z_1..T per image,
        (B, C, H, W) -> (B,) nats. E[-log w] is the negative ELBO; its analytic-KL form is forward().nll_bound."""
        if eps is None:
            eps = torch.randn(self.cfg.steps, x.shape[0], self.cfg.z_size, device=x.device, dtype=x.dtype)
        logits, _, log_sigma, z, _, _, _ = self._run(x, labels, eps, trace=False)
        # log Q - log p per latent dimension with z = mu + sigma eps: the -1/2 log 2 pi terms cancel.
        log_ratio = (-0.5 * eps.square() - log_sigma + 0.5 * z.square()).sum((0, 2))  # (T, B, Z) -> (B,)
        return -(self._recon_nll(logits, x) + log_ratio)

    @torch.no_grad()
    def iwae_bound(self, x: Tensor, k: int = 100, labels: Tensor | None = None, max_batch: int = 2000) -> Tensor:
        """-log p(x) estimated with K importance samples (Burda et al. 2016), (B, C, H, W) -> (B,) nats.

        Each sample is a whole sequence z_1..T drawn from Q (see log_weights). -log mean_k w_k is an upper bound on
        -log p(x) whose expectation is never looser than the negative ELBO (K = 1) and tightens as K grows. Images
        are processed max(1, max_batch // K) at a time.
        """
        per = max(1, max_batch // k)
        out = []
        for s in range(0, x.shape[0], per):
            xs = x[s:s + per]
            n = xs.shape[0]
            xr = xs.repeat_interleave(k, dim=0)  # (n K, C, H, W), the K copies of an image adjacent
            lr = None if labels is None else torch.as_tensor(labels)[s:s + per].repeat_interleave(k)
            log_w = self.log_weights(xr, lr).view(n, k).double()
            out.append((math.log(k) - torch.logsumexp(log_w, dim=1)).to(x.dtype))
        return torch.cat(out)


def _at_least_fp32(t: Tensor) -> Tensor:
    """Loss terms sum hundreds of per-pixel values: never accumulate them in half precision."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _stack_windows(windows: list[Window | None]) -> Window | None:
    if not windows or windows[0] is None:
        return None
    return Window(*(torch.stack(field) for field in zip(*windows)))
