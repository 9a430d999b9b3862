"""BiLSTM-CTC acoustic model: frame stacking, a stack of bidirectional LSTM layers, a linear output over blank + tokens.

    model = AcousticModel(AcousticModelConfig(vocab_size=len(tokens) + 1))
    log_probs, out_lens = model(feats, feat_lens)      # (B, T, n_mels), (B,) -> (B, T', V) fp32, (B,)

The CTC blank is output 0 and token-set id i is output i + 1 (`BLANK`, `to_output_ids`, `from_output_ids`); the loss,
the decoders and the exported tokens.txt all go through these.

Padding never changes an utterance's outputs. Features past each length are zeroed before stacking, the forward LSTM
of every layer only looks back, and the backward LSTM runs on each sequence reversed *within its own length*
(`reverse_padded`), so the padding sits after the real frames in both directions. This keeps plain (unpacked) LSTM
calls, which on CPU take oneDNN's fused kernels and run in bf16 under autocast; packed sequences do neither and
measured 3-4x slower here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

BLANK = 0  # the CTC blank's output index


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
    hidden: int = field(default=256, metadata={"help": "LSTM units per direction"})
    layers: int = field(default=3, metadata={"help": "bidirectional LSTM layers"})
    dropout: float = field(default=0.1, metadata={"help": "dropout between layers and before the output"})
    vocab_size: int = field(default=29, metadata={"help": "outputs: tokens + 1 for the blank (28 characters + 1)"})

    def __post_init__(self):
        if self.stack < 1 or self.layers < 1 or self.hidden < 1:
            raise ValueError("model.stack, model.layers and model.hidden must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("model.dropout must be in [0, 1)")

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


class BiLSTMLayer(nn.Module):
    """One bidirectional layer from two unidirectional LSTMs; outputs past each length are 0."""

    def __init__(self, input_dim: int, hidden: int):
        super().__init__()
        self.fwd = nn.LSTM(input_dim, hidden, batch_first=True)
        self.bwd = nn.LSTM(input_dim, hidden, batch_first=True)

    def forward(self, x: torch.Tensor, lens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, D), (B,), (B, T, 1) -> (B, T, 2H)."""
        h_fwd, _ = self.fwd(x)  # (B, T, H)
        h_bwd, _ = self.bwd(reverse_padded(x, lens))  # (B, T, H), in reversed time
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
            self.layers.append(BiLSTMLayer(dim, cfg.hidden))
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
            flops += 2 * 2 * 4 * cfg.hidden * (dim + cfg.hidden)  # 2 directions x 4 gates x (input + recurrent)
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
