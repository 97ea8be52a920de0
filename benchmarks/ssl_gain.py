"""The SSL-gain benchmark: does pretraining lower the error at a given amount of labelled data,
and does data2vec-aqc lower it more than data2vec (Lodagala et al. report 14.1 % / 20.9 %
relative on test-clean / test-other)?

Arms (``benchmarks/ssl_gain.yaml``): scratch, data2vec, data2vec-aqc and the data2vec 2.0 engine's
data2vec2 and aqc2. Every pretraining arm gets the same CPU-second budget: a short calibration run
of its YAML measures CPU seconds per update and the fixed start-up cost, and the arm's
``optimizer_step_limit`` is set so that the whole run (data loading, augmentation, validation
included) spends the budget; the CPU seconds it really used are reported beside it. Every arm
then gets the same fine-tuning (``finetune_yaml`` at each split's update count) on 10m and 1h,
with several fine-tuning seeds, and is scored greedy and with the 4-gram LM (weights tuned on
dev-clean) on the test sets, and greedy on dev-clean and dev-other. An arm may be pretrained at
several budgets (its ``budgets`` in the YAML): the report's dev CER against pretraining CPU time
then shows how fast it reaches a given quality.

    python benchmarks/ssl_gain.py                       # the whole grid, two jobs side by side
    python benchmarks/ssl_gain.py --arms data2vec2 aqc2 scratch --splits 1h --seeds 1
    python benchmarks/ssl_gain.py --report_only         # tables and plot from what has finished
    python benchmarks/ssl_gain.py --only 'devscore/*'   # run only some jobs (the report covers all)

Jobs run side by side (``--parallel``, one thread each by default) in an order that completes
whole seeds first, so a partial run already compares every arm. Killed at any point, a re-run
skips finished jobs and the recipes resume from their checkpoints. After every job the report is
rewritten: ``benchmarks/results/ssl_gain.json``, ``ssl_gain.md`` and ``ssl_gain_dev_cer.png``
(dev CER after fine-tuning against pretraining CPU seconds).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from fnmatch import fnmatch
from pathlib import Path

import yaml

from d2v_speech.benchmarking.job_runner import Job, run_jobs
from d2v_speech.benchmarking.ssl_gain_report import DEV_SETS, TEST_SETS, write_report
from d2v_speech.training.step_log import JsonLinesLog

logger = logging.getLogger("ssl_gain")

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ configuration
def is_scratch(spec: dict | None) -> bool:
    """An arm without a pretraining YAML fine-tunes a randomly initialised encoder."""
    return spec is None or "yaml" not in spec


def finetune_overrides(spec: dict | None) -> list[str]:
    """The arm's own fine-tuning options (for example a scratch arm without the head-only phase)."""
    return [] if spec is None else list(spec.get("finetune_overrides", []))


def arm_budgets(config: dict, spec: dict | None) -> list[int]:
    """The pretraining CPU-second budgets of a pretraining arm: its own or the grid's."""
    return list((spec or {}).get("budgets", config["pretrain_cpu_seconds"]))


def load_config(path: Path, args: argparse.Namespace) -> dict:
    """The arms YAML with the command line's choices applied; checks files before any work."""
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    if args.budgets:  # the command line's budgets replace every arm's
        config["pretrain_cpu_seconds"] = args.budgets
        for spec in config["arms"].values():
            if spec:
                spec.pop("budgets", None)
    if args.splits:
        config["splits"] = args.splits
    if args.seeds:
        config["finetune_seeds"] = list(range(1, args.seeds + 1))
    arms = config["arms"]
    if args.arms:
        unknown = [name for name in args.arms if name not in arms]
        if unknown:
            raise SystemExit(f"{path}: no arm named {unknown}; arms: {sorted(arms)}")
        config["arms"] = {name: arms[name] for name in args.arms}
    missing = [
        spec["yaml"]
        for spec in config["arms"].values()
        if not is_scratch(spec) and not (ROOT / spec["yaml"]).is_file()
    ]
    if not (ROOT / config["finetune_yaml"]).is_file():
        missing.append(config["finetune_yaml"])
    if not args.no_lm:
        missing += [p for p in (args.lm, args.lexicon) if not Path(p).is_file()]
    if missing:
        raise SystemExit(f"ssl_gain: missing files {missing} (the LM: make lm, or --no_lm)")
    return config


