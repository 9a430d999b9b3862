"""BiLSTM-CTC acoustic model: frame stacking, a stack of bidirectional recurrent layers, a linear output over blank +
tokens.

    model = AcousticModel(AcousticModelConfig(vocab_size=len(tokens) + 1))
    log_probs, out_lens = model(feats, feat_lens)      # (B, T, n_mels), (B,) -> (B, T', V) fp32, (B,)

The CTC blank is output 0 and token-set id i is output i + 1 (`BLANK`, `to_output_ids`, `from_output_ids`); the loss,
the decoders and the exported tokens.txt all go through these.

Padding never changes an utterance's outputs. Features past each length are zeroed before stacking, the forward LSTM
of every layer only looks back, and the backward LSTM runs on each sequence reversed *within its own length*
(`reverse_padded`), so the padding sits after the real frames in both directions. This keeps plain (unpacked) LSTM
calls, which on CPU take oneDNN's fused kernels and run in bf16 under autocast; packed sequences do neither and
measured 3-4x slower here.

The recurrent cell is a choice (`cell`): "lstm" (nn.LSTM, the default: fused kernels), "gru" (nn.GRU) or
"lstm_peephole" (`PeepholeLSTM`, the LSTM of Graves et al. 2013 with diagonal peephole weights from the cell state;
written here, since nn.LSTM has none, so a Python time loop: slower, and not exportable to ONNX).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, get_args

import torch
from torch import nn

BLANK = 0  # the CTC blank's output index
Cell = Literal["lstm", "gru", "lstm_peephole"]  # the recurrent cell (AcousticModelConfig.cell)
CELLS = get_args(Cell)
GATES = {"lstm": 4, "gru": 3, "lstm_peephole": 4}  # weight blocks per cell: GEMM work is proportional to these


def to_output_ids(token_ids: list[int]) -> list[int]:
    """Token-set ids -> model output ids (shift past the blank)."""
    return [i + 1 for i in token_ids]


def from_output_ids(output_ids: list[int]) -> list[int]:
    return [i - 1 for i in output_ids]


@dataclass
class AcousticModelConfig:
    n_mels: int = field(default=80, metadata={"help": "input feature dimension"})
    stack: int = field(default=4, metadata={"help": "frames stacked into one model step (4 x 10 ms = 40 ms)"})
    input_proj: int = field(default=0, metadata={"help": "linear projection of the stacked frames (0: none)"})
    hidden: int = field(default=256, metadata={"help": "recurrent units per direction"})
    layers: int = field(default=3, metadata={"help": "bidirectional recurrent layers"})
    # Releases written before this field existed have no "cell" in config.json: they load as the default, lstm.
    cell: Cell = field(default="lstm", metadata={
        "help": "recurrent cell: lstm (nn.LSTM, fused kernels), gru (nn.GRU) or lstm_peephole (Graves et al. 2013: "
                "peephole LSTM, a slower Python time loop, no ONNX export)"})
    dropout: float = field(default=0.1, metadata={"help": "dropout between layers and before the output"})
    vocab_size: int = field(default=29, metadata={"help": "outputs: tokens + 1 for the blank (28 characters + 1)"})

    def __post_init__(self):
        if self.stack < 1 or self.layers < 1 or self.hidden < 1:
            raise ValueError("model.stack, model.layers and model.hidden must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("model.dropout must be in [0, 1)")
        if self.cell not in CELLS:
            raise ValueError(f"model.cell must be one of {', '.join(CELLS)}, got {self.cell!r}")

    def output_frames(self, feature_frames: int) -> int:
        """Model steps for an utterance of `feature_frames` feature frames."""
        return -(-feature_frames // self.stack)


def reverse_padded(x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """Reverse each (T, D) sequence of (B, T, D) within its first lens[b] steps; the padding stays where it is."""
    T = x.shape[1]
    t = torch.arange(T, device=x.device)[None, :]  # (1, T)
    lens = lens.to(x.device)[:, None]  # (B, 1)
    idx = torch.where(t < lens, lens - 1 - t, t)  # (B, T)
    return x.gather(1, idx[:, :, None].expand(-1, -1, x.shape[2]))


class PeepholeLSTM(nn.Module):
    """A unidirectional LSTM with diagonal peephole connections (Graves et al. 2013, eqs. 3-7), batch first:

        i_t = sigmoid(W_xi x_t + W_hi h_{t-1} + w_ci * c_{t-1} + b_i)
        f_t = sigmoid(W_xf x_t + W_hf h_{t-1} + w_cf * c_{t-1} + b_f)
        c_t = f_t * c_{t-1} + i_t * tanh(W_xc x_t + W_hc h_{t-1} + b_c)
        o_t = sigmoid(W_xo x_t + W_ho h_{t-1} + w_co * c_t + b_o)
        h_t = o_t * tanh(c_t)

    (* is elementwise: the peephole weights w_c* are vectors.) The weight rows are in nn.LSTM's gate order i, f, g
    (= c's candidate), o, with one bias (nn.LSTM's two biases only ever appear summed). Called like
    nn.LSTM(batch_first=True): x (B, T, D) -> (B, T, H) outputs, ((1, B, H) last h, (1, B, H) last c).

    The input part of every gate at every step is one GEMM before the loop; only the recurrent GEMM and the gate
    arithmetic run step by step."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))  # (4H, D)
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))  # (4H, H)
        self.bias = nn.Parameter(torch.empty(4 * hidden_size))  # (4H,)
        self.peephole = nn.Parameter(torch.empty(3, hidden_size))  # (3, H): w_ci, w_cf, w_co
        bound = 1 / math.sqrt(hidden_size)  # nn.LSTM's initialisation, for every parameter
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if torch.onnx.is_in_onnx_export():  # the tracer would unroll the time loop for the example's length only
            raise ValueError("model.cell lstm_peephole cannot be exported to ONNX (its time loop is Python); "
                             "export a model trained with model.cell lstm or gru")
        B, T, _ = x.shape
        w_ci, w_cf, w_co = self.peephole  # (H,) each
        x_gates = nn.functional.linear(x, self.weight_ih, self.bias)  # (B, T, 4H)
        h = x_gates.new_zeros(B, self.hidden_size)  # (B, H)
        c = x_gates.new_zeros(B, self.hidden_size)  # (B, H)
        outputs = []
        for t in range(T):
            i, f, g, o = (x_gates[:, t] + h @ self.weight_hh.t()).chunk(4, dim=1)  # (B, H) each
            i = torch.sigmoid(i + w_ci * c)
            f = torch.sigmoid(f + w_cf * c)
            c = f * c + i * torch.tanh(g)
            o = torch.sigmoid(o + w_co * c)  # the output gate looks at the new cell state
            h = o * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs, dim=1), (h[None], c[None])  # (B, T, H), ((1, B, H), (1, B, H))


