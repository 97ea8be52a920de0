"""EMA teacher against a naive per-parameter loop of the EMA recursion."""

import pytest
import torch
from speechbrain.utils.checkpoints import Checkpointer
from torch import nn

from d2v_speech.ssl.ema import EMATeacher, annealed_decay


class TinyEncoder(nn.Module):
    """Stands in for the Transformer: averaged layers, a copied pos-conv, a buffer."""

    def __init__(self):
        super().__init__()
        self.pos_conv_embed = nn.Conv1d(4, 4, 3, padding=1)
        self.layers = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
        self.norm = nn.BatchNorm1d(4)

    def forward(self, x):
        x = x + self.pos_conv_embed(x.transpose(1, 2)).transpose(1, 2)
        return self.layers(x)


class Owner(nn.Module):
    def __init__(self):
        super().__init__()
        self.student = TinyEncoder()
        self.teacher = EMATeacher(self.student, 0.9, 0.99, anneal_steps=10)


def perturb(module, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(torch.randn(param.shape, generator=generator))
        module.norm.running_mean.add_(torch.randn(4, generator=generator))


def test_decay_schedule_matches_formula():
    tau0, tau_end, total = 0.999, 0.9999, 30000
    expected = {
        0: tau0,
        total // 2: tau_end - (tau_end - tau0) * 0.5,
        total: tau_end,
        2 * total: tau_end,
    }
    teacher = EMATeacher(nn.Linear(2, 2), tau0, tau_end, total)
    for step, value in expected.items():
        teacher.num_updates = step
        assert teacher.decay == pytest.approx(value, abs=1e-12)
        assert annealed_decay(step, tau0, tau_end, total) == pytest.approx(value, abs=1e-12)


def test_steps_match_naive_ema_loop_and_copy_pos_conv():
    student = TinyEncoder()
    teacher = EMATeacher(student, 0.9, 0.99, anneal_steps=4)
    naive = {name: p.detach().clone() for name, p in student.named_parameters()}
    for step in range(6):
        perturb(student, seed=step)
        tau = 0.99 - (0.99 - 0.9) * (1 - step / 4) if step < 4 else 0.99
        for name, param in student.named_parameters():
            if name.startswith("pos_conv_embed."):
                naive[name] = param.detach().clone()
            else:
                naive[name] = tau * naive[name] + (1 - tau) * param.detach()
        teacher.step(student)
    assert teacher.num_updates == 6
    teacher_params = dict(teacher.model.named_parameters())
    for name, value in naive.items():
        torch.testing.assert_close(teacher_params[name], value, rtol=0, atol=1e-6)
    student_params = dict(student.named_parameters())
    for name in ("pos_conv_embed.weight", "pos_conv_embed.bias"):
        assert torch.equal(teacher_params[name], student_params[name])
    assert not torch.equal(teacher_params["layers.0.weight"], student_params["layers.0.weight"])
    torch.testing.assert_close(teacher.model.norm.running_mean, student.norm.running_mean)


def test_teacher_is_hidden_from_owner_frozen_and_in_eval():
    owner = Owner()
    assert [id(p) for p in owner.parameters()] == [id(p) for p in owner.student.parameters()]
    assert "teacher" not in dict(owner.named_modules())
    owner.train()
    out = owner.teacher(torch.randn(2, 5, 4))
    assert not owner.teacher.model.training
    assert not out.requires_grad
    assert all(not p.requires_grad for p in owner.teacher.parameters())


def test_frozen_student_parameter_is_copied_and_decay_one_freezes():
    student = TinyEncoder()
    student.layers[0].weight.requires_grad_(False)
    teacher = EMATeacher(student, 1.0, 1.0, anneal_steps=0, copy_patterns=())
    before = teacher.model.layers[1].weight.clone()
    perturb(student, seed=0)
    teacher.step(student)
    assert torch.equal(teacher.model.layers[0].weight, student.layers[0].weight)
    assert torch.equal(teacher.model.layers[1].weight, before)


def test_state_dict_round_trip_keeps_weights_and_counter():
    student = TinyEncoder()
    teacher = EMATeacher(student, 0.5, 0.9, anneal_steps=3)
    for step in range(2):
        perturb(student, seed=step)
        teacher.step(student)
    restored = EMATeacher(TinyEncoder(), 0.5, 0.9, anneal_steps=3)
    restored.load_state_dict(teacher.state_dict())
    assert restored.num_updates == 2 and restored.decay == teacher.decay
    for (name, a), (_, b) in zip(
        teacher.model.state_dict().items(), restored.model.state_dict().items()
    ):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="num_updates"):
        restored.load_state_dict({"model": {}})


def test_speechbrain_checkpointer_round_trip(tmp_path):
    student = TinyEncoder()
    teacher = EMATeacher(student, 0.5, 0.9, anneal_steps=3)
    perturb(student, seed=1)
    teacher.step(student)
    Checkpointer(tmp_path, recoverables={"ema_teacher": teacher}).save_checkpoint()
    fresh = EMATeacher(TinyEncoder(), 0.5, 0.9, anneal_steps=3)
    assert Checkpointer(tmp_path, recoverables={"ema_teacher": fresh}).recover_if_possible()
    assert fresh.num_updates == 1
    torch.testing.assert_close(fresh.model.layers[0].weight, teacher.model.layers[0].weight)


def test_compute_dtype_autocasts_forward_but_keeps_fp32_master():
    teacher = EMATeacher(nn.Linear(4, 4), compute_dtype=torch.bfloat16)
    out = teacher(torch.randn(3, 4))
    assert out.dtype == torch.bfloat16
    assert teacher.model.weight.dtype == torch.float32
    expected = nn.functional.linear(torch.ones(1, 4), teacher.model.weight, teacher.model.bias)
    torch.testing.assert_close(teacher(torch.ones(1, 4)).float(), expected, rtol=2e-2, atol=2e-2)


def test_mismatched_student_raises():
    teacher = EMATeacher(TinyEncoder())
    with pytest.raises(ValueError, match="differ"):
        teacher.step(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="decay_start"):
        EMATeacher(nn.Linear(2, 2), decay_start=1.5)
