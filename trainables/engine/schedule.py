"""Which examples each worker sees at each micro-step, identical for any data-parallel layout.

Global optimizer step k consumes examples `perm[k*G : (k+1)*G]` of the epoch's permutation (G = micro-batch x
gradient accumulation x workers). Micro-batch number `u = k*W*A + rank*A + a` takes the slice
`perm[u*m : (u+1)*m]`, so one worker with accumulation W*A sees exactly the micro-batches that W workers with
accumulation A see, in the same order. That makes the multi-worker loss trajectory comparable to the 1-worker one
and keeps every RNG draw (the CLReg dropout view) tied to the micro-batch, not to the rank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Layout:
    """Batch geometry of one run: micro-batch m, accumulation A, workers W."""

    micro_batch: int
    grad_accum: int
    world_size: int

    @property
    def global_batch(self) -> int:
        return self.micro_batch * self.grad_accum * self.world_size

    def steps_per_epoch(self, num_examples: int) -> int:
        """Optimizer steps per epoch: one pass over the examples, the last step topped up by wrapping around."""
        return max(1, math.ceil(num_examples / self.global_batch))

    def micro_index(self, step: int, rank: int, accum: int) -> int:
        """Global number of the micro-batch that `rank` runs at (`step`, `accum`)."""
        return (step * self.world_size + rank) * self.grad_accum + accum


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> list[int]:
    """A permutation of range(num_examples) that depends only on (seed, epoch)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_examples, generator=g).tolist()


def micro_batch(perm: list[int], micro_index: int, size: int) -> list[int]:
    """Example indices of micro-batch `micro_index` (wrapping around the permutation at the end of an epoch)."""
    n = len(perm)
    return [perm[(micro_index * size + i) % n] for i in range(size)]


def view_generator(seed: int, epoch: int, micro_index: int) -> torch.Generator:
    """RNG for the random parts of one micro-batch (CLReg's dropout view), the same in every layout."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_033 + micro_index)
