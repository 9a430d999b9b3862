"""Length-bucketed batches, sharded across ranks.

`BucketBatchSampler` groups items of similar length so padding stays small. The batch list of an epoch is a pure
function of (seed, epoch); rank r takes batches r, r + W, r + 2W, ... of it, so global step k of a W-rank run sees
exactly the batches that steps k*W .. k*W+W-1 of a one-rank run with W-fold accumulation see. The list is padded (by
repeating its first batches) to a multiple of W so every rank runs the same number of steps: a rank that runs out early
would leave the others blocked in a gradient all-reduce.

Resume does not replay anything: `set_epoch(epoch, start=k)` makes the next iteration begin at this rank's k-th batch.

Evaluation must not count an item twice, so `eval_batches` shards items (not batches) across ranks with no padding;
evaluation runs the un-wrapped model, so ranks may run a different number of batches there.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence


def _pack(indices: Sequence[int], lengths: Sequence[float], batch_size: int | None,
          max_total: float | None) -> list[list[int]]:
    """Greedy packing in the given order; a batch's cost is (longest item) x (items), i.e. its padded size."""
    batches, cur, cur_max = [], [], 0.0
    for i in indices:
        new_max = max(cur_max, lengths[i])
        too_many = batch_size is not None and len(cur) + 1 > batch_size
        too_long = max_total is not None and new_max * (len(cur) + 1) > max_total
        if cur and (too_many or too_long):
            batches.append(cur)
            cur, new_max = [], lengths[i]
        cur.append(i)
        cur_max = new_max
    if cur:
        batches.append(cur)
    return batches


class BucketBatchSampler:
    """Yields lists of dataset indices for this rank.

    Args:
        lengths: one length per item (frames, seconds, tokens...).
        batch_size: at most this many items per batch (None: no cap).
        max_total: at most this padded size (longest item x items) per batch (None: no cap). One of the two is needed.
        num_buckets: items are sorted by length and cut into this many buckets; 1 gives unbucketed random batches.
        shuffle: shuffle within buckets and the batch order each epoch.
        sort_first_epoch: SortaGrad: epoch 0 goes shortest-first.
        drop_last: drop the global tail instead of padding it to a multiple of world_size.
    """

    def __init__(self, lengths: Sequence[float], *, batch_size: int | None = None, max_total: float | None = None,
                 num_buckets: int = 10, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1,
                 sort_first_epoch: bool = False, drop_last: bool = False):
        if batch_size is None and max_total is None:
            raise ValueError("give batch_size or max_total")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} out of range for world size {world_size}")
        self.lengths = [float(x) for x in lengths]
        if not self.lengths:
            raise ValueError("BucketBatchSampler got an empty dataset")
        self.batch_size, self.max_total = batch_size, max_total
        # A bucket smaller than a batch would only make short batches.
        per_bucket = batch_size if batch_size is not None else 1
        self.num_buckets = max(1, min(num_buckets, len(self.lengths) // per_bucket))
        self.shuffle, self.seed, self.sort_first_epoch, self.drop_last = shuffle, seed, sort_first_epoch, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def global_batches(self, epoch: int) -> list[list[int]]:
        """All ranks' batches for `epoch`, padded or trimmed to a multiple of world_size."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = random.Random(self.seed * 1_000_003 + epoch)  # private generator: global RNG state is untouched
        order = sorted(range(len(self.lengths)), key=lambda i: (self.lengths[i], i))
        sortagrad = self.sort_first_epoch and epoch == 0
        if self.num_buckets == 1 and self.shuffle and not sortagrad:
            rng.shuffle(order)  # plain random batching (for comparisons against bucketing)
            batches = _pack(order, self.lengths, self.batch_size, self.max_total)
        else:
            n, k = len(order), self.num_buckets
            bounds = [n * b // k for b in range(k + 1)]
            batches = []
            for b in range(k):
                bucket = order[bounds[b]:bounds[b + 1]]
                if self.shuffle and not sortagrad:
                    rng.shuffle(bucket)
                batches.extend(_pack(bucket, self.lengths, self.batch_size, self.max_total))
            if self.shuffle and not sortagrad:
                rng.shuffle(batches)
        w = self.world_size
        if len(batches) % w:
            if self.drop_last and len(batches) >= w:
                batches = batches[: len(batches) - len(batches) % w]
            else:
                batches = batches + [batches[i % len(batches)] for i in range(-len(batches) % w)]
        self._cache = (epoch, batches)
        return batches

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch and the first of this rank's batches to yield (for mid-epoch resume)."""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        """Batches per rank per epoch (the same on every rank)."""
        return len(self.global_batches(self.epoch)) // self.world_size

    def epoch_lengths(self, epochs: int) -> list[int]:
        """Batches per rank in each of epochs 0..epochs-1. Epochs differ in count (SortaGrad's sorted epoch packs
        tighter than shuffled ones): a schedule's horizon (engine/loop.py total_steps) counts each one."""
        current = self.epoch
        counts = [len(self.global_batches(e)) // self.world_size for e in range(epochs)]
        self.global_batches(current)  # leave the cache on the selected epoch
        return counts

    def __iter__(self) -> Iterator[list[int]]:
        mine = self.global_batches(self.epoch)[self.rank :: self.world_size]
        yield from mine[self.start :]

    def padding_fraction(self, epoch: int = 0) -> float:
        """Fraction of the padded batch area that is padding (how much compute bucketing saves)."""
        real = padded = 0.0
        for batch in self.global_batches(epoch):
            lens = [self.lengths[i] for i in batch]
            real += sum(lens)
            padded += max(lens) * len(lens)
        return 1.0 - real / padded


def eval_batches(lengths: Sequence[float], *, batch_size: int | None = None, max_total: float | None = None,
                 rank: int = 0, world_size: int = 1) -> list[list[int]]:
    """This rank's evaluation batches: every item on exactly one rank (no duplicates), sorted by length."""
    mine = list(range(rank, len(lengths), world_size))
    mine.sort(key=lambda i: (lengths[i], i))
    return _pack(mine, [float(x) for x in lengths], batch_size, max_total)
