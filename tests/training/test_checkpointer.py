"""AtomicCheckpointer: a damaged newest checkpoint is named, moved aside (never deleted), and the
run resumes from the newest intact one."""

import logging

import pytest
import torch
from speechbrain.utils.epoch_loop import EpochCounter

from d2v_speech.training.checkpointer import DAMAGED_PREFIX, AtomicCheckpointer
from d2v_speech.training.rng import RNGStates


def saved_run(folder):
    """Three checkpoints of a Linear layer whose weight is the epoch number."""
    layer, counter = torch.nn.Linear(2, 2), EpochCounter(10)
    checkpointer = AtomicCheckpointer(
        folder, {"objective": layer, "counter": counter, "rng": RNGStates()}
    )
    for epoch in (1, 2, 3):
        counter.current = epoch
        with torch.no_grad():
            layer.weight.fill_(float(epoch))
        checkpointer.save_checkpoint(name=f"epoch{epoch}")
    return checkpointer


def fresh(folder):
    layer, counter = torch.nn.Linear(2, 2), EpochCounter(10)
    return (
        layer,
        counter,
        AtomicCheckpointer(folder, {"objective": layer, "counter": counter, "rng": RNGStates()}),
    )


@pytest.mark.parametrize(
    "damage", ["truncated objective.ckpt", "empty counter.ckpt", "empty rng.ckpt"]
)
def test_recovery_falls_back_past_a_damaged_newest_checkpoint(tmp_path, caplog, damage):
    saved_run(tmp_path)
    newest = tmp_path / "CKPT+epoch3"
    name = damage.split()[1]
    data = (newest / name).read_bytes()
    (newest / name).write_bytes(data[: len(data) // 2] if damage.startswith("truncated") else b"")
    layer, counter, checkpointer = fresh(tmp_path)
    with caplog.at_level(logging.ERROR):
        chosen = checkpointer.recover_if_possible()
    assert chosen.path.name == "CKPT+epoch2"
    assert counter.current == 2 and float(layer.weight[0, 0]) == 2.0
    assert f"{newest / name}" in caplog.text and "moved CKPT+epoch3 aside" in caplog.text
    assert (tmp_path / f"{DAMAGED_PREFIX}CKPT+epoch3" / name).exists()  # kept, not deleted
    assert not newest.exists()
    # the next recovery sees only intact checkpoints and says nothing more
    caplog.clear()
    assert fresh(tmp_path)[2].recover_if_possible().path.name == "CKPT+epoch2"
    assert "damaged" not in caplog.text
