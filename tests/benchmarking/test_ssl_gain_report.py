"""benchmarks/ssl_gain.py's job grid and report, on finished-job records written by hand."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from d2v_speech.benchmarking import ssl_gain_report

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {"parallel": 2, "threads": 1, "precision": "fp32"}


def load_script():
    spec = importlib.util.spec_from_file_location("ssl_gain", ROOT / "benchmarks" / "ssl_gain.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_metrics(cer: float) -> dict:
    sets = {
        name: {"cer": cer + k, "wer_greedy": 2 * cer + k, "wer_4gram": 1.5 * cer + k,
               "nats_per_char": cer / 30 + k}
        for k, name in enumerate(("test-clean", "test-other"))
    }  # fmt: skip
    return sets


def fake_dev(cer: float) -> dict:
    """A dev-scoring record's sets: dev-clean 1 point below the test CER, dev-other 3 above."""
    return {"dev-clean": {"cer": cer - 1, "wer_greedy": 2 * cer}, "dev-other": {"cer": cer + 3,
            "wer_greedy": 2 * cer + 6}}  # fmt: skip


def test_grid_order_budgets_and_report(tmp_path):
    ssl_gain = load_script()
    args = ssl_gain.parse_args(
        ["--arms", "aqc2", "scratch", "data2vec2", "--splits", "1h", "--seeds", "3",
         "--budgets", "2638", "--work_dir", str(tmp_path / "work"), "--results",
         str(tmp_path / "out"), "--no_lm"]
    )  # fmt: skip
    config = ssl_gain.load_config(Path(args.config), args)
    jobs = ssl_gain.Grid(config, args).build()
    names = [job.name for job in jobs]
    # a pretraining arm is calibrated, pretrained, then fine-tuned and dev-scored; whole seeds
    # come first
    assert names[:9] == [
        "calibrate/aqc2",
        "pretrain/aqc2_2638",
        "probe/aqc2_2638/1",
        "finetune/aqc2_2638/1h/1",
        "devscore/aqc2_2638/1h/1",
        "probe/scratch/1",
        "finetune/scratch/1h/1",
        "devscore/scratch/1h/1",
        "calibrate/data2vec2",
    ]
    assert names.index("finetune/data2vec2_2638/1h/1") < names.index("finetune/aqc2_2638/1h/2")
    # calibration + pretraining of 2 arms, 3 arms x 3 seeds of fine-tuning and of dev scoring,
    # probes on seed 1 only
    assert len(names) == 2 * 2 + 2 * 3 * 3 + 3
    dev_command = jobs[names.index("devscore/aqc2_2638/1h/1")].commands()[0]
    finetuned = str(tmp_path / "work" / "finetune" / "aqc2_2638" / "1h" / "1")
    assert dev_command[2:6] == [finetuned, "--test_splits", "dev-clean", "dev-other"]
    assert sorted(n for n in names if n.startswith("probe/")) == [
        "probe/aqc2_2638/1", "probe/data2vec2_2638/1", "probe/scratch/1"
    ]  # fmt: skip

    # the update count spends the budget: (budget - start-up) / CPU per update
    calibration = tmp_path / "work" / "calibrate" / "aqc2" / "job.json"
    calibration.parent.mkdir(parents=True)
    calibration.write_text(json.dumps({"cpu_per_update": 1.25, "overhead_cpu_seconds": 38.0}))
    pretrain = jobs[1]
    command = pretrain.commands()[0]
    assert "--optimizer_step_limit=2080" in command  # (2638 - 38) / 1.25

    cers = {
        "scratch": [40.0, 41.0, 42.0],
        "aqc2": [35.0, 35.5, 36.0],
        "data2vec2": [39.0, 41.0, 43.0],
    }
    for job in jobs:
        job.done_file.parent.mkdir(parents=True, exist_ok=True)
        if job.name.startswith("pretrain/"):
            arm = job.name.split("/")[1].split("_")[0]
            record = {"arm": arm, "budget": 2638, "updates": 2000, "cpu_seconds": 2650.0}
        elif job.name.startswith(("finetune/", "devscore/")):
            kind, tag, split, seed = job.name.split("/")
            arm = tag.split("_")[0]
            cer = cers[arm][int(seed) - 1]
            record = {"arm": arm, "budget": None if arm == "scratch" else 2638, "split": split,
                      "seed": int(seed), "cpu_seconds": 100.0}  # fmt: skip
            if kind == "finetune":
                record["metrics"] = fake_metrics(cer)
            else:
                record["dev"] = fake_dev(cer)
        elif job.name.startswith("probe/"):
            _, tag, seed = job.name.split("/")
            arm = tag.split("_")[0]
            # the probe ranks data2vec2 best, scratch worst: the opposite of fine-tuning for 2
            probe_cer = {"scratch": 90.0, "aqc2": 80.0, "data2vec2": 70.0}[arm] + int(seed)
            probe = {"ctc": {"dev-clean": {"cer": probe_cer}, "dev-other": {"cer": probe_cer + 5}},
                     "speaker": {"accuracy": 50.0 + int(seed)}}  # fmt: skip
            record = {"arm": arm, "budget": None if arm == "scratch" else 2638,
                      "seed": int(seed), "probe": probe, "cpu_seconds": 20.0}  # fmt: skip
        else:
            record = {"cpu_seconds": 50.0}
        job.done_file.write_text(json.dumps(record))
    ssl_gain.write_report(jobs, config, tmp_path / "out", SETTINGS)

    report = json.loads((tmp_path / "out" / "ssl_gain.json").read_text())
    by_arm = {cell["arm"]: cell for cell in report["cells"]}
    cell = by_arm["data2vec2"]["test-other/cer"]
    assert math.isclose(cell["mean"], np.mean(cers["data2vec2"]) + 1)
    assert math.isclose(cell["std"], np.std(cers["data2vec2"], ddof=1))
    gains = report["comparisons"]["1h/2638"]
    expected = (41.0 - 35.5) / 41.0 * 100  # test-clean CER: scratch mean 41, aqc2 mean 35.5
    assert math.isclose(gains["over_scratch"]["aqc2"]["test-clean/cer"], expected)
    assert gains["clearly_beats_scratch"] == {"aqc2": True, "data2vec2": False}
    aqc_gain = gains["aqc_over_data2vec"]["aqc2 vs data2vec2"]["test-clean"]
    assert math.isclose(aqc_gain, (41.0 - 35.5) / 41.0 * 100)
    assert report["meta"]["jobs_done"] == len(jobs)
    probes = {p["arm"]: p for p in report["probes"]}
    assert math.isclose(probes["aqc2"]["ctc/dev-clean/cer"]["mean"], 81.0)  # seed 1 only
    assert probes["scratch"]["speaker/accuracy"]["n"] == 1
    agreement = report["probe_ranking_agreement"]["1h/2638"]
    # fine-tuning: aqc2 (34.5) < scratch (40) = data2vec2 (40); probe: data2vec2 < aqc2 < scratch
    assert agreement["probe_order"] == ["data2vec2", "aqc2", "scratch"]
    assert agreement["finetune_order"][0] == "aqc2"
    assert agreement["kendall_tau"] < 0.5
    markdown = (tmp_path / "out" / "ssl_gain.md").read_text()
    assert "| aqc2 | 2000, 2650 | 34.50 ± 0.50 (3) | 38.50 ± 0.50 (3) |" in markdown
    assert math.isclose(by_arm["scratch"]["dev-other/cer"]["mean"], 44.0)
    assert (tmp_path / "out" / "ssl_gain_dev_cer.png").stat().st_size > 1000


