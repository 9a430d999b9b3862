"""The BiLSTM-CTC model: shapes, padding invariance, fp32 log-probabilities under bf16 autocast, the CTC loss, and the
filter that removes utterances CTC cannot align."""

from __future__ import annotations

import torch
from torch import nn

from speechdraw.asr.data import filter_alignable
from speechdraw.asr.features import FeatureConfig
from speechdraw.asr.manifest import ManifestEntry
from speechdraw.asr.model import (
    BLANK,
    AcousticModel,
    AcousticModelConfig,
    ctc_loss_sum,
    ctc_units,
    from_output_ids,
    min_ctc_frames,
    reverse_padded,
    to_output_ids,
)
from speechdraw.asr.text import TokenSet


def small(**kw) -> AcousticModel:
    torch.manual_seed(0)
    cfg = AcousticModelConfig(**{"n_mels": 8, "stack": 3, "hidden": 16, "layers": 2, "dropout": 0.0, **kw})
    return AcousticModel(cfg).eval()


def test_shapes_lengths_and_log_probabilities():
    model = small(input_proj=12)
    feats = torch.randn(3, 10, 8)
    log_probs, out_lens = model(feats, torch.tensor([10, 7, 1]))
    assert log_probs.shape == (3, 4, 29) and log_probs.dtype == torch.float32
    assert out_lens.tolist() == [4, 3, 1]  # ceil(len / 3)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(3, 4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lp_bf16, _ = model(feats, torch.tensor([10, 7, 1]))
    assert lp_bf16.dtype == torch.float32  # log-softmax in fp32 even under autocast


def test_reverse_padded_matches_a_loop():
    x = torch.arange(2 * 5 * 1).reshape(2, 5, 1).float()
    lens = torch.tensor([5, 3])
    out = reverse_padded(x, lens)
    for b, n in enumerate(lens.tolist()):
        assert out[b, :n, 0].tolist() == x[b, :n, 0].flip(0).tolist()
        assert out[b, n:, 0].tolist() == x[b, n:, 0].tolist()
    assert torch.equal(reverse_padded(out, lens), x)


