"""A real full disk: `autosr train --out` on a 2 MiB tmpfs that fills up while the run trains.

    sudo python benchmarks/disk_full_tmpfs.py            # ~1 min on a 2-core CPU; needs root (mount)
    sudo python benchmarks/disk_full_tmpfs.py --size 4m --work /tmp/dft

A tiny CPU run (12 synthetic pairs, paragonsr2_nano, a checkpoint every 4 iterations, no validation) trains
into a fresh tmpfs. Once its first checkpoint is there, a ballast file on the same tmpfs grows until the
disk is full, so the run's next write (a checkpoint, a model, or a line of metrics.jsonl/events.jsonl)
finds no space. Checked: exit code 1; the last line of output is one line naming a file under the run
folder and "no space"; every JSONL file of the run is whole (each line parses, no half line); the newest
checkpoint loads; no temp files are left. Then the ballast is deleted and `autosr train` resumes from that
checkpoint (exit 0). The tmpfs is unmounted in any case. Exit 0 when every check holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NAME = "df"


def make_config(work: Path, total_iter: int) -> Path:
    """kill_resume's short CPU run, a checkpoint every 4 iterations."""
    from kill_resume import make_data  # benchmarks/ is on sys.path when this runs as a script

    return make_data(work, total_iter, freq=4, seed=1, name=NAME)


def fill(disk: Path, run_dir: Path, stop: threading.Event) -> None:
    """After the first checkpoint: grow a ballast file in 16 KiB writes until the disk refuses one."""
    while not stop.is_set() and not list((run_dir / "checkpoints").glob("state_*.pt")):
        time.sleep(0.05)
    with open(disk / "ballast", "wb") as f:
        while not stop.is_set():
            try:
                f.write(b"\0" * 16384)
                f.flush()
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    return
                raise


def jsonl_whole(path: Path) -> bool:
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        return False
    try:
        for line in data.splitlines():
            json.loads(line)
    except ValueError:
        return False
    return True


def train(cfg: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "400", "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, "-m", "autosr", "train", str(cfg), "--out", str(out), *extra],
                          capture_output=True, text=True, env=env, timeout=600)


def check(disk: Path, cfg: Path) -> dict[str, bool]:
    from autosr.fsutil import is_temp_name
    from autosr.train import checkpoint as ckpt

    run_dir = disk / NAME
    stop = threading.Event()
    filler = threading.Thread(target=fill, args=(disk, run_dir, stop), daemon=True)
    filler.start()
    try:
        result = train(cfg, disk)
    finally:
        stop.set()
        filler.join(timeout=10)
    output = (result.stdout + result.stderr).strip()
    last = output.splitlines()[-1] if output else ""
    print(f"$ autosr train {cfg.name} --out {disk}  → exit {result.returncode}")
    print(f"  last line: {last}")
    store = ckpt.CheckpointStore(run_dir)
    saved = store.iterations()
    loads = False
    if saved:
        state = ckpt.load_training_state(store.state_path(saved[-1]))
        loads = state["iteration"] == saved[-1]
        print(f"  newest checkpoint: {store.state_path(saved[-1]).name} (loads: {loads})")
    jsonl = {p.name: jsonl_whole(p) for p in sorted(run_dir.glob("*.jsonl"))}
    print(f"  JSONL files whole: {jsonl}")
    temps = [str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if is_temp_name(p.name)]
    print(f"  temp files left: {temps or 'none'}")
    (disk / "ballast").unlink(missing_ok=True)
    resumed = train(cfg, disk, "--set", f"train.total_iter={(saved[-1] if saved else 0) + 4}") if saved else None
    if resumed is not None:
        said = [x for x in (resumed.stdout + resumed.stderr).splitlines() if "resumed from" in x]
        print(f"  after freeing space: autosr train → exit {resumed.returncode}; {said[0].strip() if said else 'no resume line'}")
    return {
        "exit code 1": result.returncode == 1,
        "one line naming a file and no space": last.startswith("error: ") and str(run_dir) in last and "no space" in last,
        "JSONL files whole": bool(jsonl) and all(jsonl.values()),
        "previous checkpoint loads": loads,
        "no temp files": not temps,
        "resumes after freeing space": resumed is not None and resumed.returncode == 0,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="2m", help="tmpfs size (mount -o size=…)")
    p.add_argument("--work", type=Path, default=None, help="work folder for the data and config (default: a new temporary one)")
    p.add_argument("--total-iter", type=int, default=2000, help="long enough that the disk fills first")
    args = p.parse_args()
    if sys.platform != "linux" or os.geteuid() != 0:
        print("disk_full_tmpfs.py needs Linux and root (it mounts a tmpfs)", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="autosr-disk-full-"))
    work.mkdir(parents=True, exist_ok=True)
    cfg = make_config(work, args.total_iter)
    disk = work / "disk"
    disk.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={args.size}", "tmpfs", str(disk)], check=True)
    try:
        results = check(disk, cfg)
    finally:
        subprocess.run(["umount", str(disk)], check=False)
    for name, ok in results.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
