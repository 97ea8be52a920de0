"""What only a machine with a CUDA device can check: the same numbers on the GPU as on the CPU.

Marked ``cuda``: skipped with a reason on CPU machines; ``benchmarks/gpu_check.sh`` runs them."""

import pytest
import torch

from d2v_speech.nn import Data2VecAudioModel
from d2v_speech.nn.presets import load_model_config
from d2v_speech.ssl.data2vec import Data2VecObjective
from d2v_speech.ssl.target_builder import TopKTargetBuilder

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_the_encoder_gives_the_same_hidden_states_on_the_gpu():
    torch.manual_seed(0)
    model = Data2VecAudioModel(load_model_config("tiny")).eval()
    wav = torch.randn(2, 16000)
    lengths = torch.tensor([16000, 12000])
    with torch.no_grad():
        cpu = model(wav, lengths).last_hidden_state
        gpu = model.cuda()(wav.cuda(), lengths.cuda()).last_hidden_state.cpu()
    assert torch.allclose(cpu, gpu, atol=1e-4)


def test_a_data2vec_update_runs_under_bf16_autocast_on_the_gpu():
    torch.manual_seed(0)
    model = Data2VecAudioModel(load_model_config("tiny"))
    objective = Data2VecObjective(model, target_builder=TopKTargetBuilder(top_k=4)).cuda()
    optimizer = torch.optim.AdamW(objective.parameters(), lr=1e-4)
    wav, lengths = torch.randn(2, 32000, device="cuda"), torch.tensor([32000, 24000], device="cuda")
    for update in range(1, 4):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = objective(wav, lengths)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        objective.after_optimizer_step(update)
        assert torch.isfinite(loss)
