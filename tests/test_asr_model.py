"""The BiLSTM-CTC model: shapes, padding invariance, fp32 log-probabilities under bf16 autocast for every recurrent
cell, the peephole LSTM against a naive loop, nn.LSTM and gradcheck, old configs without a cell, the tiny recipe with
each cell, the CTC loss, and the filter that removes utterances CTC cannot align."""

from __future__ import annotations

import json
import math

import pytest
import torch
from asr_fixtures import recipe
from asr_recipe_fixtures import needs_espeak, speak_corpus
from conftest import read_metrics
from torch import nn

from speechdraw.asr.data import filter_alignable
from speechdraw.asr.features import FeatureConfig
from speechdraw.asr.manifest import ManifestEntry
from speechdraw.asr.model import (
    BLANK,
    CELLS,
    AcousticModel,
    AcousticModelConfig,
    PeepholeLSTM,
    ctc_loss_sum,
    ctc_units,
    from_output_ids,
    min_ctc_frames,
    reverse_padded,
    to_output_ids,
)
from speechdraw.asr.text import TokenSet
from speechdraw.engine.device import cpu_bf16


def small(**kw) -> AcousticModel:
    torch.manual_seed(0)
    cfg = AcousticModelConfig(**{"n_mels": 8, "stack": 3, "hidden": 16, "layers": 2, "dropout": 0.0, **kw})
    return AcousticModel(cfg).eval()


@pytest.mark.parametrize("cell", CELLS)
def test_shapes_lengths_and_log_probabilities(cell):
    model = small(input_proj=12, cell=cell)
    feats = torch.randn(3, 10, 8)
    log_probs, out_lens = model(feats, torch.tensor([10, 7, 1]))
    assert log_probs.shape == (3, 4, 29) and log_probs.dtype == torch.float32
    assert out_lens.tolist() == [4, 3, 1]  # ceil(len / 3)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(3, 4))
    if cpu_bf16() != "none":  # oneDNN's LSTM has no bf16 kernel without AVX-512 (the engine refuses bf16 there)
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


@pytest.mark.parametrize("cell", CELLS)
def test_padding_never_changes_outputs(cell):
    model = small(cell=cell)
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


@pytest.mark.parametrize("cell", CELLS)
def test_flops_per_step_counts_the_matmuls(cell):
    model = small(input_proj=0, cell=cell)
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


# ------------------------------------------------------------------------------------------- the peephole LSTM cell


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def peephole_by_hand(cell: PeepholeLSTM, x: torch.Tensor) -> list[list[float]]:
    """Graves et al. 2013 eqs. 3-7 unit by unit in Python floats, for one sequence x (T, D); returns h_t for every t."""
    H = cell.hidden_size
    W, U, b, P = (p.tolist() for p in (cell.weight_ih, cell.weight_hh, cell.bias, cell.peephole))
    h, c, out = [0.0] * H, [0.0] * H, []

    def pre(gate: int, j: int, x_t: list[float], h: list[float]) -> float:
        """W x_t + U h_{t-1} + b for unit j of a gate (0 i, 1 f, 2 g, 3 o)."""
        row = gate * H + j
        return sum(w * v for w, v in zip(W[row], x_t)) + sum(u * v for u, v in zip(U[row], h)) + b[row]

    for x_t in x.tolist():
        i = [sigmoid(pre(0, j, x_t, h) + P[0][j] * c[j]) for j in range(H)]
        f = [sigmoid(pre(1, j, x_t, h) + P[1][j] * c[j]) for j in range(H)]
        c_new = [f[j] * c[j] + i[j] * math.tanh(pre(2, j, x_t, h)) for j in range(H)]
        o = [sigmoid(pre(3, j, x_t, h) + P[2][j] * c_new[j]) for j in range(H)]
        h = [o[j] * math.tanh(c_new[j]) for j in range(H)]
        c = c_new
        out.append(h)
    return out


