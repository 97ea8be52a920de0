"""The pretraining recipe under 2-process CPU DDP (torchrun, gloo) with LayerDrop 0.5.

The recipe runs through a small launcher (written by the test) that records, per rank, the
utterance ids of every batch, the LayerDrop decisions and the final objective state, then
runs `recipes/LibriSpeech/pretrain.py` unchanged with `runpy`.
"""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
from speechbrain.dataio.sampler import DynamicBatchSampler
from torch.utils.data import DistributedSampler

from d2v_speech.data.pipelines import PretrainAudioPipeline, load_pretrain_dataset

NUM_UPDATES = 4  # 7 batches per epoch: 4 per rank, one of them repeated to even the shards
LAYERDROP = 0.5
SEED = 1234  # the tiny YAML's seed

LAUNCHER = textwrap.dedent(
    '''
    """Run the pretraining recipe and record what each DDP rank did."""
    import json
    import os
    import runpy
    import sys

    import torch

    from d2v_speech.training import pretrain_brain

    record_dir = sys.argv[1]
    sys.argv = sys.argv[2:]
    batches, layer_keeps = [], []
    fit_batch = pretrain_brain.PretrainBrain.fit_batch
    shared_layer_keep = pretrain_brain.shared_layer_keep


    def recording_fit_batch(self, batch):
        batches.append(list(batch["id"]))
        return fit_batch(self, batch)


    def recording_layer_keep(*args, **kwargs):
        keep = shared_layer_keep(*args, **kwargs)
        layer_keeps.append(None if keep is None else keep.tolist())
        return keep


    pretrain_brain.PretrainBrain.fit_batch = recording_fit_batch
    pretrain_brain.shared_layer_keep = recording_layer_keep
    brain = runpy.run_path(sys.argv[0], run_name="__main__")["brain"]
    rank = torch.distributed.get_rank()
    wrapped = brain.modules.objective
    summary = {
        "batches": batches,
        "layer_keeps": layer_keeps,
        "world_size": torch.distributed.get_world_size(),
        "ddp_wrapped": isinstance(wrapped, torch.nn.parallel.DistributedDataParallel),
        "find_unused_parameters": bool(brain.find_unused_parameters),
        "optimizer_step": brain.optimizer_step,
    }
    with open(os.path.join(record_dir, f"rank{rank}.json"), "w", encoding="utf-8") as out:
        json.dump(summary, out)
    state = pretrain_brain.unwrap(wrapped).state_dict()
    torch.save(state, os.path.join(record_dir, f"rank{rank}.pt"))
    '''
)


def flat_tensors(state, prefix=""):
    if isinstance(state, torch.Tensor):
        return {prefix: state}
    if isinstance(state, dict):
        out = {}
        for key, value in state.items():
            out.update(flat_tensors(value, f"{prefix}/{key}"))
        return out
    return {}


def epoch_batches(output_folder, recipe_corpus, epoch: int) -> list[list[str]]:
    """The single-process DynamicBatchSampler's batches (utterance ids) of one epoch."""
    dataset = load_pretrain_dataset(
        [str(output_folder / "prepared" / "train-clean-100.csv")],
        str(recipe_corpus),
        PretrainAudioPipeline(),
        min_duration=2.0,
        max_duration=40.0,
    )
    sampler = DynamicBatchSampler(
        dataset,
        max_batch_length=30,
        num_buckets=3,
        length_func=lambda row: float(row["duration"]),
        shuffle=True,
        batch_ordering="random",
        max_batch_ex=8,
        seed=SEED,
    )
    sampler.set_epoch(epoch)
    return [[dataset.data_ids[i] for i in batch] for batch in sampler]


@pytest.mark.slow
def test_two_process_ddp_shards_batches_and_keeps_ranks_identical(
    tmp_path, recipe_command, micro_preset, recipe_corpus, run_recipe
):
    launcher = tmp_path / "launch_and_record.py"
    launcher.write_text(LAUNCHER, encoding="utf-8")
    records = tmp_path / "records"
    records.mkdir()
    output_folder = tmp_path / "ddp"
    recipe = recipe_command(
        output_folder,
        model_preset=micro_preset(layerdrop=LAYERDROP),
        optimizer_step_limit=NUM_UPDATES,
        distributed_backend="gloo",
    )
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    run_recipe([*torchrun, "--nproc_per_node=2", str(launcher), str(records), *recipe[1:]])

    ranks = [json.loads((records / f"rank{r}.json").read_text()) for r in range(2)]
    for summary in ranks:
        assert summary["world_size"] == 2 and summary["ddp_wrapped"]
        assert not summary["find_unused_parameters"]
        assert summary["optimizer_step"] == NUM_UPDATES
        assert len(summary["batches"]) == NUM_UPDATES

    # each rank gets the batches a DistributedSampler over the epoch's batch list assigns it
    expected = epoch_batches(output_folder, recipe_corpus, epoch=1)
    assert len(expected) == 2 * NUM_UPDATES - 1
    for rank, summary in enumerate(ranks):
        shard = DistributedSampler(expected, num_replicas=2, rank=rank, shuffle=True)
        shard.set_epoch(1)
        assert summary["batches"] == [expected[i] for i in shard], f"rank {rank}"
    for first, second in zip(ranks[0]["batches"], ranks[1]["batches"], strict=True):
        assert first != second
    used = {tuple(batch) for summary in ranks for batch in summary["batches"]}
    assert used == {tuple(batch) for batch in expected}  # one is repeated to even the shards

    # LayerDrop: the same decisions on both ranks, and layers were dropped
    keeps = [summary["layer_keeps"] for summary in ranks]
    assert keeps[0] == keeps[1]
    assert len(keeps[0]) == NUM_UPDATES
    assert any(not kept for step in keeps[0] for kept in step), keeps[0]

    states = [flat_tensors(torch.load(records / f"rank{r}.pt", weights_only=False)) for r in (0, 1)]
    assert states[0].keys() == states[1].keys()
    assert any("teacher" in key for key in states[0])
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key