def test_scratch_variants_are_all_beaten_or_not(tmp_path):
    """A second scratch arm (its own fine-tuning options, no probe): gains are taken over the
    better scratch arm, and 'clearly beats scratch' must hold against both."""
    ssl_gain = load_script()
    config_file = tmp_path / "arms.yaml"
    config = yaml.safe_load((ROOT / "benchmarks" / "ssl_gain.yaml").read_text())
    config["arms"] = {
        "scratch": None,
        "scratch_unfrozen": {"finetune_overrides": ["--freeze_transformer_updates=0"],
                             "probe": False},
        "aqc2": {**config["arms"]["aqc2"], "budgets": [2638]},
    }  # fmt: skip
    config_file.write_text(yaml.safe_dump(config))
    args = ssl_gain.parse_args(
        ["--config", str(config_file), "--splits", "1h", "--seeds", "3", "--work_dir",
         str(tmp_path / "work"), "--results", str(tmp_path / "out"), "--no_lm"]
    )  # fmt: skip
    config = ssl_gain.load_config(Path(args.config), args)
    jobs = {job.name: job for job in ssl_gain.Grid(config, args).build()}
    assert "probe/scratch_unfrozen/1" not in jobs and "probe/scratch/1" in jobs
    command = jobs["finetune/scratch_unfrozen/1h/2"].commands()[0]
    assert "--pretrained=none" in command and "--freeze_transformer_updates=0" in command
    assert "--freeze_transformer_updates=0" not in jobs["finetune/scratch/1h/2"].commands()[0]

    cers = {"scratch": [60.0, 70.0, 80.0], "scratch_unfrozen": [36.0, 36.5, 37.0],
            "aqc2": [30.0, 30.5, 31.0]}  # fmt: skip
    for name, job in jobs.items():
        job.done_file.parent.mkdir(parents=True, exist_ok=True)
        kind, tag = name.split("/")[:2]
        arm = tag.rsplit("_", 1)[0] if tag.startswith("aqc2_") else tag
        record = {"arm": arm, "cpu_seconds": 10.0}
        if kind == "pretrain":
            record.update(budget=2638, updates=2000)
        elif kind == "finetune":
            seed = int(name.split("/")[-1])
            record.update(budget=None if arm != "aqc2" else 2638, split="1h", seed=seed,
                          metrics=fake_metrics(cers[arm][seed - 1]))  # fmt: skip
        elif kind == "devscore":
            seed = int(name.split("/")[-1])
            record.update(budget=None if arm != "aqc2" else 2638, split="1h", seed=seed,
                          dev=fake_dev(cers[arm][seed - 1]))  # fmt: skip
        elif kind == "probe":
            probe = {"ctc": {"dev-clean": {"cer": 80.0}, "dev-other": {"cer": 85.0}},
                     "speaker": {"accuracy": 50.0}}  # fmt: skip
            record.update(budget=None, seed=1, probe=probe)
        job.done_file.write_text(json.dumps(record))
    ssl_gain.write_report(list(jobs.values()), config, tmp_path / "out", SETTINGS)
    gains = json.loads((tmp_path / "out" / "ssl_gain.json").read_text())["comparisons"]["1h/2638"]
    # over the better scratch arm (unfrozen, mean 36.5), not the plateaued one (mean 70)
    expected = (36.5 - 30.5) / 36.5 * 100
    assert math.isclose(gains["over_scratch"]["aqc2"]["test-clean/cer"], expected)
    assert set(gains["over_scratch"]) == {"aqc2"}
    assert gains["clearly_beats_scratch"] == {"aqc2": True}
    cers["aqc2"] = [35.0, 36.0, 37.0]  # within 2 std of scratch_unfrozen: no longer clearly
    for seed in (1, 2, 3):
        job = jobs[f"finetune/aqc2_2638/1h/{seed}"]
        record = json.loads(job.done_file.read_text())
        record["metrics"] = fake_metrics(cers["aqc2"][seed - 1])
        job.done_file.write_text(json.dumps(record))
        job.record = None  # the job caches what it read
    ssl_gain.write_report(list(jobs.values()), config, tmp_path / "out", SETTINGS)
    gains = json.loads((tmp_path / "out" / "ssl_gain.json").read_text())["comparisons"]["1h/2638"]
    assert gains["clearly_beats_scratch"] == {"aqc2": False}
    # it is still clearly below the plateaued arm on all four, below the steadier one on none
    assert gains["clearly_below"]["aqc2"] == {
        "scratch": ["test-clean/cer", "test-clean/wer_4gram", "test-other/cer",
                    "test-other/wer_4gram"],
        "scratch_unfrozen": [],
    }  # fmt: skip
    markdown = (tmp_path / "out" / "ssl_gain.md").read_text()
    assert "| no | scratch: test-clean/cer, test-clean/wer_4gram, test-other/cer, " in markdown
    assert "scratch_unfrozen: none |" in markdown


