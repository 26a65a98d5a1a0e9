"""torch.distributed for tk: torchrun launches the workers, the shared loop does DDP.

``tk train MODEL --nproc N`` runs PyTorch's own launcher (``torch.distributed.run``,
i.e. torchrun) on this machine; on several machines users call torchrun themselves::

    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d \\
        --rdzv-endpoint HOST:29400 -m toolkit train circle --out runs/circle/multi

Each attempt of a job (torchrun restarts *all* workers after a failure) builds its
process group on a store prefixed with the attempt number: the agent's store keeps
the previous attempt's keys, and a plain ``init_process_group`` trips over them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from toolkit.errors import TkError, UsageError

RUN_DIR_KEY = "tk/run_dir"


def requested() -> bool:
    """True inside a torchrun worker (torchrun sets RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


@dataclass
class DistContext:
    """This process's place in a distributed job."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    restart_count: int
    store: Any  # the job's base store (survives restarts when torchrun's agent hosts it)

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that writes files or prints."""
        return self.rank == 0

    def all_reduce_sum(self, tensor: Any) -> Any:
        """Sum a tensor across ranks in place and return it."""
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_reduce_max(self, tensor: Any) -> Any:
        """Max of a tensor across ranks in place."""
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order."""
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        """Wait for every rank."""
        import torch.distributed as dist

        dist.barrier()

    def close(self) -> None:
        """Tear the process group down."""
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def init_from_env(device_type: str) -> DistContext:
    """Join the job torchrun started (env: RANK, WORLD_SIZE, MASTER_ADDR/PORT, ...).

    Backend: nccl for CUDA, gloo for CPU.
    """
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    backend = "nccl" if device_type == "cuda" else "gloo"
    addr = os.environ.get("MASTER_ADDR", "127.0.0.1")
    port = int(os.environ["MASTER_PORT"])
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
    store = dist.TCPStore(
        addr,
        port,
        world,
        is_master=(rank == 0 and not agent_store),
        timeout=timedelta(seconds=120),
        wait_for_workers=False,
    )
    attempt_store = dist.PrefixStore(f"tk/attempt{restart}", store)
    dist.init_process_group(
        backend, store=attempt_store, rank=rank, world_size=world, timeout=timedelta(seconds=300)
    )
    return DistContext(rank, world, local_rank, backend, restart, store)


def store_get(store: Any, key: str) -> str | None:
    """A key of the base store, or None (never blocks)."""
    try:
        if store.check([key]):
            return store.get(key).decode()
    except Exception:
        return None
    return None


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for the rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def strip_launcher_args(
    argv: list[str], options: tuple[str, ...] = ("--nproc", "--max-restarts")
) -> list[str]:
    """The worker's argv: the user's ``tk train`` arguments minus the launcher's own
    (or minus ``options``, each with its value)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in options:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def launch(worker_argv: list[str], nproc: int, max_restarts: int = 0) -> int:
    """Run ``python -m toolkit <worker_argv>`` in ``nproc`` processes through torchrun.

    Single node: the rendezvous listens on 127.0.0.1 (MASTER_ADDR) at a free port.
    Returns torchrun's exit code.
    """
    if nproc < 1:
        raise UsageError(f"--nproc must be at least 1, got {nproc}")
    if max_restarts < 0:
        raise UsageError(f"--max-restarts must not be negative, got {max_restarts}")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(nproc),
        "--max-restarts",
        str(max_restarts),
        "--master-addr",
        os.environ.get("MASTER_ADDR", "127.0.0.1"),
        "--master-port",
        str(free_port()),
        "--monitor-interval",
        "0.5",
        "-m",
        "toolkit",
        *worker_argv,
    ]
    env = dict(os.environ)
    # One intra-op thread per worker unless asked otherwise: N workers on N cores.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    env.setdefault("LOGLEVEL", "WARNING")
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 130


class WorkerError(TkError):
    """An error rank 0 found, re-raised on every rank with the same exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
