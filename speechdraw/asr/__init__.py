"""Speech recognition: text normalisation and token sets, audio decoding, manifests, and (later) the BiLSTM-CTC model,
decoders and transcription. Start at `text.py`, `audio.py` and `manifest.py` for the data side."""
