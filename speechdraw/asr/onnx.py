"""The acoustic model as ONNX, run by onnxruntime: `recipes/asr/export.py --onnx` writes <release>/model.onnx and
`speechdraw transcribe --backend onnxruntime` (Transcriber(..., backend="onnxruntime")) runs it.

    export_onnx(asr)                        # asr: SpeechModel (load_speech_release) -> <release>/model.onnx
    onnx_model = OnnxAcousticModel(asr)     # loads <release>/model.onnx, checks it computes what the weights do
    log_probs, out_lens = onnx_model.log_probs(waves)   # [(S_i,)] -> (B, T', V), (B,): as SpeechModel.log_probs

The graph is AcousticModel alone, from features to CTC log-probabilities (opset 17, fp32):
    inputs   feats      (B, T, n_mels) float32  normalised log-mel frames; frames past a length may hold anything
             feat_lens  (B,) int64              frames of each utterance
    outputs  log_probs  (B, T', V) float32      T' = ceil(T / stack); output 0 is the CTC blank, i + 1 is token i
             out_lens   (B,) int64              ceil(feat_lens / stack)
B and T are dynamic: any batch of any lengths, each utterance's outputs independent of what pads it (the stacking
pads T to a multiple of stack with tensor ops and the backward LSTMs reverse every sequence within its own length,
both traced into the graph; speechdraw.asr.model).

The feature front end (log-mel + CMVN, speechdraw.asr.features) stays in PyTorch, before the graph: torch.stft's
complex output does not export ("STFT does not currently support complex types"). Another runtime computes the same
features from config.json's "features" (sample rate, n_fft = next power of two >= win, hop, n_mels, center=False, HTK
mel bank without normalisation, log(power + 1e-6)) and feature_stats.json (mean/std per band, for cmvn "global").

onnx is needed to export and onnxruntime to run: the optional extra speechdraw[onnx].
"""

from __future__ import annotations

import importlib
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from speechdraw.asr.features import pad_waves
from speechdraw.asr.release import SpeechModel
from speechdraw.engine.release import ReleaseError

ONNX_FILE = "model.onnx"
OPSET = 17
INPUTS, OUTPUTS = ("feats", "feat_lens"), ("log_probs", "out_lens")
BACKENDS = ("torch", "onnxruntime")
# Largest log-probability difference between model.onnx and the release's weights on the load-time probe: far above
# fp32 export noise (~1e-6) and an fp16-stored archive's rounding (~5e-3), far below what other weights give (~1).
PROBE_TOLERANCE = 0.05


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ValueError(f"{name} is not installed: pip install 'speechdraw[onnx]'") from e


def _probe(asr: SpeechModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Two seeded utterances of different lengths, (2, T, n_mels), (2,): the export's example and the load check.

    T is a multiple of stack, the case where the stacking pads nothing: the graph still pads other lengths only
    because AcousticModel pads with shape arithmetic the tracer records rather than an `if` it would freeze."""
    k, n_mels = asr.model_config.stack, asr.model_config.n_mels
    T = 6 * k
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, T, n_mels, generator=g), torch.tensor([T, T - k - 1])


def export_onnx(asr: SpeechModel, path: str | os.PathLike | None = None) -> Path:
    """Write asr.model as ONNX (default: <release>/model.onnx), atomically; returns the path."""
    _import("onnx")  # torch.onnx.export needs it
    path = Path(path) if path is not None else asr.dir / ONNX_FILE
    model = asr.model.cpu().eval()
    feats, lens = _probe(asr)
    tmp = path.with_name(path.name + ".tmp")
    # The TorchScript-based exporter (dynamo=False): it traces the plain LSTMs into ONNX LSTM ops, and the model's
    # length arithmetic on traced shapes stays symbolic, so B and T are dynamic.
    with warnings.catch_warnings():
        # The tracer warns of every Python value taken from a shape, the LSTM exporter of batch sizes other than the
        # example's: tests/test_asr_onnx.py runs the graph on other lengths and batch sizes against PyTorch.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        torch.onnx.export(model, (feats, lens), str(tmp), dynamo=False, opset_version=OPSET,
                          input_names=list(INPUTS), output_names=list(OUTPUTS),
                          dynamic_axes={"feats": {0: "batch", 1: "frames"}, "feat_lens": {0: "batch"},
                                        "log_probs": {0: "batch", 1: "steps"}, "out_lens": {0: "batch"}})
    model.to(asr.device)
    os.replace(tmp, path)
    return path


class OnnxAcousticModel:
    """<release>/model.onnx in an onnxruntime session on the CPU, fed by the release's PyTorch feature front end.

    threads: onnxruntime's intra-op threads (default: torch.get_num_threads(), so --threads holds for both)."""

    def __init__(self, asr: SpeechModel, path: str | os.PathLike | None = None, threads: int | None = None):
        ort = _import("onnxruntime")
        if asr.device.type != "cpu":
            raise ValueError(f"the onnxruntime backend runs on the CPU: use device cpu, not {asr.device}")
        self.asr = asr
        self.path = Path(path) if path is not None else asr.dir / ONNX_FILE
        if not self.path.is_file():
            raise ReleaseError(f"{self.path}: no ONNX model in the release: write it with "
                               f"python recipes/asr/export.py --release {asr.dir} --onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for unreadable or invalid files
            raise ReleaseError(f"{self.path}: not a loadable ONNX model ({str(e).splitlines()[0]})") from e
        names = tuple(i.name for i in self.session.get_inputs())
        if names != INPUTS:
            raise ReleaseError(f"{self.path}: inputs {names}, expected {INPUTS}: not an export of this model")
        feats, lens = _probe(asr)
        with torch.no_grad():
            ref, _ = asr.model(feats, lens)
        diff = float((self(feats, lens)[0] - ref).abs().max())
        if not diff <= PROBE_TOLERANCE:
            raise ReleaseError(f"{self.path}: does not compute what the release's weights do (log-probabilities "
                               f"differ by {diff:.3g}): export it again with python recipes/asr/export.py --release "
                               f"{asr.dir} --onnx")

    def __call__(self, feats: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, n_mels), (B,) -> (B, T', V) fp32 log-probabilities, (B,) output lengths, as AcousticModel."""
        log_probs, out_lens = self.session.run(
            list(OUTPUTS), {"feats": np.ascontiguousarray(feats.detach().cpu().float().numpy()),
                            "feat_lens": lens.detach().cpu().to(torch.int64).numpy()})
        return torch.from_numpy(log_probs), torch.from_numpy(out_lens)

    @torch.no_grad()
    def log_probs(self, waves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """[(S_i,)] at the release's sample rate -> (B, T', V) log-probabilities, (B,) lengths."""
        padded, lens = pad_waves(waves)
        feats, flens = self.asr.features(padded, lens)  # (B, T, n_mels), (B,): PyTorch, see the module docstring
        return self(feats, flens)
