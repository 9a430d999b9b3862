"""Language models for decoding: `ngram.py` (Kneser-Ney estimator -> ARPA, read by KenLM in the beam search) and
`rnnlm.py` (LSTM language model and N-best rescoring)."""
