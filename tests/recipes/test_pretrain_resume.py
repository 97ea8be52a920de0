"""Pretraining recipe robustness: exact resume after SIGKILL, atomic checkpoints, non-finite skips.

The end-to-end test runs the real recipe (tiny aqc YAML, micro model) as a subprocess: once
without interruption, and once killed twice with SIGKILL at random moments after a checkpoint
appeared, then re-run with the same command. Both must end with the same model, final_proj,
quantizer (and its temperature), EMA teacher, optimiser state, learning rate and per-update
training losses.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from speechbrain.utils.checkpoints import METAFNAME
from speechbrain.utils.run_opts import RunOptions

from d2v_speech.training.checkpointer import AtomicCheckpointer
from d2v_speech.training.pretrain_brain import (
    NonFiniteLossError,
    PretrainBrain,
    seed_step_generators,
)

NUM_UPDATES = 8  # 7 batches per epoch: the run crosses an epoch boundary
CKPT_EVERY = 2
MAX_KILL_DELAY_S = 0.15  # about one update of the micro model
POLL_S = 0.02


# ----------------------------------------------------------------------------- helpers
def checkpoint_metas(save_folder: Path) -> dict[str, dict]:
    """Complete checkpoints (folder name -> CKPT.yaml contents) under a save folder."""
    metas = {}
    for meta_path in save_folder.glob(f"CKPT+*/{METAFNAME}"):
        try:
            metas[meta_path.parent.name] = yaml.safe_load(meta_path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue  # renamed or deleted between the glob and the read
    return metas


def last_logged_update(output_folder: Path) -> int:
    """Highest update in the run's JSON-lines log (0 before the first one)."""
    path = output_folder / "train_steps.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    # the last line may be half-written while the run appends it
    updates = [json.loads(line).get("update", 0) for line in lines[:-1]]
    return max(updates, default=0)


def run_and_kill(spawn, command, output_folder: Path, wants_kill, delay_s: float) -> bool:
    """Start the recipe; SIGKILL it `delay_s` after `wants_kill(new_metas, update)` is true.

    `new_metas` are the complete checkpoints that appeared after the start, `update` the last
    logged update. Returns whether the process was killed (False: it ended on its own first,
    which must be a success).
    """
    save_folder = output_folder / "save"
    before = set(checkpoint_metas(save_folder))
    output_folder.mkdir(parents=True, exist_ok=True)
    log_path = output_folder / f"run_{time.monotonic_ns()}.log"
    with open(log_path, "w", encoding="utf-8") as log:
        process = spawn(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            killed = _kill_when(process, output_folder, before, wants_kill, delay_s)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    if not killed:
        assert process.returncode == 0, log_path.read_text()[-3000:]
    return killed


def _kill_when(process, output_folder, before, wants_kill, delay_s) -> bool:
    deadline = time.monotonic() + 120
    while process.poll() is None:
        metas = checkpoint_metas(output_folder / "save")
        new = {k: v for k, v in metas.items() if k not in before}
        if wants_kill(new, last_logged_update(output_folder)):
            time.sleep(delay_s)
            if process.poll() is not None:
                return False
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        if time.monotonic() > deadline:
            pytest.fail("the recipe did not reach the kill point within 120 s")
        time.sleep(POLL_S)
    return False


def final_checkpoint(save_folder: Path) -> Path:
    metas = checkpoint_metas(save_folder)
    assert metas, f"no complete checkpoint in {save_folder}"
    return save_folder / max(metas, key=lambda name: metas[name]["unixtime"])


def flatten(obj, prefix: str = "") -> dict[str, object]:
    """Nested dicts / lists / tuples -> {path: leaf}."""
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list | tuple):
        items = enumerate(obj)
    else:
        return {prefix: obj}
    flat = {}
    for key, value in items:
        flat.update(flatten(value, f"{prefix}/{key}"))
    return flat


def assert_same_state(reference: object, resumed: object, what: str) -> None:
    expected, actual = flatten(reference), flatten(resumed)
    assert expected.keys() == actual.keys(), f"{what}: different entries"
    for key, value in expected.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(
                actual[key], value, rtol=1e-5, atol=1e-6, msg=lambda m, k=key: f"{what}{k}: {m}"
            )
        else:
            assert actual[key] == value, f"{what}{key}: {actual[key]!r} != {value!r}"


