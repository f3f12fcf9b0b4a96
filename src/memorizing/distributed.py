"""Data parallelism with PyTorch's own engine: `torchrun --nproc-per-node N -m memorizing train ...`.

The global batch of `data.lanes` lanes is split across ranks: rank r streams lanes [r*B/N, (r+1)*B/N) and owns
their XL caches and kNN memories (memory never crosses ranks). DistributedDataParallel averages gradients; rank
0 alone writes checkpoints (each rank adds its own recurrent state to them), metrics and the final model. gloo on
CPUs, nccl on GPUs. Without torchrun's environment everything here is a no-op for a single process.
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from memorizing.errors import UserError


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def lanes(self, total: int) -> slice:
        """This rank's share of the global lanes."""
        share = total // self.world
        return slice(self.rank * share, (self.rank + 1) * share)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            value = value.clone()
            dist.all_reduce(value)
        return value


def setup(device: str, lanes: int) -> tuple[Ranks, str]:
    """Join the process group that torchrun describes (if any); returns the ranks and this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks(), device
    if lanes % world:
        raise UserError(f"data.lanes = {lanes} cannot be split over {world} processes: make data.lanes a "
                        f"multiple of the number of processes.")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Ranks(dist.get_rank(), world, local_rank), device


def teardown(ranks: Ranks, finished: bool) -> None:
    """Leave the process group; after a finished run, only once every rank is done with it (a rank that destroyed
    its group while another still wrote its last files could abort at exit)."""
    if ranks.world > 1 and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()
