"""Where the training loop stands: epochs, accumulation windows and mid-epoch resume, kept in one place.

A recipe's loop position is a plain dict saved in every checkpoint: `step` (optimiser steps taken), `epoch` (the
epoch being trained), `batch` (this rank's batches of that epoch already trained) and whatever else the recipe keeps
(best score, seconds...). The recipe reads, in straight lines:

    for epoch in epochs(loop, sampler, tc.epochs, max_steps=tc.max_steps):   # the sampler is set to resume here
        loader = DataLoader(train_data, batch_sampler=sampler, ...)
        for window in windows(loader, loop, tc.accum_steps, max_steps=tc.max_steps):   # position already advanced
            result = train_step(window, counts, step=loop["step"])
            ... log, checkpoint ...
        if loop["batch"] < len(sampler):   # max_steps reached mid-epoch
            save(); break
        ... evaluate ...
        loop["epoch"], loop["batch"] = epoch + 1, 0
        save()

Accumulation windows hold `accum_steps` batches, except the last one of an epoch when the epoch's batch count is
not a multiple of it: that tail is trained as a shorter window (TrainStep normalises each window by its own count),
never dropped. So an epoch takes ceil(batches / accum_steps) optimiser steps, and `total_steps` sums exactly that over
the epochs: the learning-rate schedule ends on the run's real last step. Windows always start at a multiple of
accum_steps within an epoch, so a run resumed from any checkpoint regroups the remaining batches exactly as the
uninterrupted run did.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator


def steps_in_epoch(batches: int, accum_steps: int) -> int:
    """Optimiser steps an epoch of `batches` batches takes: the tail window counts as one step."""
    return -(-batches // accum_steps)


def total_steps(sampler, epochs: int, accum_steps: int) -> int:
    """Optimiser steps over epochs 0..epochs-1 (each epoch's own batch count: SortaGrad packs its first tighter).

    The horizon of a learning-rate schedule; `max_steps` only stops a run early, so a stopped run resumes exactly."""
    return sum(steps_in_epoch(n, accum_steps) for n in sampler.epoch_lengths(epochs))


def _stopped(loop: dict, max_steps: int) -> bool:
    return bool(max_steps) and loop["step"] >= max_steps


def epochs(loop: dict, sampler, num_epochs: int, *, max_steps: int = 0) -> Iterator[int]:
    """The epochs still to train, from the resume position; before each, the sampler is pointed at its first batch
    not yet trained (`sampler.set_epoch(epoch, start=loop["batch"])`: resume skips by index, it replays nothing).

    The recipe's body advances `loop["epoch"]` / `loop["batch"]` at the end of an epoch, before its checkpoint."""
    while loop["epoch"] < num_epochs and not _stopped(loop, max_steps):
        sampler.set_epoch(loop["epoch"], start=loop["batch"])
        yield loop["epoch"]


def windows(batches: Iterable, loop: dict, accum_steps: int, *, max_steps: int = 0) -> Iterator[list]:
    """Group one epoch's batches into accumulation windows of accum_steps (the epoch's tail: fewer).

    `loop["step"]` and `loop["batch"]` are advanced before each window is handed out, so a checkpoint written after
    the recipe's train_step holds the position after that window. Stops once `max_steps` steps are reached (without
    drawing another batch from `batches`)."""
    it = iter(batches)
    while not _stopped(loop, max_steps):
        window = list(itertools.islice(it, accum_steps))
        if not window:
            return
        loop["step"] += 1
        loop["batch"] += len(window)
        yield window