def test_arm_budgets_and_dev_cer_by_budget(tmp_path):
    """An arm with its own budgets is pretrained and fine-tuned at each; the report's budget
    table and JSON give its dev CER per budget; --budgets on the command line replaces them."""
    ssl_gain = load_script()
    common = ["--arms", "aqc2", "scratch", "--splits", "1h", "--seeds", "1", "--no_lm",
              "--no_probe", "--work_dir", str(tmp_path / "work")]  # fmt: skip
    args = ssl_gain.parse_args(common)
    config = ssl_gain.load_config(Path(args.config), args)
    assert 2638 in config["arms"]["aqc2"]["budgets"]  # benchmarks/ssl_gain.yaml
    config["arms"]["aqc2"]["budgets"] = [1319, 2638]
    jobs = ssl_gain.Grid(config, args).build()
    assert [j.name for j in jobs if not j.name.startswith("devscore/")] == [
        "calibrate/aqc2", "pretrain/aqc2_1319", "pretrain/aqc2_2638", "finetune/aqc2_1319/1h/1",
        "finetune/aqc2_2638/1h/1", "finetune/scratch/1h/1",
    ]  # fmt: skip
    overridden = ssl_gain.load_config(
        Path(args.config), ssl_gain.parse_args([*common, "--budgets", "500"])
    )
    names = [j.name for j in ssl_gain.Grid(overridden, args).build()]
    assert "pretrain/aqc2_500" in names and "pretrain/aqc2_1319" not in names

    dev_cer = {"aqc2_1319": 40.0, "aqc2_2638": 35.0, "scratch": 50.0}
    for job in jobs:
        job.done_file.parent.mkdir(parents=True, exist_ok=True)
        kind, tag = job.name.split("/")[:2]
        budget = int(tag.split("_")[1]) if tag.startswith("aqc2_") else None
        record = {"arm": tag.split("_")[0], "budget": budget, "cpu_seconds": 5.0}
        if kind == "pretrain":
            record.update(updates=budget // 2, cpu_seconds=budget + 3.0)
        elif kind == "finetune":
            record.update(split="1h", seed=1, metrics=fake_metrics(dev_cer[tag] + 1))
        elif kind == "devscore":
            record.update(split="1h", seed=1, dev=fake_dev(dev_cer[tag] + 1))
        job.done_file.write_text(json.dumps(record))
    ssl_gain.write_report(jobs, config, tmp_path / "out", SETTINGS)
    report = json.loads((tmp_path / "out" / "ssl_gain.json").read_text())
    dev_other = {(c["arm"], c["budget"]): c["dev-other/cer"]["mean"] for c in report["cells"]}
    assert dev_other == {("aqc2", 1319): 44.0, ("aqc2", 2638): 39.0, ("scratch", None): 54.0}
    assert set(report["comparisons"]) == {"1h/1319", "1h/2638"}
    markdown = (tmp_path / "out" / "ssl_gain.md").read_text()
    assert "## 1h fine-tuning, pretraining budget 1319 CPU s" in markdown
    assert "| 1h | aqc2 | 1319 | 1322 | 40.00 (1) | 44.00 (1) |" in markdown
    assert "Note: aqc2" not in markdown  # 1322 and 2641 CPU s: within 10 % of the budgets
    overspent = {"aqc2": {"pretrain": {"updates": 100, "cpu_seconds": 3200.0}}}
    assert ssl_gain_report.budget_overruns(overspent, 2638) == [
        "Note: aqc2 used 3200 CPU s for its 100 updates, +21% off the 2638 s budget."
    ]


def test_only_runs_matching_jobs_whose_prerequisites_will_be_there(tmp_path):
    """--only: the matching jobs run if what they wait for is done or selected too; finished
    jobs stay in the list so that dependencies resolve."""
    ssl_gain = load_script()

    def job(name, after=(), done=False):
        folder = tmp_path / name.replace("/", "_")
        folder.mkdir()
        if done:
            (folder / "job.json").write_text("{}")
        return ssl_gain.Job(name, list, folder / "job.json", folder / "job.log", after=after)

    jobs = [
        job("pretrain/a", done=True),
        job("finetune/a/1", ("pretrain/a",), done=True),
        job("devscore/a/1", ("finetune/a/1",)),
        job("finetune/a/2", ("pretrain/a",)),
        job("devscore/a/2", ("finetune/a/2",)),
        job("pretrain/b"),
        job("finetune/b/1", ("pretrain/b",)),
    ]
    names = [j.name for j in ssl_gain.select_jobs(jobs, ["devscore/*"])]
    # devscore/a/2 waits for a fine-tuning that is neither done nor selected: left out
    assert names == ["pretrain/a", "finetune/a/1", "devscore/a/1"]
    names = [j.name for j in ssl_gain.select_jobs(jobs, ["*/a/2", "devscore/*"])]
    assert names == ["pretrain/a", "finetune/a/1", "devscore/a/1", "finetune/a/2", "devscore/a/2"]
    assert ssl_gain.select_jobs(jobs, None) == jobs
    with pytest.raises(SystemExit, match=r"\['devscore'\] match no job"):
        ssl_gain.select_jobs(jobs, ["devscore/*", "devscore"])  # a glob without its '/*'
