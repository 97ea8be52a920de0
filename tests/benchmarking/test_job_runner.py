"""The job runner: CPU time of a command and its children, failures, dependencies, resume."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from d2v_speech.benchmarking.job_runner import (
    Job,
    JobFailed,
    run_command,
    run_jobs,
    tree_cpu_seconds,
)

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n"


def test_cpu_time_counts_the_children_a_command_waits_for(tmp_path):
    # the command burns 0.3 s itself and runs a child that burns 0.4 s
    script = (
        BURN.format(s=0.3)
        + "import subprocess, sys\n"
        + f"subprocess.run([sys.executable, '-c', {BURN.format(s=0.4)!r}], check=True)\n"
    )
    usage = run_command([sys.executable, "-c", script], tmp_path / "log.txt", {})
    assert 0.7 <= usage.cpu_seconds < 2.5
    assert usage.wall_seconds >= 0.7
    assert "$ " in (tmp_path / "log.txt").read_text()


def test_a_failing_command_names_its_log_and_shows_its_tail(tmp_path):
    command = [sys.executable, "-c", "print('the reason'); raise SystemExit(3)"]
    with pytest.raises(JobFailed, match=r"exited with 3(.|\n)*the reason"):
        run_command(command, tmp_path / "log.txt", {})


def counting_job(tmp_path, name, after=(), fail=False):
    """A job that appends its name to runs.txt (and fails when asked)."""
    code = f"open({str(tmp_path / 'runs.txt')!r}, 'a').write({name!r} + '\\n')"
    if fail:
        code += "; raise SystemExit(1)"
    return Job(
        name,
        lambda: [[sys.executable, "-c", code]],
        tmp_path / name / "job.json",
        tmp_path / name / "job.log",
        finish=lambda usages: {"commands": len(usages)},
        after=after,
    )


def test_dependencies_order_failures_skip_dependants_and_a_rerun_resumes(tmp_path):
    jobs = [
        counting_job(tmp_path, "b", after=("a",)),
        counting_job(tmp_path, "a"),
        counting_job(tmp_path, "bad", fail=True),
        counting_job(tmp_path, "after_bad", after=("bad",)),
    ]
    seen = []
    not_done = run_jobs(jobs, parallel=1, threads=1, on_done=lambda job: seen.append(job.name))
    runs = (tmp_path / "runs.txt").read_text().split()
    assert runs.index("a") < runs.index("b")
    assert "after_bad" not in runs
    assert sorted(not_done) == ["after_bad", "bad"]
    assert seen == ["a", "b"]
    record = json.loads((tmp_path / "b" / "job.json").read_text())
    assert record["job"] == "b" and record["commands"] == 1 and record["cpu_seconds"] > 0

    # a re-run runs only what did not finish
    rerun = [counting_job(tmp_path, n) for n in ("a", "b")] + [counting_job(tmp_path, "bad")]
    assert run_jobs(rerun, parallel=2, threads=1) == []
    assert sorted((tmp_path / "runs.txt").read_text().split()) == sorted(runs + ["bad"])


def test_two_jobs_run_side_by_side(tmp_path):
    # each job writes when it started and ended; side by side, the intervals overlap
    code = (
        "import sys, time; start = time.time(); time.sleep(0.5); "
        "open(sys.argv[1], 'w').write(f'{start} {time.time()}')"
    )
    jobs = [
        Job(
            n,
            lambda n=n: [[sys.executable, "-c", code, str(tmp_path / f"{n}.txt")]],
            tmp_path / n / "job.json",
            tmp_path / n / "job.log",
        )
        for n in ("x", "y")
    ]
    assert run_jobs(jobs, parallel=2, threads=1) == []
    (x0, x1), (y0, y1) = (
        map(float, (tmp_path / f"{n}.txt").read_text().split()) for n in ("x", "y")
    )
    assert max(x0, y0) < min(x1, y1)


def test_unknown_dependencies_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="unknown jobs"):
        run_jobs([counting_job(tmp_path, "a", after=("nope",))], parallel=1, threads=1)
    assert not (tmp_path / "runs.txt").exists()


def test_tree_cpu_counts_a_live_child_and_progress_is_written_while_running(tmp_path):
    child = BURN.format(s=0.6) + "time.sleep(3)\n"
    parent = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', {child!r}])\n"
        "time.sleep(3); p.wait()\n"
    )
    process = subprocess.Popen([sys.executable, "-c", parent])
    try:
        time.sleep(1.8)
        assert tree_cpu_seconds(process.pid) >= 0.5  # the parent itself only sleeps
    finally:
        process.kill()
        process.wait()

    progress = tmp_path / "progress.json"
    run_command([sys.executable, "-c", BURN.format(s=0.5)], tmp_path / "log", {}, progress, 0.1)
    assert json.loads(progress.read_text())["cpu_seconds"] > 0


def test_cpu_spent_by_a_killed_attempt_counts_in_the_resumed_jobs_record(tmp_path):
    job = counting_job(tmp_path, "resumed")
    job.done_file.parent.mkdir(parents=True)
    # what a killed attempt left behind: its last CPU progress
    job.done_file.with_name("cpu_progress.json").write_text(
        json.dumps({"cpu_seconds": 7.0, "wall_seconds": 9.0})
    )
    assert run_jobs([job], parallel=1, threads=1) == []
    record = json.loads(job.done_file.read_text())
    assert record["interrupted_attempts"] == 1
    assert record["cpu_seconds"] == round(7.0 + record["cpu_seconds_last_attempt"], 2)
    assert record["wall_seconds"] > 9.0
    assert not job.done_file.with_name("cpu_progress.json").exists()