def steps_per_second(step_log: Path) -> tuple[float, float]:
    """(wall seconds per update, last update) from a recipe's train_steps.jsonl, measured
    from the second logged update on (the first includes start-up)."""
    timed = [r for r in JsonLinesLog(str(step_log)).read() if {"time", "update", "loss"} <= set(r)]
    if len(timed) < 3:
        raise RuntimeError(f"{step_log}: too few logged updates to calibrate")
    first, last = timed[1], timed[-1]
    return (last["time"] - first["time"]) / (last["update"] - first["update"]), last["update"]


# ------------------------------------------------------------------------- jobs
class Grid:
    """The benchmark's jobs and where each writes."""

    def __init__(self, config: dict, args: argparse.Namespace) -> None:
        self.config, self.args = config, args
        self.work = Path(args.work_dir)
        self.python = sys.executable

    def recipe(self, name: str) -> str:
        return str(ROOT / "recipes" / "LibriSpeech" / name)

    def pretrain_command(self, spec: dict, updates: int, folder: Path) -> list[str]:
        return [
            self.python,
            self.recipe("pretrain.py"),
            str(ROOT / spec["yaml"]),
            f"--optimizer_step_limit={updates}",
            f"--output_folder={folder}",
            f"--precision={self.args.precision}",
            "--noprogressbar",
            *spec.get("overrides", []),
        ]

    def calibration_job(self, arm: str, spec: dict) -> Job:
        folder = self.work / "calibrate" / arm
        updates = int(self.config["calibration_updates"])

        def commands():
            return [self.pretrain_command(spec, updates, folder)]

        def finish(usages):
            wall_per_update, last = steps_per_second(folder / "train_steps.jsonl")
            usage = usages[0]
            # CPU per update: the steps' wall time scaled by the run's CPU/wall ratio
            cpu_per_update = wall_per_update * usage.cpu_seconds / usage.wall_seconds
            overhead = max(0.0, usage.cpu_seconds - cpu_per_update * last)
            return {"cpu_per_update": cpu_per_update, "overhead_cpu_seconds": overhead}

        return Job(f"calibrate/{arm}", commands, folder / "job.json", folder / "job.log",
                   finish)  # fmt: skip

    def pretrain_folder(self, arm: str, budget: int) -> Path:
        return self.work / "pretrain" / f"{arm}_{budget}"

    def finetune_folder(self, tag: str, split: str, seed: int) -> Path:
        """Where a fine-tuning (and its dev scoring, under eval_dev/) writes."""
        return self.work / "finetune" / tag / split / str(seed)

    def pretrain_job(self, arm: str, spec: dict, budget: int) -> Job:
        folder = self.pretrain_folder(arm, budget)
        calibration = self.work / "calibrate" / arm / "job.json"

        def updates() -> int:
            measured = json.loads(calibration.read_text())
            spend = budget - measured["overhead_cpu_seconds"]
            return max(10, int(spend / measured["cpu_per_update"]))

        def commands():
            return [self.pretrain_command(spec, updates(), folder)]

        def finish(usages):
            return {"arm": arm, "budget": budget, "updates": updates()}

        return Job(f"pretrain/{arm}_{budget}", commands, folder / "job.json",
                   folder / "job.log", finish, after=(f"calibrate/{arm}",))  # fmt: skip

    def encoder_source(self, arm: str, budget: int | None) -> tuple[str, str, tuple[str, ...]]:
        """(tag, --pretrained value, jobs to wait for) of an arm; budget None is scratch."""
        if budget is None:
            return arm, "none", ()
        tag = f"{arm}_{budget}"
        return tag, str(self.pretrain_folder(arm, budget)), (f"pretrain/{tag}",)

    def finetune_job(self, arm: str, budget: int | None, split: str, seed: int) -> Job:
        tag, pretrained, after = self.encoder_source(arm, budget)
        arm_overrides = finetune_overrides(self.config["arms"][arm])
        folder = self.finetune_folder(tag, split, seed)

        def commands():
            finetune = [self.python, self.recipe("finetune.py"),
                        str(ROOT / self.config["finetune_yaml"]), f"--pretrained={pretrained}",
                        f"--train_split={split}", f"--seed={seed}", f"--output_folder={folder}",
                        f"--precision={self.args.precision}", "--noprogressbar",
                        *arm_overrides, *self.args.finetune_overrides]  # fmt: skip
            if self.args.no_lm:
                return [finetune]
            evaluate = [self.python, self.recipe("evaluate.py"), str(folder),
                        "--lm", self.args.lm, "--lexicon", self.args.lexicon, "--tune_on",
                        "dev-clean", "--output_folder", str(folder / "eval_4gram")]  # fmt: skip
            return [finetune, evaluate]

        def finish(usages):
            return {"arm": arm, "budget": budget, "split": split, "seed": seed,
                    "metrics": finetune_metrics(folder, not self.args.no_lm)}  # fmt: skip

        return Job(f"finetune/{tag}/{split}/{seed}", commands, folder / "job.json",
                   folder / "job.log", finish, after=after)  # fmt: skip

    def dev_score_job(self, arm: str, budget: int | None, split: str, seed: int) -> Job:
        """Greedy dev-clean and dev-other scores of a fine-tuned model (its own job, so that
        models fine-tuned before it existed are scored too)."""
        tag, _, _ = self.encoder_source(arm, budget)
        folder = self.finetune_folder(tag, split, seed)
        out = folder / "eval_dev"

        def commands():
            return [[self.python, self.recipe("evaluate.py"), str(folder),
                     "--test_splits", *DEV_SETS, "--output_folder", str(out)]]  # fmt: skip

        def finish(usages):
            sets = json.loads((out / "results.json").read_text())["sets"]
            dev = {name: {"cer": sets[name]["cer"], "wer_greedy": sets[name]["wer"]}
                   for name in DEV_SETS}  # fmt: skip
            return {"arm": arm, "budget": budget, "split": split, "seed": seed, "dev": dev}

        return Job(f"devscore/{tag}/{split}/{seed}", commands, out / "job.json",
                   out / "job.log", finish, after=(f"finetune/{tag}/{split}/{seed}",))  # fmt: skip

    def probe_job(self, arm: str, budget: int | None, seed: int) -> Job:
        tag, pretrained, after = self.encoder_source(arm, budget)
        folder = self.work / "probe" / tag / str(seed)

        def commands():
            return [
                [self.python, self.recipe("probe.py"), str(ROOT / self.config["probe_yaml"]),
                 f"--pretrained={pretrained}", f"--seed={seed}", f"--output_folder={folder}"]
            ]  # fmt: skip

        def finish(usages):
            results = json.loads((folder / "results.json").read_text())
            return {"arm": arm, "budget": budget, "seed": seed, "probe": results}

        return Job(f"probe/{tag}/{seed}", commands, folder / "job.json", folder / "job.log",
                   finish, after=after)  # fmt: skip

    def build(self) -> list[Job]:
        """Jobs in run order: per seed, per arm (its pretraining before its first fine-tuning)."""
        keyed = []
        arms = self.config["arms"]
        for a, (arm, spec) in enumerate(arms.items()):
            if is_scratch(spec):
                continue
            keyed.append(((0, a, -2), self.calibration_job(arm, spec)))
            for budget in arm_budgets(self.config, spec):
                keyed.append(((0, a, -1), self.pretrain_job(arm, spec, budget)))
        for s, seed in enumerate(self.config["finetune_seeds"]):
            for a, (arm, spec) in enumerate(arms.items()):
                budgets = [None] if is_scratch(spec) else arm_budgets(self.config, spec)
                probe_seeds = self.config.get("probe_seeds", self.config["finetune_seeds"])
                probed = spec is None or spec.get("probe", True)
                wanted = self.config.get("probe_yaml") and not self.args.no_probe
                if wanted and probed and seed in probe_seeds:
                    for budget in budgets:
                        keyed.append(((s, a, 0), self.probe_job(arm, budget, seed)))
                for split in self.config["splits"]:
                    for budget in budgets:
                        keyed.append(((s, a, 0), self.finetune_job(arm, budget, split, seed)))
                        keyed.append(((s, a, 0), self.dev_score_job(arm, budget, split, seed)))
        keyed.sort(key=lambda item: item[0])  # stable: the inner order stays
        return [job for _, job in keyed]


