"""Per-step batches drawn from the decoded cache, held where the model runs.

Sharding. The rows are split into S shards (row i belongs to shard i mod S; S defaults to the number
of processes). Process r holds only the shards s with s mod W == r, so the cache is sharded by rank.
Each step takes batch_size / S rows from every shard, in an order fixed by (seed, epoch, shard): a
W-process run and a one-process run holding the same S shards see the same global batch, in the
same order (the DDP test relies on it), and a resumed run continues the order exactly.

Placement. The held shards go to the GPU when they fit in `gpu_fraction` of its free memory (the
whole-photo SP cache at 64 px is 11.5 GB; a rank under DDP holds 1/W of it); a batch is then only
indices into them, and the augmentation reads its views straight from there. Otherwise they stay in
pinned host memory, and each batch's canvases are gathered there and copied asynchronously. On CPU
they are a plain tensor read in place.

An epoch is floor(smallest shard / per-shard batch) steps (drop_last, as every method's recipe: the
BatchNorm layers of the heads need full batches).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from training.augment import seed_for
from training.data.cache import DecodedDataset
from training.errors import TrainingError


@dataclass
class Batch:
    source: torch.Tensor  # uint8 (M, S, S, 3) canvases the views are read from, on the device
    index_a: torch.Tensor  # (m,) rows of `source`: image_a (SP) or the image (AP)
    index_b: torch.Tensor  # (m,) rows of `source`: image_b (SP) or the same image again (AP)
    size_a: torch.Tensor  # (m, 2) (w, h) of each photo on its canvas
    size_b: torch.Tensor
    rows: torch.Tensor  # int64 (m,) global row indices, on the CPU
    shard_sizes: list[tuple[int, int]]  # [(shard, rows from it)] in batch order

    @property
    def first(self) -> torch.Tensor:
        """The canvases of view a's photos (a copy: for inspection, not for the step)."""
        return self.source.index_select(0, self.index_a)

    @property
    def second(self) -> torch.Tensor:
        return self.source.index_select(0, self.index_b)


class PairBatches:
    def __init__(self, data: DecodedDataset, batch_size: int, seed: int, device: torch.device,
                 shards: int = 1, rank: int = 0, world_size: int = 1, gpu_fraction: float = 0.5):
        if shards < 1 or shards % world_size:
            raise TrainingError(f"shards: {shards} must be a positive multiple of the number of processes ({world_size})")
        if batch_size < 2 or batch_size % shards:
            raise TrainingError(f"--batch-size {batch_size}: must be at least 2 and a multiple of the number of "
                                f"shards/processes ({shards})")
        self.pairs, self.seed, self.device = data.pairs, seed, device
        self.per_shard = batch_size // shards
        self.held = [s for s in range(shards) if s % world_size == rank]
        total = len(data)
        shard_rows = [np.arange(s, total, shards) for s in self.held]
        smallest = min(len(r) for r in shard_rows)
        self.steps_per_epoch = smallest // self.per_shard
        if self.steps_per_epoch == 0:
            raise TrainingError(f"--batch-size {batch_size}: the dataset has {total} rows, fewer than one batch "
                                f"({self.per_shard} per shard x {shards} shards); lower --batch-size")
        self.rows = np.concatenate(shard_rows)  # global row index of each held row
        self.offsets = np.cumsum([0] + [len(r) for r in shard_rows])[:-1]
        self.shard_lengths = [len(r) for r in shard_rows]
        held_images = torch.from_numpy(np.ascontiguousarray(data.images[self.rows]))
        self.per_row = 2 if self.pairs else 1
        self.sizes = torch.from_numpy(np.asarray(data.sizes)[self.rows].astype(np.int64)).view(-1, self.per_row, 2)
        self.on_gpu = False
        if device.type == "cuda":  # GPU-only placement choice
            free, _ = torch.cuda.mem_get_info(device)
            if held_images.numel() <= gpu_fraction * free:
                held_images, self.on_gpu = held_images.to(device), True
            else:
                held_images = held_images.pin_memory()
            self.sizes = self.sizes.to(device)
        self.images = held_images  # (held rows, [2,] S, S, 3)
        self.labels = torch.from_numpy(np.asarray(data.labels)[self.rows])
        self._epoch, self._orders = -1, []

    @property
    def batch_rows(self) -> int:
        """Rows this process contributes to each step."""
        return self.per_shard * len(self.held)

    def _order(self, epoch: int) -> list[torch.Tensor]:
        if epoch != self._epoch:
            generator = torch.Generator()
            self._orders = []
            for shard, length in zip(self.held, self.shard_lengths):
                generator.manual_seed(seed_for(self.seed, 0, epoch, shard))
                self._orders.append(torch.randperm(length, generator=generator))
            self._epoch = epoch
        return self._orders

    def local_indices(self, step: int) -> torch.Tensor:
        """Indices into the held rows for a step (0-based, counted from the start of training)."""
        epoch, k = divmod(step, self.steps_per_epoch)
        parts = [order[k * self.per_shard:(k + 1) * self.per_shard] + int(offset)
                 for order, offset in zip(self._order(epoch), self.offsets)]
        return torch.cat(parts)

    def batch(self, step: int) -> Batch:
        local = self.local_indices(step)
        if self.device.type == "cuda":  # GPU-only: indices from pinned memory, so the copy does not wait
            local_on_device = local.pin_memory().to(self.device, non_blocking=True)
        else:
            local_on_device = local
        if self.device.type == "cuda" and not self.on_gpu:  # GPU-only: the batch's canvases, copied over
            source = self.images.index_select(0, local).pin_memory().to(self.device, non_blocking=True)
            rows_in_source = torch.arange(local.shape[0], device=self.device)
        else:  # the whole held cache, read in place
            source, rows_in_source = self.images, local_on_device
        source = source.view(-1, *source.shape[-3:])  # pairs: image_a and image_b are consecutive canvases
        sizes = self.sizes.index_select(0, local_on_device)  # (m, per_row, 2)
        if self.pairs:
            index_a, index_b = 2 * rows_in_source, 2 * rows_in_source + 1
        else:
            index_a = index_b = rows_in_source
        rows = torch.from_numpy(self.rows)[local]
        return Batch(source, index_a, index_b, sizes[:, 0], sizes[:, -1], rows,
                     [(s, self.per_shard) for s in self.held])