def test_padding_never_changes_outputs():
    model = small()
    torch.manual_seed(1)
    lens = [13, 7, 10]
    seqs = [torch.randn(n, 8) for n in lens]
    batch = nn.utils.rnn.pad_sequence(seqs, batch_first=True)
    # Garbage (not zeros) in the padding, and a second batch with 9 more padded frames.
    batch = batch + 100 * (torch.arange(13)[None, :, None] >= torch.tensor(lens)[:, None, None])
    longer = torch.cat([batch, torch.full((3, 9, 8), 7.0)], dim=1)
    lp, ol = model(batch, torch.tensor(lens))
    lp_long, ol_long = model(longer, torch.tensor(lens))
    assert torch.equal(ol, ol_long)
    for b, seq in enumerate(seqs):
        alone, ol_alone = model(seq[None], torch.tensor([len(seq)]))
        n = int(ol_alone[0])
        assert n == ol[b]
        torch.testing.assert_close(lp[b, :n], alone[0, :n], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(lp_long[b, :n], alone[0, :n], atol=1e-5, rtol=1e-5)
    # Gradients too: the loss of a batch is the sum of the utterances' losses.
    targets = torch.tensor([[1, 2, 3], [4, 5, 0], [6, 6, 7]])
    tlens = torch.tensor([3, 2, 3])
    model.zero_grad()
    ctc_loss_sum(*model(longer, torch.tensor(lens)), targets, tlens).backward()
    g_batch = model.out.weight.grad.clone()
    model.zero_grad()
    for b, seq in enumerate(seqs):
        ctc_loss_sum(*model(seq[None], torch.tensor([len(seq)])), targets[b:b + 1, :tlens[b]], tlens[b:b + 1]
                     ).backward()
    torch.testing.assert_close(model.out.weight.grad, g_batch, atol=1e-5, rtol=1e-4)


def test_ctc_loss_is_a_sum_and_impossible_alignments_give_zero():
    torch.manual_seed(0)
    lp = torch.randn(2, 6, 5).log_softmax(-1)
    targets = torch.tensor([[1, 2], [3, 3]])
    total = ctc_loss_sum(lp, torch.tensor([6, 6]), targets, torch.tensor([2, 2]))
    parts = [ctc_loss_sum(lp[b:b + 1], torch.tensor([6]), targets[b:b + 1], torch.tensor([2])) for b in range(2)]
    torch.testing.assert_close(total, parts[0] + parts[1])
    # "3 3" needs 3 frames (a blank between the repeats); 2 frames cannot align: zero_infinity makes the loss 0.
    assert ctc_loss_sum(lp[1:], torch.tensor([2]), targets[1:], torch.tensor([2])).item() == 0.0
    assert ctc_loss_sum(lp[1:], torch.tensor([3]), targets[1:], torch.tensor([2])).item() > 0


def test_blank_is_output_zero():
    assert BLANK == 0
    assert to_output_ids([0, 5]) == [1, 6] and from_output_ids([1, 6]) == [0, 5]


def test_flops_per_step_counts_the_matmuls():
    model = small(input_proj=0)
    cfg = model.cfg
    # Count multiply-adds from the weight shapes: every weight matrix is used once per step.
    macs = sum(p.numel() for name, p in model.named_parameters() if "weight" in name)
    assert model.flops_per_step() == 2 * macs
    assert cfg.output_frames(10) == 4


def test_unalignable_utterances_are_removed_and_counted():
    tokens = TokenSet.characters()
    feats = FeatureConfig()
    model = AcousticModelConfig(stack=4)
    assert min_ctc_frames(tokens.encode("abba")) == 5 and min_ctc_frames(tokens.encode("ab")) == 2
    # 5 output frames need 17 feature frames: 512 + 16 * 160 = 3072 samples.
    enough = 3072 / 16_000
    entries = [
        ManifestEntry("a.flac", enough, "abba"),  # exactly enough (the repeat needs a blank between)
        ManifestEntry("b.flac", enough - 1 / 16_000, "abba"),  # one sample short
        ManifestEntry("c.flac", enough - 1 / 16_000, "abca"),  # same length, no repeat: 4 frames suffice
        ManifestEntry("d.flac", 2.0, ""),
        ManifestEntry("e.flac", 2.0, "caf\u00e9"),
        ManifestEntry("f.flac", 40.0, "a long one"),
    ]
    kept, report = filter_alignable(entries, tokens, feats, model, max_duration=30.0)
    assert [e.audio for e in kept] == ["a.flac", "c.flac"]
    assert report.kept == 2 and dict(report.removed) == {
        "too few frames for the transcript": 1, "empty transcript": 1, "symbols outside the token set": 1,
        "longer than max_duration": 1}
    assert "removed 4" in str(report)
    # Speed perturbation up to 1.1x shortens audio: the filter assumes the fastest factor.
    kept_sp, _ = filter_alignable(entries[:1], tokens, FeatureConfig(speed_factors=(0.9, 1.1)), model)
    assert kept_sp == []


def test_an_utterance_too_short_for_its_transcript_is_counted_and_left_out_of_the_normaliser():
    """Two utterances: the second has 3 output frames for 6 tokens. CTC zeroes its loss; the normaliser must not count
    its tokens, so the batch trains exactly as the first utterance alone would (a mean over that one's tokens)."""
    model = small(stack=2)
    torch.manual_seed(1)
    feats = torch.randn(2, 20, 8)
    lens = torch.tensor([20, 6])  # 10 and 3 output frames
    targets = torch.tensor([[1, 2, 3, 4, 0, 0], [5, 6, 7, 8, 9, 5]])
    tlens = torch.tensor([4, 6])
    lp, out_lens = model(feats, lens)
    assert out_lens.tolist() == [10, 3]
    assert ctc_units(out_lens, targets, tlens) == (4.0, 1)
    assert ctc_units(torch.tensor([10, 6]), targets, tlens) == (10.0, 0)  # 6 frames suffice for 6 distinct tokens
    assert ctc_units(torch.tensor([10, 4]), torch.tensor([[1, 1, 0], [2, 2, 0]]), torch.tensor([2, 2])) == (4.0, 0)
    assert ctc_units(torch.tensor([10, 2]), torch.tensor([[1, 1, 0], [2, 2, 0]]), torch.tensor([2, 2])) == (2.0, 1)

    model.zero_grad()
    tokens, _ = ctc_units(out_lens, targets, tlens)
    batch_loss = ctc_loss_sum(lp, out_lens, targets, tlens) / tokens
    batch_loss.backward()
    g_batch = model.out.weight.grad.clone()
    model.zero_grad()
    lp1, ol1 = model(feats[:1], lens[:1])
    alone = ctc_loss_sum(lp1, ol1, targets[:1, :4], tlens[:1]) / 4
    alone.backward()
    torch.testing.assert_close(batch_loss, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.out.weight.grad, g_batch, atol=1e-5, rtol=1e-4)