def losses_per_update(output_folder: Path) -> dict[int, float]:
    """Training loss of each update; a redone update's latest record wins."""
    losses = {}
    for line in (output_folder / "train_steps.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "loss" in record:
            losses[record["update"]] = record["loss"]
    return losses


# --------------------------------------------------------------------- end-to-end resume
@pytest.mark.slow
def test_run_killed_twice_and_rerun_ends_like_uninterrupted_run(
    tmp_path, recipe_command, run_recipe, spawn_recipe
):
    options = {"optimizer_step_limit": NUM_UPDATES, "ckpt_interval_steps": CKPT_EVERY}
    reference_dir = tmp_path / "uninterrupted"
    reference_command = recipe_command(reference_dir, num_workers=0, **options)
    run_recipe(reference_command)

    # the killed run loads audio in a worker process: the data must not depend on that either
    killed_dir = tmp_path / "killed"
    command = recipe_command(killed_dir, num_workers=1, **options)
    # random moments: after a random update past the first checkpoint (mid-step or mid-save),
    # then after the end-of-epoch checkpoint (in the last update, the final validation or save)
    kill_update = random.randint(CKPT_EVERY, NUM_UPDATES - 2)
    delays = [random.uniform(0.0, MAX_KILL_DELAY_S) for _ in range(2)]
    context = f"killed after update {kill_update} + {delays[0]:.3f} s, then {delays[1]:.3f} s"
    first_killed = run_and_kill(
        spawn_recipe,
        command,
        killed_dir,
        lambda new, update: bool(new) and update >= kill_update,
        delays[0],
    )
    assert first_killed, f"the first run ended before it was killed ({context})"
    run_and_kill(
        spawn_recipe,
        command,
        killed_dir,
        lambda new, update: any(meta.get("end-of-epoch") for meta in new.values()),
        delays[1],
    )
    run_recipe(command)
    save_folder = killed_dir / "save"

    reference_ckpt = final_checkpoint(reference_dir / "save")
    resumed_ckpt = final_checkpoint(save_folder)
    for name in ("objective", "optimizer"):
        reference = torch.load(reference_ckpt / f"{name}.ckpt", weights_only=False)
        resumed = torch.load(resumed_ckpt / f"{name}.ckpt", weights_only=False)
        assert_same_state(reference, resumed, f"{name} ({context})")
    for name in ("brain", "counter"):
        reference_text = (reference_ckpt / f"{name}.ckpt").read_text()
        assert (resumed_ckpt / f"{name}.ckpt").read_text() == reference_text, name

    # the compared state is the trained one, not a trivially equal initial one
    objective = torch.load(resumed_ckpt / "objective.ckpt", weights_only=False)
    assert objective["_extra_state"]["teacher"]["num_updates"] == NUM_UPDATES
    assert objective["quantizer._extra_state"]["num_updates"] == NUM_UPDATES
    assert yaml.safe_load((resumed_ckpt / "brain.ckpt").read_text())["optimizer_step"] == (
        NUM_UPDATES
    )
    assert losses_per_update(killed_dir) == pytest.approx(
        losses_per_update(reference_dir), rel=1e-6
    ), context
    assert sorted(losses_per_update(reference_dir)) == list(range(1, NUM_UPDATES + 1))
    logged = [json.loads(line) for line in (killed_dir / "train_steps.jsonl").open()]
    train_updates = [r["update"] for r in logged if "loss" in r]
    assert train_updates == list(range(1, NUM_UPDATES + 1)), f"each update once ({context})"
    leftovers = [p.name for p in save_folder.iterdir() if not (p / METAFNAME).exists()]
    assert not leftovers, f"incomplete checkpoint folders remain: {leftovers}"

    # re-running a finished run changes nothing: no extra epoch, validation or checkpoint
    finished = checkpoint_metas(reference_dir / "save")
    run_recipe(reference_command)
    assert checkpoint_metas(reference_dir / "save") == finished


# ------------------------------------------------------------------- atomic checkpoints
class FailingSave(torch.nn.Module):
    """A recoverable whose save dies, as a SIGKILL during saving would."""

    def __init__(self):
        super().__init__()
        self.fail = False

    def state_dict(self, *args, **kwargs):
        if self.fail:
            raise KeyboardInterrupt("killed while saving")
        return super().state_dict(*args, **kwargs)


def test_checkpoint_interrupted_while_saving_is_ignored_and_removed(tmp_path):
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2)
    failing = FailingSave()
    checkpointer = AtomicCheckpointer(tmp_path, {"layer": layer, "failing": failing})
    checkpointer.save_checkpoint(name="good")
    saved_weight = layer.weight.detach().clone()

    with torch.no_grad():
        layer.weight.add_(1.0)
    failing.fail = True
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save_checkpoint(name="half-written")
    half_written = tmp_path / "CKPT+half-written"
    assert half_written.is_dir() and not (half_written / METAFNAME).exists()
    # a stock SpeechBrain checkpointer would have written CKPT.yaml before the recoverables
    assert (half_written / "layer.ckpt").exists()

    fresh_layer = torch.nn.Linear(3, 2)
    resumed = AtomicCheckpointer(tmp_path, {"layer": fresh_layer, "failing": FailingSave()})
    loaded = resumed.recover_if_possible()
    assert loaded is not None and loaded.path.name == "CKPT+good"
    torch.testing.assert_close(fresh_layer.weight.detach(), saved_weight, rtol=0, atol=0)
    assert not half_written.exists()
    assert [c.path.name for c in resumed.list_checkpoints()] == ["CKPT+good"]


