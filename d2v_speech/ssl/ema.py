"""EMA teacher: an exponential moving average of a student module, with an annealed decay.

The teacher is a deep copy of the student module (in data2vec: ``model.encoder``, the Transformer
stack with its positional conv and LayerNorm). Its parameters are fp32 master weights, never
require grad, and the copy stays in eval mode. Each :meth:`EMATeacher.step` either averages or
copies each parameter:

* averaged: ``theta_T <- tau * theta_T + (1 - tau) * theta_S`` (fp32);
* copied: names containing one of ``copy_patterns`` (data2vec 1.0 copies ``pos_conv_embed.``),
  and parameters the student does not train (``requires_grad=False``);
* buffers are always copied.

Parts of the network that are shared between student and teacher (the CNN and the projection)
are simply not inside the teacher.

:class:`EMATeacher` is deliberately **not** an ``nn.Module``: assigning it to an attribute of an
``nn.Module`` does not register it, so the owner's ``parameters()`` (the optimiser, DDP) never see
the teacher, and ``owner.to(device)`` does not move it; :meth:`EMATeacher.forward` follows the
input's device instead. It is a SpeechBrain checkpoint recoverable (``save``/``load`` hooks).

Mixed precision: the master weights stay fp32 in ``self.model``; with ``compute_dtype`` set,
:meth:`EMATeacher.forward` runs the copy under ``torch.autocast`` in that dtype.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from torch import nn

__all__ = ["EMATeacher", "EMATeacherSettings", "annealed_decay"]


def annealed_decay(step: int, decay_start: float, decay_end: float, anneal_steps: int) -> float:
    """Linear anneal ``tau(t) = tau_end - (tau_end - tau_0) * (1 - t / T)`` for ``t < T``, else
    ``tau_end`` (fairseq ``get_annealed_rate``)."""
    if anneal_steps <= 0 or step >= anneal_steps:
        return decay_end
    return decay_end - (decay_end - decay_start) * (1.0 - step / anneal_steps)


@register_checkpoint_hooks
class EMATeacher:
    """Exponential-moving-average copy of ``student`` with fp32 master weights.

    Arguments
    ---------
    student : nn.Module
        The module to track; deep-copied at construction.
    decay_start : float
        Decay ``tau_0`` at update 0.
    decay_end : float
        Decay reached after ``anneal_steps`` updates and held afterwards. 1.0 freezes the teacher.
    anneal_steps : int
        Length ``T`` of the linear anneal, in EMA updates.
    copy_patterns : Sequence[str]
        Parameters whose name contains any of these substrings are copied, not averaged.
    compute_dtype : torch.dtype | None
        Autocast dtype for :meth:`forward` (e.g. ``torch.bfloat16``); None runs in fp32.

    Example
    -------
    >>> student = nn.Linear(4, 4)
    >>> teacher = EMATeacher(student, decay_start=0.9, decay_end=0.99, anneal_steps=10)
    >>> teacher.decay, teacher.num_updates
    (0.9, 0)
    >>> teacher.step(student)
    >>> teacher.num_updates
    1
    """

    def __init__(
        self,
        student: nn.Module,
        decay_start: float = 0.999,
        decay_end: float = 0.9999,
        anneal_steps: int = 30000,
        copy_patterns: Sequence[str] = ("pos_conv_embed.",),
        compute_dtype: torch.dtype | None = None,
    ) -> None:
        for name, value in (("decay_start", decay_start), ("decay_end", decay_end)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if anneal_steps < 0:
            raise ValueError(f"anneal_steps must be >= 0, got {anneal_steps}")
        if isinstance(copy_patterns, str):
            raise ValueError("copy_patterns must be a sequence of strings, not a single string")
        self.decay_start = float(decay_start)
        self.decay_end = float(decay_end)
        self.anneal_steps = int(anneal_steps)
        self.copy_patterns = tuple(copy_patterns)
        self.compute_dtype = compute_dtype
        self.num_updates = 0
        self.model = copy.deepcopy(student).float()
        self.model.requires_grad_(False)
        self.model.eval()

    @property
    def decay(self) -> float:
        """Decay the next :meth:`step` applies, ``tau(num_updates)``."""
        return annealed_decay(self.num_updates, self.decay_start, self.decay_end, self.anneal_steps)

    def is_copied(self, name: str) -> bool:
        """Whether the parameter ``name`` is copied from the student rather than averaged."""
        return any(pattern in name for pattern in self.copy_patterns)

    @torch.no_grad()
    def step(self, student: nn.Module) -> None:
        """Move the teacher towards ``student`` (unwrap DDP first) and count one update."""
        decay = self.decay
        teacher_params = dict(self.model.named_parameters())
        student_params = dict(student.named_parameters())
        if teacher_params.keys() != student_params.keys():
            missing = sorted(teacher_params.keys() ^ student_params.keys())[:5]
            raise ValueError(f"student and teacher parameter names differ, e.g. {missing}")
        for name, teacher_param in teacher_params.items():
            student_param = student_params[name]
            source = student_param.detach().to(teacher_param.device, torch.float32)
            if self.is_copied(name) or not student_param.requires_grad:
                teacher_param.copy_(source)
            elif decay < 1.0:
                teacher_param.lerp_(source, 1.0 - decay)
        student_buffers = dict(student.named_buffers())
        for name, buffer in self.model.named_buffers():
            buffer.copy_(student_buffers[name].to(buffer.device, buffer.dtype))
        self.num_updates += 1

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the teacher copy without gradients, in eval mode, on the first tensor's device."""
        device = next((a.device for a in args if isinstance(a, torch.Tensor)), self.device)
        self.to(device)
        self.model.eval()
        with torch.no_grad():
            if self.compute_dtype is None:
                return self.model(*args, **kwargs)
            with torch.autocast(device_type=device.type, dtype=self.compute_dtype):
                return self.model(*args, **kwargs)

    __call__ = forward

    @property
    def device(self) -> torch.device:
        """Device of the master weights."""
        return next(self.model.parameters(), torch.empty(0)).device

    def to(self, device: torch.device | str) -> EMATeacher:
        """Move the master weights to ``device`` (they stay fp32)."""
        self.model.to(device)
        return self

    def parameters(self):
        """The teacher's (frozen, fp32) parameters; never hand these to an optimiser."""
        return self.model.parameters()

    def state_dict(self) -> dict[str, Any]:
        """fp32 weights, buffers and the update counter."""
        return {
            "num_updates": self.num_updates,
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (weights stay fp32, on the current device)."""
        if set(state) != {"num_updates", "model"}:
            raise ValueError(
                f"EMA teacher state needs keys num_updates and model, got {set(state)}"
            )
        self.model.load_state_dict(state["model"])
        self.num_updates = int(state["num_updates"])

    @mark_as_saver
    def save(self, path) -> None:
        """SpeechBrain checkpoint saver."""
        torch.save(self.state_dict(), path)

    @mark_as_loader
    def load(self, path, end_of_epoch: bool = False) -> None:
        """SpeechBrain checkpoint loader."""
        del end_of_epoch
        self.load_state_dict(torch.load(path, map_location=self.device))


class EMATeacherSettings:
    """The teacher part of an objective's YAML: its decay schedule and what it copies.

    An objective calls :meth:`build` on the module it wants tracked (``model.encoder``), so the
    YAML states the schedule once without reaching into the model::

        teacher: !new:d2v_speech.ssl.ema.EMATeacherSettings
            decay_start: 0.999
            decay_end: 0.99999
            anneal_steps: 75000
            copy_patterns: []          # data2vec 1.0: [pos_conv_embed.]

    Arguments are those of :class:`EMATeacher` (``compute_dtype`` is the teacher's autocast dtype).
    """

    def __init__(
        self,
        decay_start: float = 0.999,
        decay_end: float = 0.9999,
        anneal_steps: int = 30000,
        copy_patterns: Sequence[str] = ("pos_conv_embed.",),
        compute_dtype: torch.dtype | None = None,
    ) -> None:
        if isinstance(copy_patterns, str):
            raise ValueError("copy_patterns must be a sequence of strings, not a single string")
        self.decay_start = float(decay_start)
        self.decay_end = float(decay_end)
        self.anneal_steps = int(anneal_steps)
        self.copy_patterns = tuple(copy_patterns)
        self.compute_dtype = compute_dtype

    def build(self, student: nn.Module) -> EMATeacher:
        """A fresh :class:`EMATeacher` tracking ``student`` (deep-copied now)."""
        return EMATeacher(
            student,
            decay_start=self.decay_start,
            decay_end=self.decay_end,
            anneal_steps=self.anneal_steps,
            copy_patterns=self.copy_patterns,
            compute_dtype=self.compute_dtype,
        )
