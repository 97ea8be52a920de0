"""Run summaries: start/end windows of the logged curves, resumed duplicates, missing logs."""

import json

import pytest

from d2v_speech.training.summarize import format_summary, summarize_run


def write_log(folder, records):
    with open(folder / "train_steps.jsonl", "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")


def test_start_and_end_are_means_of_the_first_and_last_log_lines(tmp_path):
    records = [{"update": 10 * i, "loss": 10.0 - i, "target_var": 0.5} for i in range(1, 9)]
    # a resumed run logs update 80 again; the later line wins
    records.append({"update": 80, "loss": 1.0, "target_var": 0.5})
    records.append({"update": 80, "epoch": 1, "valid_loss": 3.0})
    write_log(tmp_path, records)
    summary = summarize_run(str(tmp_path))
    assert summary["updates"] == 80
    assert summary["curves"]["loss"]["start"] == pytest.approx((9 + 8 + 7) / 3)
    assert summary["curves"]["loss"]["end"] == pytest.approx((4 + 3 + 1) / 3)
    assert summary["loss_fell"] is True
    assert summary["valid_loss"] == [3.0]
    assert json.loads((tmp_path / "summary.json").read_text())["updates"] == 80
    assert "| loss | 8 | 2.667 | falls |" in format_summary(summary)


def test_missing_log_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_steps.jsonl"):
        summarize_run(str(tmp_path))
