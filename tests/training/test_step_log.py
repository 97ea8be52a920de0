"""The JSON-lines step log: a resumed run keeps each update once, a cut-off line is dropped."""

from __future__ import annotations

import json

from d2v_speech.training.step_log import JsonLinesLog


def test_truncation_keeps_records_up_to_the_checkpoint_and_drops_a_cut_off_line(tmp_path):
    path = tmp_path / "train_steps.jsonl"
    log = JsonLinesLog(str(path))
    for update in (10, 20, 30, 40):
        log.write({"update": update, "loss": float(update)})
    log.write({"update": 30, "epoch": 1, "valid_loss": 1.0})
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"update": 50, "lo')  # killed in the middle of a write
    assert len(log.read()) == 5
    assert log.truncate_after(30) == 2  # update 40 and the cut-off line
    assert [r["update"] for r in log.read()] == [10, 20, 30, 30]
    assert path.read_text().endswith("\n")
    assert all(json.loads(line) for line in path.read_text().splitlines())
    assert log.truncate_after(30) == 0
    log.write({"update": 40, "loss": 4.5})  # the redone update, logged once
    assert [r["update"] for r in log.read() if "loss" in r] == [10, 20, 30, 40]
