"""Why a finished two-process run could die at exit: after a DistributedDataParallel step, the gloo process
group's threads outlive `destroy_process_group()`, even with the DDP module deleted and collected (torch
keeps the group referenced from C++); they are torn down with the interpreter, where a still-joinable
std::thread aborts the process ("terminate called without an active exception", SIGABRT) now and then.
This prints each rank's threads after destroying the group, with and without a DDP step before:

    python -m torch.distributed.run --standalone --nproc-per-node 2 benchmarks/ddp_keeps_gloo_alive.py
    python -m torch.distributed.run --standalone --nproc-per-node 2 benchmarks/ddp_keeps_gloo_alive.py --no-ddp

Linux only (it reads /proc/self/task). Seen with torch 2.14.1: gloo_tcp_loop and two pt_gloo_runloop threads
remain after a DDP step, none without one. autosr's ranks therefore leave with os._exit after a run that
ended well (autosr/__main__.py).
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist


def threads() -> list[str]:
    return [Path(f"/proc/self/task/{t}/comm").read_text().strip() for t in sorted(os.listdir("/proc/self/task"))]


def main() -> None:
    dist.init_process_group("gloo")
    if "--no-ddp" in sys.argv:
        tensor = torch.ones(3)
        dist.all_reduce(tensor)
    else:
        model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3, 3))
        model(torch.ones(2, 3)).sum().backward()
        del model
    dist.barrier()
    gc.collect()
    dist.destroy_process_group()
    gc.collect()
    print(f"rank {os.environ.get('RANK')}: threads after destroy_process_group: {threads()}", flush=True)


if __name__ == "__main__":
    main()
