"""Compiled Transformer layers train as eager ones: the same losses over 20 updates (1e-5)."""

from __future__ import annotations

import pytest
import torch

from d2v_speech.nn.compiled import compile_transformer_layers
from d2v_speech.nn.config import EncoderConfig
from d2v_speech.nn.data2vec_audio import Data2VecAudioModel
from d2v_speech.ssl.data2vec import Data2VecObjective
from d2v_speech.ssl.target_builder import TopKTargetBuilder


def micro_objective() -> Data2VecObjective:
    torch.manual_seed(0)
    config = EncoderConfig(
        conv_layers=[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2,
        embed_dim=32, num_layers=2, num_heads=4, ffn_dim=64, pos_conv_depth=2,
        pos_conv_kernel=5, pos_conv_groups=4, layerdrop=0.0, layer_norm_first=True,
        dropout=0.1, attention_dropout=0.1,
    )  # fmt: skip
    return Data2VecObjective(Data2VecAudioModel(config), target_builder=TopKTargetBuilder(top_k=2))


def losses(objective: Data2VecObjective, updates: int) -> list[float]:
    optimizer = torch.optim.AdamW(objective.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    out = []
    for update in range(updates):
        lengths = torch.tensor([8000, 6400 - 320 * (update % 3)])  # shapes vary, as batches do
        wav = torch.randn(2, 8000, generator=generator)
        torch.manual_seed(100 + update)  # the same masks and dropout draws in both runs
        loss = objective(wav, lengths)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        objective.after_optimizer_step(update + 1)
        out.append(loss.item())
    return out


@pytest.mark.slow
def test_compiled_layers_give_the_eager_losses():
    eager, compiled = micro_objective(), micro_objective()
    assert compile_transformer_layers([compiled, compiled.teacher.model]) == 4  # student + teacher
    assert compile_transformer_layers([compiled]) == 0  # already compiled: left alone
    # compiled in place: the checkpoint keys do not change
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    reference, result = losses(eager, 20), losses(compiled, 20)
    assert max(abs(a - b) for a, b in zip(reference, result, strict=True)) < 1e-5
    assert reference[-1] != reference[0]  # it did train
