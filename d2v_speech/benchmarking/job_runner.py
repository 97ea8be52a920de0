"""Run an experiment's jobs as subprocesses, a few side by side, each on its own threads.

A :class:`Job` is a list of commands (built when the job starts, so it can use what earlier jobs
measured) and a ``done_file``: the JSON record the job leaves when every command succeeded. A
re-run skips jobs whose record exists and restarts the others, whose recipes resume from their
own checkpoints, so an experiment killed at any point loses at most the unfinished commands'
progress since their last checkpoint.

CPU time is measured per command with ``os.wait4``: user + system seconds of the command and of
every descendant it waited for (data-loader workers included), the budget unit of the
experiments. While a command runs, the CPU time of its process tree is written every few seconds
to ``cpu_progress.json`` beside the done file; a finished command, or the last progress of one
that was killed, goes into ``cpu_ledger.jsonl``, so the CPU time a job reports is everything it
spent over all its attempts, resumed ones included.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from d2v_speech.atomic_files import write_text_atomic

__all__ = ["Job", "JobFailed", "CommandUsage", "run_command", "run_jobs"]

logger = logging.getLogger(__name__)


class JobFailed(RuntimeError):
    """A command of a job exited with a non-zero status."""


@dataclass(frozen=True)
class CommandUsage:
    cpu_seconds: float
    wall_seconds: float


@dataclass
class Job:
    """One unit of an experiment.

    ``commands()`` returns the argument lists to run in order; ``finish(usages)`` turns their
    measured usage (and whatever the commands wrote) into the record saved as ``done_file``.
    ``after`` names the jobs that must be done first.
    """

    name: str
    commands: Callable[[], Sequence[Sequence[str]]]
    done_file: Path
    log_file: Path
    finish: Callable[[list[CommandUsage]], dict[str, Any]] = lambda usages: {}
    after: tuple[str, ...] = ()
    record: dict[str, Any] | None = field(default=None, init=False)

    def load(self) -> dict[str, Any] | None:
        """The saved record, or None when the job has not finished."""
        if self.record is None and self.done_file.is_file():
            self.record = json.loads(self.done_file.read_text(encoding="utf-8"))
        return self.record


def _die_with_parent() -> None:
    # Linux prctl(PR_SET_PDEATHSIG, SIGKILL): a killed driver takes its commands with it, so a
    # resumed driver never finds a stale copy of a recipe still writing into the same folder.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process and all its live descendants, each with the
    children it has already reaped (Linux /proc)."""
    parents, times = {}, {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        # after the command name: state ppid ... utime(12) stime(13) cutime(14) cstime(15)
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = sum(int(f) for f in fields[11:15]) / tick
    total, frontier = 0.0, [pid]
    while frontier:
        current = frontier.pop()
        total += times.get(current, 0.0)
        frontier += [child for child, parent in parents.items() if parent == current]
    return total


def _watch(process: subprocess.Popen, progress_file: Path, start: float, every: float) -> None:
    while process.returncode is None:
        cpu = tree_cpu_seconds(process.pid)
        progress = {"cpu_seconds": cpu, "wall_seconds": time.monotonic() - start}
        write_text_atomic(progress_file, json.dumps(progress) + "\n")
        time.sleep(every)


def run_command(
    command: Sequence[str],
    log_file: Path,
    env: dict[str, str],
    progress_file: Path | None = None,
    progress_every: float = 10.0,
) -> CommandUsage:
    """Run one command, stdout and stderr appended to ``log_file``; raise JobFailed on error.

    With ``progress_file``, the CPU time so far is rewritten there every ``progress_every``
    seconds while the command runs.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log_file, "a", encoding="utf-8") as log:
        log.write(f"\n$ {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(
            list(command), stdout=log, stderr=subprocess.STDOUT, env=env,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        if progress_file is not None:
            watcher = threading.Thread(
                target=_watch, args=(process, progress_file, start, progress_every), daemon=True
            )
            watcher.start()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    if process.returncode != 0:
        tail = log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        raise JobFailed(
            f"{' '.join(command[:3])} ... exited with {process.returncode}; "
            f"log {log_file}:\n" + "\n".join(tail)
        )
    return CommandUsage(usage.ru_utime + usage.ru_stime, wall)


def _append(path: Path, entry: dict) -> None:
    with open(path, "a", encoding="utf-8") as ledger:
        ledger.write(json.dumps(entry) + "\n")


def _execute(job: Job, env: dict[str, str]) -> dict[str, Any]:
    ledger = job.done_file.with_name("cpu_ledger.jsonl")
    progress = job.done_file.with_name("cpu_progress.json")
    job.done_file.parent.mkdir(parents=True, exist_ok=True)
    if progress.is_file():  # an earlier attempt was killed: what it spent still counts
        _append(ledger, {"interrupted": True, **json.loads(progress.read_text(encoding="utf-8"))})
        progress.unlink()
    usages = []
    for index, command in enumerate(job.commands()):
        usage = run_command(command, job.log_file, env, progress)
        _append(ledger, {"command": index, "cpu_seconds": usage.cpu_seconds,
                         "wall_seconds": usage.wall_seconds})  # fmt: skip
        progress.unlink(missing_ok=True)
        usages.append(usage)
    spent = [json.loads(line) for line in ledger.read_text(encoding="utf-8").splitlines()]
    record = {
        "job": job.name,
        "cpu_seconds": round(sum(e["cpu_seconds"] for e in spent), 2),
        "wall_seconds": round(sum(e["wall_seconds"] for e in spent), 2),
        "cpu_seconds_last_attempt": round(sum(u.cpu_seconds for u in usages), 2),
        "interrupted_attempts": sum(1 for e in spent if e.get("interrupted")),
        **job.finish(usages),
    }
    write_text_atomic(job.done_file, json.dumps(record, indent=2, sort_keys=True) + "\n")
    job.record = record
    return record


def run_jobs(
    jobs: Sequence[Job],
    parallel: int,
    threads: int,
    on_done: Callable[[Job], None] = lambda job: None,
) -> list[str]:
    """Run every unfinished job, at most ``parallel`` at once with ``threads`` threads each.

    Jobs start in list order as soon as their ``after`` jobs are done. A failed job is logged
    and its dependants are skipped; the others go on. Returns the names of failed or skipped
    jobs (empty when everything finished).
    """
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        raise ValueError("job names must be unique")
    unknown = {dep for job in jobs for dep in job.after} - set(names)
    if unknown:
        raise ValueError(f"jobs depend on unknown jobs: {sorted(unknown)}")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    done = {job.name for job in jobs if job.load() is not None}
    pending = [job for job in jobs if job.name not in done]
    failed: list[str] = []
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        running: dict[Any, Job] = {}
        while pending or running:
            for job in list(pending):
                if len(running) >= parallel:
                    break
                if any(dep in failed for dep in job.after):
                    pending.remove(job)
                    failed.append(job.name)
                    logger.warning("skipping %s: a job it needs failed", job.name)
                elif all(dep in done for dep in job.after):
                    pending.remove(job)
                    logger.info("starting %s", job.name)
                    running[pool.submit(_execute, job, env)] = job
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                try:
                    record = future.result()
                except JobFailed as error:
                    failed.append(job.name)
                    logger.error("%s failed: %s", job.name, error)
                    continue
                done.add(job.name)
                logger.info("finished %s (%.0f CPU s)", job.name, record["cpu_seconds"])
                on_done(job)
    return failed + [job.name for job in pending]