def test_step_generators_depend_only_on_seed_rank_update_and_micro_step():
    def draw(*key):
        seed_step_generators(*key)
        return torch.rand(4)

    first = draw(7, 0, 3, 5)
    torch.rand(100)  # whatever ran in between
    assert torch.equal(draw(7, 0, 3, 5), first)
    for other in ((7, 1, 3, 5), (7, 0, 4, 5), (7, 0, 3, 6), (8, 0, 3, 5)):
        assert not torch.equal(draw(*other), first), other


# ---------------------------------------------------------------- non-finite updates
class FakeObjective(torch.nn.Module):
    """loss = (w . x)^2 for a batch x (1, 2); records its EMA-step calls."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        self.model = SimpleNamespace(config=SimpleNamespace(num_layers=2, layerdrop=0.0))
        self.ema_steps: list[int] = []

    def forward(self, wav, sample_lengths, layer_keep=None):
        loss = (wav[0] * self.weight).sum().square()
        return {"loss": loss, "loss_regression": loss.detach()}

    def after_optimizer_step(self, num_updates=None):
        self.ema_steps.append(num_updates)


def make_brain(tmp_path, max_nonfinite_in_row=3, run_opts=None, **hparams):
    scheduled = []
    values = {
        "seed": 0,
        "lr_scheduler": lambda optimizer, updates: scheduled.append(updates),
        "log_interval": 1,
        "max_nonfinite_in_row": max_nonfinite_in_row,
        "step_log_file": str(tmp_path / "steps.jsonl"),
        "curves_png": None,
        "train_logger": None,
        **hparams,
    }
    brain = PretrainBrain(
        modules={"objective": FakeObjective()},
        opt_class=lambda params: torch.optim.AdamW(params, lr=0.1),
        hparams=values,
        run_opts=run_opts or {"device": "cpu"},
    )
    brain.scheduled = scheduled
    return brain


def fake_batch(first: float, second: float) -> dict:
    return {"sig": torch.tensor([[first, second]]), "lengths": torch.tensor([2])}


def run_batch(brain, batch):
    brain.step += 1
    return brain.fit_batch(batch)


def test_nonfinite_loss_skips_optimiser_and_ema_step(tmp_path):
    brain = make_brain(tmp_path)
    brain.on_fit_start()
    objective = brain.modules.objective
    run_batch(brain, fake_batch(0.5, 0.25))
    assert brain.optimizer_step == 1 and objective.ema_steps == [1]
    weight = objective.weight.detach().clone()
    adam_state = {k: v.clone() for k, v in brain.optimizer.state[objective.weight].items()}

    for bad in (float("nan"), float("inf")):
        loss = run_batch(brain, fake_batch(bad, 1.0))
        assert not torch.isfinite(loss)
        assert torch.equal(objective.weight.detach(), weight)
        for key, value in brain.optimizer.state[objective.weight].items():
            assert torch.equal(value, adam_state[key]), key
        assert objective.weight.grad is None
    assert brain.optimizer_step == 1 and objective.ema_steps == [1]
    assert brain.skipped_updates == 2 and brain.nonfinite_in_row == 2
    assert brain.scheduled == [0, 1]  # on_fit_start, then only the real update

    run_batch(brain, fake_batch(0.5, 0.25))
    assert brain.optimizer_step == 2 and objective.ema_steps == [1, 2]
    assert brain.nonfinite_in_row == 0 and brain.skipped_updates == 2
    assert not torch.equal(objective.weight.detach(), weight)
    records = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert [r["skipped_updates"] for r in records] == [0, 2]


def test_too_many_nonfinite_losses_in_a_row_raise(tmp_path):
    brain = make_brain(tmp_path, max_nonfinite_in_row=3)
    brain.on_fit_start()
    run_batch(brain, fake_batch(float("nan"), 1.0))
    run_batch(brain, fake_batch(0.5, 0.25))  # a finite update resets the count
    run_batch(brain, fake_batch(float("nan"), 1.0))
    run_batch(brain, fake_batch(float("nan"), 1.0))
    with pytest.raises(NonFiniteLossError, match="3 non-finite losses in a row"):
        run_batch(brain, fake_batch(float("nan"), 1.0))
    assert brain.skipped_updates == 4 and brain.optimizer_step == 1


def test_command_line_checkpoint_interval_replaces_the_yaml_one(tmp_path):
    _, run_opts, _ = RunOptions.from_command_line_args(
        ["hparams.yaml", "--ckpt_interval_steps=2", "--device=cpu"]
    )
    brain = make_brain(tmp_path, run_opts=run_opts, ckpt_interval_minutes=2)
    assert (brain.ckpt_interval_steps, brain.ckpt_interval_minutes) == (2, 0)
    brain = make_brain(tmp_path, ckpt_interval_minutes=2)
    assert (brain.ckpt_interval_steps, brain.ckpt_interval_minutes) == (0, 2)
