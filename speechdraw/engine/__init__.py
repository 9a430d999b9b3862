"""The shared training engine: device and precision, torchrun DDP, the training step, checkpoints, releases, logging.

It knows nothing about speech or images. Modules, in the order a recipe meets them:
    config.py       typed dataclass configs, presets, command-line overrides
    run.py          TrainConfig, setup_run (ranks, device, seeds, run dir), checkpoint_state / restore
    device.py       device selection and the fp32 / bf16 / fp16 precision policy
    distributed.py  torchrun process group, all-reduce helpers
    sampler.py      length-bucketed distributed batch sampler, evaluation sharding
    loop.py         the loop position: epochs, accumulation windows (tails kept), schedule horizon, resume
    step.py         TrainStep: accumulation, global normalisation, clipping, non-finite guard
    schedule.py     warm-up + decay learning-rate schedule
    ema.py          exponential moving average of weights
    checkpoint.py   atomic resume checkpoints, --resume auto, weights-only loading
    release.py      release directories (model.pt + config.json + files) for inference
    download.py     verified (md5/sha256), resumable downloads with a timeout, for corpora
    logger.py       JSONL metrics, progress bar, TensorBoard, curves PNG (plot.py)
    seed.py         seeds, deterministic mode, RNG state capture
"""