def make_rnn(cell: str, input_dim: int, hidden: int) -> nn.Module:
    """One unidirectional batch-first recurrent layer: module(x (B, T, D))[0] is (B, T, H)."""
    if cell == "lstm":
        return nn.LSTM(input_dim, hidden, batch_first=True)
    if cell == "gru":
        return nn.GRU(input_dim, hidden, batch_first=True)
    if cell == "lstm_peephole":
        return PeepholeLSTM(input_dim, hidden)
    raise ValueError(f"unknown recurrent cell {cell!r}: choose from {', '.join(CELLS)}")


class BiLSTMLayer(nn.Module):
    """One bidirectional layer from two unidirectional recurrent layers (LSTMs by default; `cell` chooses); outputs
    past each length are 0."""

    def __init__(self, input_dim: int, hidden: int, cell: str = "lstm"):
        super().__init__()
        self.fwd = make_rnn(cell, input_dim, hidden)
        self.bwd = make_rnn(cell, input_dim, hidden)

    def forward(self, x: torch.Tensor, lens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, D), (B,), (B, T, 1) -> (B, T, 2H)."""
        h_fwd = self.fwd(x)[0]  # (B, T, H)
        h_bwd = self.bwd(reverse_padded(x, lens))[0]  # (B, T, H), in reversed time
        h = torch.cat([h_fwd, reverse_padded(h_bwd, lens)], dim=-1)  # (B, T, 2H)
        return h * mask


class AcousticModel(nn.Module):
    def __init__(self, cfg: AcousticModelConfig):
        super().__init__()
        self.cfg = cfg
        stacked = cfg.n_mels * cfg.stack
        self.proj = nn.Linear(stacked, cfg.input_proj) if cfg.input_proj else None
        dim = cfg.input_proj or stacked
        self.layers = nn.ModuleList()
        for _ in range(cfg.layers):
            self.layers.append(BiLSTMLayer(dim, cfg.hidden, cfg.cell))
            dim = 2 * cfg.hidden
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(dim, cfg.vocab_size)

    def forward(self, feats: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, n_mels) features, (B,) frames -> (B, T', V) fp32 log-probabilities, (B,) output lengths,
        T' = ceil(T / stack)."""
        B, T, F = feats.shape
        k = self.cfg.stack
        valid = torch.arange(T, device=feats.device)[None, :] < lens.to(feats.device)[:, None]
        x = feats * valid[:, :, None]  # stacked frames must not depend on what pads the batch
        pad = -T % k  # always padded (by 0 too): an ONNX export traces this for every length, not one branch
        x = nn.functional.pad(x, (0, 0, 0, pad))
        x = x.reshape(B, (T + pad) // k, k * F)  # (B, T', k*F): frames t*k .. t*k+k-1 side by side
        out_lens = (lens.to(feats.device) + k - 1) // k  # (B,)
        mask = (torch.arange(x.shape[1], device=x.device)[None, :] < out_lens[:, None])[:, :, None]  # (B, T', 1)
        if self.proj is not None:
            x = self.proj(x)
        for i, layer in enumerate(self.layers):
            x = layer(self.drop(x) if i else x, out_lens, mask)  # (B, T', 2H)
        logits = self.out(self.drop(x))  # (B, T', V), bf16 under autocast
        return logits.float().log_softmax(-1), out_lens  # CTC needs fp32 log-probabilities

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_step(self) -> int:
        """Multiply-adds x 2 of one model step (one stacked frame) forward, for the utilisation figure."""
        cfg = self.cfg
        stacked = cfg.n_mels * cfg.stack
        flops = 2 * stacked * cfg.input_proj if cfg.input_proj else 0
        dim = cfg.input_proj or stacked
        for _ in range(cfg.layers):
            # 2 directions x gates (4 LSTM, 3 GRU) x (input + recurrent)
            flops += 2 * 2 * GATES[cfg.cell] * cfg.hidden * (dim + cfg.hidden)
            dim = 2 * cfg.hidden
        return flops + 2 * dim * cfg.vocab_size


def ctc_loss_sum(log_probs: torch.Tensor, out_lens: torch.Tensor, targets: torch.Tensor,
                 target_lens: torch.Tensor) -> torch.Tensor:
    """Summed CTC loss over the batch, in fp32 (call outside autocast). (B, T', V), (B,), (B, U) output ids, (B,).

    An utterance with fewer output frames than its tokens need has no CTC path (infinite loss): zero_infinity makes
    its loss and gradient 0. Normalise by `ctc_units`: it leaves their tokens out and counts them, so they neither
    shrink the gradient nor pass unnoticed."""
    return nn.functional.ctc_loss(log_probs.float().transpose(0, 1), targets, out_lens, target_lens, blank=BLANK,
                                  reduction="sum", zero_infinity=True)


def min_ctc_frames(token_ids: list[int]) -> int:
    """Fewest output frames a CTC path for these tokens needs: one per token plus a blank between each repeat."""
    return len(token_ids) + sum(a == b for a, b in zip(token_ids, token_ids[1:]))


def ctc_units(out_lens: torch.Tensor, targets: torch.Tensor, target_lens: torch.Tensor) -> tuple[float, int]:
    """The normaliser of a batch's summed CTC loss: the target tokens of the utterances CTC can align; and how many
    utterances it cannot align (too few output frames: ctc_loss_sum zeroes their loss). (B,), (B, U), (B,)."""
    tokens, unalignable = 0, 0
    for frames, ids, n in zip(out_lens.tolist(), targets.tolist(), target_lens.tolist()):
        if frames >= min_ctc_frames(ids[:n]):
            tokens += n
        else:
            unalignable += 1
    return float(tokens), unalignable
