"""speechdraw: BiLSTM-CTC speech recognition and DRAW image generation on one small PyTorch training engine."""

__version__ = "0.1.0"