def finetune_metrics(folder: Path, with_lm: bool) -> dict:
    """Per test set CER, greedy WER, nats/char (and 4-gram WER)."""
    greedy = json.loads((folder / "results.json").read_text())
    lm = json.loads((folder / "eval_4gram" / "results.json").read_text()) if with_lm else None
    metrics: dict = {}
    for name in TEST_SETS:
        rates = greedy["sets"][name]
        metrics[name] = {
            "cer": rates["cer"],
            "wer_greedy": rates["wer"],
            "nats_per_char": greedy["info"][f"{name}_nats_per_char"],
        }
        if lm is not None:
            metrics[name]["wer_4gram"] = lm["sets"][name]["wer"]
    return metrics


def select_jobs(jobs: list[Job], patterns: list[str] | None) -> list[Job]:
    """The jobs to run: those matching ``patterns`` (all when None) whose prerequisites are done
    or selected too, plus the finished ones (so that dependencies resolve)."""
    if not patterns:
        return jobs
    unmatched = [p for p in patterns if not any(fnmatch(job.name, p) for job in jobs)]
    if unmatched:
        raise SystemExit(
            f"ssl_gain --only: {unmatched} match no job of this grid; names look like "
            f"{jobs[-1].name!r} (kind/arm_budget/split/seed)"
        )
    done = {job.name for job in jobs if job.load() is not None}
    chosen = {job.name for job in jobs if any(fnmatch(job.name, p) for p in patterns)} - done
    while True:  # drop chosen jobs that wait for a job that will not run
        blocked = {
            job.name for job in jobs if job.name in chosen and not set(job.after) <= done | chosen
        }
        if not blocked:
            break
        logger.info("not selected, waiting for unselected jobs: %s", ", ".join(sorted(blocked)))
        chosen -= blocked
    return [job for job in jobs if job.name in chosen | done]


