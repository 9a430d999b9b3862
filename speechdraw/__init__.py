"""speechdraw: BiLSTM-CTC speech recognition and DRAW image generation on one small PyTorch training engine."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # speechdraw.transcribe / speechdraw.Transcriber, imported on first use: `import speechdraw` (and the CLI's
    # --help) must not import torch.
    if name in ("transcribe", "Transcriber"):
        from speechdraw.asr import transcribe as _t

        return getattr(_t, name)
    if name == "load_model":
        from speechdraw.models import load_model

        return load_model
    raise AttributeError(f"module 'speechdraw' has no attribute {name!r}")


__all__ = ["Transcriber", "__version__", "load_model", "transcribe"]