def test_peephole_lstm_matches_the_equations_by_hand():
    """Fixed, distinct weights (every gate, unit and input its own value) and large peepholes, so i and f seeing c_{t-1}
    and o seeing c_t (not the other way round), the gate order and the orientation of W all change the result."""
    cell = PeepholeLSTM(2, 2)
    with torch.no_grad():
        cell.weight_ih.copy_(torch.linspace(-1.0, 1.2, 16).reshape(8, 2))
        cell.weight_hh.copy_(torch.linspace(0.9, -0.8, 16).reshape(8, 2))
        cell.bias.copy_(torch.linspace(-0.3, 0.4, 8))
        cell.peephole.copy_(torch.tensor([[1.5, -2.0], [-1.0, 2.5], [3.0, -1.5]]))
    x = torch.tensor([[1.0, -0.5], [0.3, 0.8], [-1.2, 0.4], [0.0, 2.0]])  # (T=4, D=2)
    out, (h_n, c_n) = cell(x[None])
    expected = torch.tensor(peephole_by_hand(cell, x))  # (T, H)
    torch.testing.assert_close(out[0], expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(h_n[0, 0], expected[-1], atol=1e-6, rtol=1e-6)
    assert out.shape == (1, 4, 2) and c_n.shape == (1, 1, 2)
    # The peepholes matter here: without them the same weights give other outputs.
    with torch.no_grad():
        cell.peephole.zero_()
    assert (cell(x[None])[0][0] - expected).abs().max() > 0.02


def test_peephole_lstm_without_peepholes_is_nn_lstm():
    """Peephole weights 0: the cell is a plain LSTM. nn.LSTM's weights copied over (same gate order i, f, g, o; its two
    biases summed) give the same outputs, final states and input gradients."""
    torch.manual_seed(0)
    ref = nn.LSTM(5, 7, batch_first=True)
    cell = PeepholeLSTM(5, 7)
    with torch.no_grad():
        cell.weight_ih.copy_(ref.weight_ih_l0)
        cell.weight_hh.copy_(ref.weight_hh_l0)
        cell.bias.copy_(ref.bias_ih_l0 + ref.bias_hh_l0)
        cell.peephole.zero_()
    x = torch.randn(3, 11, 5, requires_grad=True)
    out, (h, c) = cell(x)
    ref_out, (ref_h, ref_c) = ref(x)
    torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(h, ref_h, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(c, ref_c, atol=1e-6, rtol=1e-5)
    g, = torch.autograd.grad(out.pow(2).sum(), x)
    ref_g, = torch.autograd.grad(ref_out.pow(2).sum(), x)
    torch.testing.assert_close(g, ref_g, atol=1e-6, rtol=1e-5)


def test_peephole_lstm_gradients_pass_gradcheck():
    """Analytic gradients (autograd through the time loop) against finite differences, in float64, for the input and
    every parameter, peepholes included."""
    torch.manual_seed(0)
    cell = PeepholeLSTM(3, 2).double()
    names = [n for n, _ in cell.named_parameters()]
    assert names == ["weight_ih", "weight_hh", "bias", "peephole"]

    def run(x, *params):
        out, (h, c) = torch.func.functional_call(cell, dict(zip(names, params)), (x,))
        return out, c

    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    assert torch.autograd.gradcheck(run, (x, *params), eps=1e-6, atol=1e-6)


def test_a_config_without_cell_loads_as_lstm(tmp_path):
    """A release written before `cell` existed: its config.json has no such field. It loads as an nn.LSTM model, and
    the LSTM state-dict keys are those old releases hold."""
    from speechdraw.asr.release import load_speech_release, save_speech_release

    model = small()
    tokens = TokenSet.characters()
    release = save_speech_release(tmp_path / "release", model.state_dict(), model.cfg, FeatureConfig(cmvn="utterance"),
                                  None, tokens)
    config = json.loads((release / "config.json").read_text())
    del config["model"]["cell"]
    (release / "config.json").write_text(json.dumps(config))
    asr = load_speech_release(release)
    assert asr.model_config.cell == "lstm" and isinstance(asr.model.layers[0].fwd, nn.LSTM)
    assert "layers.0.fwd.weight_ih_l0" in asr.model.state_dict()
    feats = torch.randn(2, 9, 8)
    torch.testing.assert_close(asr.model(feats, torch.tensor([9, 5]))[0], model(feats, torch.tensor([9, 5]))[0])
    with pytest.raises(ValueError, match="model.cell must be one of lstm, gru, lstm_peephole, got 'rnn'"):
        AcousticModelConfig(cell="rnn")


def test_onnx_export_of_a_peephole_model_is_refused_in_one_line(tmp_path):
    """The peephole cell's Python time loop would be traced for the example's length only: export refuses."""
    pytest.importorskip("onnx")
    from speechdraw.asr.onnx import export_onnx
    from speechdraw.asr.release import load_speech_release, save_speech_release

    model = small(cell="lstm_peephole")
    release = save_speech_release(tmp_path / "release", model.state_dict(), model.cfg, FeatureConfig(cmvn="utterance"),
                                  None, TokenSet.characters())
    with pytest.raises(ValueError, match=r"^model.cell lstm_peephole cannot be exported to ONNX \(its time loop is "
                                         r"Python\); export a model trained with model.cell lstm or gru$"):
        export_onnx(load_speech_release(release))
    assert sorted(p.name for p in release.iterdir() if "onnx" in p.name) == []  # nothing half-written


@pytest.fixture(scope="module")
def six_utterances(tmp_path_factory):
    from asr_recipe_fixtures import SENTENCES

    return speak_corpus(tmp_path_factory.mktemp("corpus"), SENTENCES[:6])


@needs_espeak
@pytest.mark.parametrize("cell", CELLS)
def test_tiny_recipe_trains_with_each_cell(tmp_path, six_utterances, cell):
    """A few steps of the tiny preset with --model.cell: the loss is finite and falls, the checkpoint holds that
    cell's weights and the resolved config names it."""
    run = tmp_path / "run"
    recipe("train").main(["--preset", "tiny", "--model.cell", cell, "--model.hidden", "32", "--data.train",
                          str(six_utterances), "--data.dev", str(six_utterances), "--data.max_seconds", "6",
                          "--train.lr", "1e-2", "--train.warmup_steps", "1", "--train.epochs", "3",
                          "--train.log_every", "1", "--train.run_dir", str(run)])
    losses = [r["loss"] for r in read_metrics(run)]
    assert len(losses) >= 6 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    assert json.loads((run / "config.json").read_text())["config"]["model"]["cell"] == cell
    from speechdraw.asr.release import load_speech_release

    layer = load_speech_release(run / "release").model.layers[0].fwd
    assert type(layer) is {"lstm": nn.LSTM, "gru": nn.GRU, "lstm_peephole": PeepholeLSTM}[cell]
