"""Kill a short CPU training run with SIGKILL at random points, resume it each time, and check that
the final weights equal an uninterrupted run's with the same seed.

    python benchmarks/kill_resume.py                      # 20 kills, ~4 min on a 2-core CPU
    python benchmarks/kill_resume.py --kills 40 --seed 7 --work runs/kr --json kr.json

One tiny config (12 synthetic pairs 128×96, paragonsr2_nano, batch 4, patch 32, a checkpoint every 10
iterations, no validation) is trained twice into the work folder: `straight/` without a break, and
`killed/`, which is started, SIGKILLed and started again until `--kills` kills are done, then left to
finish. Every start of `killed/` after the first resumes from the newest complete checkpoint (a killed
run repeats the steps since then) and must take over the lock the killed run left behind.

About half the kills (chosen with `random.Random(seed)`) watch `checkpoints/` and `models/` and fire
the moment the k-th temp file of a save (`.<name>.<hex>.tmp`, see autosr/fsutil.py) appears, so they
land inside checkpoint writes; the rest fire at a random time (some during start-up, most a few
dozen steps into training). A kill counts as "during a write" when a temp file is still there after
the process is gone. Printed: kills, kills during a write, resumes, failed starts (a broken checkpoint
loaded, a lock refusing the resume, any other error), stale-lock takeovers, leftover temp files, and
the max abs difference of the final weights; exit 1 on a mismatch or a failed start.

POSIX only (SIGKILL, process groups): exit 2 on Windows. No fixed ports or /tmp names.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NAME = "kr"
FSUTIL_TMP = re.compile(r"^\..+\.[0-9a-f]+\.tmp$")  # autosr.fsutil.temp_name_for: .<name>.<hex>.tmp
PROGRESS = re.compile(r"^\[\d+/\d+\]")
RESUMED = re.compile(r"resumed from iteration (\d+)")
TAKEOVER = "took over a stale lock"
LOCKED = "another autosr train"


def make_data(work: Path, total_iter: int, freq: int, seed: int, name: str = NAME) -> Path:
    """12 generated pairs and a short CPU config (nano, batch 4, no validation, a checkpoint every `freq`)."""
    from autosr.synthetic import write_pairs

    hr, lr = write_pairs(work / "pairs", 12, scale=2, size=(128, 96), seed=seed)
    cfg = work / "cfg.yml"
    sets = [f"train.total_iter={total_iter}", "datasets.train.lq_size=32", "datasets.train.batch_size_per_gpu=4",
            "datasets.train.accum_iter=1", "train.warmup_iter=10", f"logger.save_checkpoint_freq={freq}",
            f"logger.print_freq={freq}", "val.val_enabled=false", f"manual_seed={seed}"]
    cmd = [sys.executable, "-m", "autosr", "init", "--gt", str(hr), "--lq", str(lr), "-o", str(cfg), "--arch", "paragonsr2_nano",
           "--name", name, "--no-calibrate", "--force"]
    for s in sets:
        cmd += ["--set", s]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return cfg


class Run:
    """One `autosr train` process in its own session; stderr+stdout collected by a thread, with the
    time of the first training progress line."""

    def __init__(self, cfg: Path, out: Path, log: Path) -> None:
        self.started = time.monotonic()
        self.training_at: float | None = None
        self.lines: list[str] = []
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "autosr", "train", str(cfg), "--out", str(out)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if self.training_at is None and (PROGRESS.match(line) or RESUMED.search(line)):
                self.training_at = time.monotonic()
            self.lines.append(line)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the whole session (data workers too, if any)

    def finish(self, timeout: float | None = None) -> int:
        rc = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        self.log.write_text("".join(self.lines), encoding="utf-8")
        return rc

    @property
    def text(self) -> str:
        return "".join(self.lines)


def temp_files(run_dir: Path) -> list[str]:
    found = []
    for sub in ("checkpoints", "models"):
        with contextlib.suppress(FileNotFoundError):
            found += [f"{sub}/{e.name}" for e in os.scandir(run_dir / sub) if FSUTIL_TMP.match(e.name)]
    return found


def max_diff(a_path: Path, b_path: Path) -> float:
    from autosr.safetensors_io import load_safetensors

    a, b = load_safetensors(a_path), load_safetensors(b_path)
    if a.keys() != b.keys():
        return float("inf")
    return max(((a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.0) for k in a)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=None, help="work folder (default: a new temporary one, kept)")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    p.add_argument("--total-iter", type=int, default=600)
    p.add_argument("--save-freq", type=int, default=10)
    args = p.parse_args()
    if os.name != "posix":
        print("kill_resume.py needs POSIX (SIGKILL, process groups); not supported on Windows", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    work = args.work or Path(tempfile.mkdtemp(prefix="autosr-kill-resume-"))
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    cfg = make_data(work, args.total_iter, args.save_freq, args.seed)
    final = f"net_g_{args.total_iter}.safetensors"

    t0 = time.monotonic()
    ref = Run(cfg, work / "straight", logs / "straight.log")
    if ref.finish() != 0:
        print(ref.text[-3000:], file=sys.stderr)
        print("the uninterrupted run failed", file=sys.stderr)
        return 1
    straight_s = time.monotonic() - t0
    startup_s = (ref.training_at or t0) - ref.started  # to the first progress line (print_freq iterations in)
    step_s = max(straight_s - startup_s, 0.1) / args.total_iter
    print(f"uninterrupted run: {straight_s:.1f} s ({startup_s:.1f} s to the first progress line, {1 / step_s:.0f} it/s)")

    run_dir = work / "killed" / NAME
    stats = {"kills": 0, "kills_in_write": 0, "write_kills_aimed": 0, "random_kills": 0, "starts": 0, "resumes": 0,
             "failed_starts": 0, "lock_refusals": 0, "stale_locks_at_start": 0, "takeovers_reported": 0,
             "broken_checkpoint_skipped": 0, "finished_early": False, "resume_iters": [], "kill_log": []}
    done = False
    while not done:
        attempt = stats["starts"]
        lock_left = (run_dir / ".lock").exists()
        stats["stale_locks_at_start"] += lock_left
        run = Run(cfg, work / "killed", logs / f"attempt_{attempt:02d}.log")
        stats["starts"] += 1
        killing = stats["kills"] < args.kills
        how, seen = "", set()
        if killing:
            aim_write = rng.random() < 0.5
            if aim_write:  # fire at the k-th temp file of a save: 3 per checkpoint (net_g, net_g_ema, state)
                k = rng.randint(1, 9)
                how = f"at temp file #{k}"
                while run.proc.poll() is None:
                    seen.update(temp_files(run_dir))
                    if len(seen) >= k:
                        run.kill()
                        break
                    time.sleep(0.0002)
            else:
                if rng.random() < 0.2:  # during start-up (import, data scan, resume load, lock)
                    delay = rng.uniform(0, startup_s)
                    how = f"{delay:.2f} s after start"
                    deadline = run.started + delay
                else:  # some dozens of steps into training
                    delay = rng.uniform(0, 50 * step_s)
                    how = f"{delay:.2f} s after training began"
                    while run.proc.poll() is None and run.training_at is None and time.monotonic() < run.started + 10 * startup_s:
                        time.sleep(0.005)
                    deadline = (run.training_at or time.monotonic()) + delay
                while run.proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.001)
                if run.proc.poll() is None:
                    run.kill()
            rc = run.finish(timeout=300)
        else:
            rc = run.finish(timeout=600)
        text = run.text
        m = RESUMED.search(text)
        if m:
            stats["resumes"] += 1
            stats["resume_iters"].append(int(m.group(1)))
        stats["takeovers_reported"] += TAKEOVER in text
        stats["broken_checkpoint_skipped"] += "falling back" in text
        if rc == -9:  # our SIGKILL
            left = temp_files(run_dir)
            stats["kills"] += 1
            stats["kills_in_write"] += bool(left)
            stats["write_kills_aimed" if how.startswith("at temp") else "random_kills"] += 1
            stats["kill_log"].append({"attempt": attempt, "how": how, "resumed_from": int(m.group(1)) if m else None,
                                      "temp_files_at_kill": left, "lock_left_before": lock_left})
            continue
        if rc == 0:
            if killing:
                stats["finished_early"] = True  # the run reached total_iter before this kill fired
            done = True
            continue
        stats["failed_starts"] += 1
        if LOCKED in text:
            stats["lock_refusals"] += 1
        print(f"start {attempt} exited {rc}:\n{text[-2000:]}", file=sys.stderr)
        if stats["failed_starts"] >= 5:
            break
        time.sleep(61 if LOCKED in text else 1)  # an unreadable lock younger than 60 s is respected

    leftovers = temp_files(run_dir)
    a, b = work / "straight" / NAME / "models", run_dir / "models"
    diffs = {}
    for name in (final, final.replace("net_g_", "net_g_ema_")):
        if (a / name).is_file():
            diffs[name] = max_diff(a / name, b / name) if (b / name).is_file() else float("inf")
    worst = max(diffs.values()) if diffs else float("inf")
    ok = worst <= 1e-6 and stats["failed_starts"] == 0
    result = {**{k: v for k, v in stats.items() if k != "kill_log"}, "requested_kills": args.kills, "seed": args.seed,
              "total_iter": args.total_iter, "save_freq": args.save_freq, "uninterrupted_s": round(straight_s, 1),
              "elapsed_s": round(time.monotonic() - t0, 1), "leftover_temp_files": leftovers,
              "max_abs_diff": diffs, "ok": ok, "work": str(work), "kill_log": stats["kill_log"]}
    print(f"kills: {stats['kills']}/{args.kills} ({stats['write_kills_aimed']} aimed at a save, {stats['random_kills']} at random); "
          f"during a write (temp file present at kill): {stats['kills_in_write']}")
    print(f"starts: {stats['starts']}, resumes: {stats['resumes']} (from iterations {stats['resume_iters']})")
    print(f"stale lock left at a start: {stats['stale_locks_at_start']}, takeovers reported: {stats['takeovers_reported']}, "
          f"lock refusals: {stats['lock_refusals']}")
    print(f"failed starts (broken checkpoint loaded, lock refused, other): {stats['failed_starts']}; "
          f"unreadable checkpoints skipped: {stats['broken_checkpoint_skipped']}; leftover temp files: {len(leftovers)}")
    if stats["finished_early"]:
        print("note: the run finished before every kill fired: raise --total-iter", file=sys.stderr)
    for name, d in diffs.items():
        print(f"max abs diff vs uninterrupted, {name}: {d:.3g}")
    print(f"{'OK' if ok else 'MISMATCH'}: work folder {work} ({result['elapsed_s']} s)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