# ------------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "benchmarks" / "ssl_gain.yaml"))
    parser.add_argument("--arms", nargs="+", help="run only these arms (in this order)")
    parser.add_argument("--budgets", nargs="+", type=int, help="pretraining CPU-second budgets")
    parser.add_argument("--splits", nargs="+", choices=["10m", "1h", "10h"])
    parser.add_argument("--seeds", type=int, help="fine-tuning seeds per cell (1..N)")
    parser.add_argument("--parallel", type=int, default=2, help="jobs side by side")
    parser.add_argument("--threads", type=int, default=1, help="threads per job")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--work_dir", default="results/ssl_gain")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--lm", default="results/lm/4gram.arpa")
    parser.add_argument("--lexicon", default="results/lm/lexicon.txt")
    parser.add_argument("--no_lm", action="store_true", help="greedy scoring only")
    parser.add_argument("--finetune_overrides", nargs="*", default=[], help="e.g. --max_update=500")
    parser.add_argument("--no_probe", action="store_true", help="skip the frozen-encoder probes")
    parser.add_argument("--report_only", action="store_true")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="GLOB",
        help="run only the jobs whose name matches, e.g. 'devscore/*'",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    config = load_config(Path(args.config), args)
    jobs = Grid(config, args).build()
    results = Path(args.results)
    settings = {"parallel": args.parallel, "threads": args.threads, "precision": args.precision}
    if not args.report_only:
        done = sum(job.load() is not None for job in jobs)
        logger.info("%d jobs, %d already done; work in %s", len(jobs), done, args.work_dir)

        def report(_job):
            write_report(jobs, config, results, settings)

        failed = run_jobs(select_jobs(jobs, args.only), args.parallel, args.threads, on_done=report)
        if failed:
            logger.error("not finished: %s", ", ".join(failed))
    write_report(jobs, config, results, settings)
    logger.info("report: %s", results / "ssl_gain.md")
    return 0 if args.report_only or not failed else 1


if __name__ == "__main__":
    sys.exit(main())
