"""``python -m autosr`` (and ``torchrun -m autosr``): the same command line as the ``autosr`` script."""

import logging
import os
import sys

from autosr.cli import app


def _launched_rank() -> bool:
    """One of several processes started by torchrun or autosr's own launcher."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


if __name__ == "__main__":
    try:
        app(prog_name="autosr")
    except SystemExit as exc:
        if _launched_rank() and exc.code in (0, None):
            # A rank whose run ended well leaves without the interpreter's C++ teardown. After a DDP step torch
            # keeps the gloo process group (and its threads) alive past destroy_process_group
            # (benchmarks/ddp_keeps_gloo_alive.py); torn down at exit, a joinable thread aborted 1 rank in 4
            # with torch 2.14.1 ("terminate called without an active exception"), so the launcher reported a
            # finished run as failed (docs/reliability.md). Everything the run wrote is closed by now.
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        raise
