"""What every objective with an EMA teacher of ``model.encoder`` does around the optimiser step.

:class:`EncoderTeacherHooks` is a mix-in for an ``nn.Module`` with ``self.model`` (the student
network) and ``self.teacher`` (an :class:`~d2v_speech.ssl.ema.EMATeacher` built on
``model.encoder``): the EMA step after each update, a reset to the student, and the teacher's
weights and update counter in ``state_dict()`` under ``_extra_state`` (so a SpeechBrain
Checkpointer that saves the objective resumes the teacher too).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["EncoderTeacherHooks"]


class EncoderTeacherHooks:
    """Teacher hooks shared by the data2vec 1.0 and 2.0 engines (see the module docstring)."""

    def teacher_source(self) -> torch.nn.Module:
        """The student module the teacher averages (``model.encoder`` unless overridden)."""
        return self.model.encoder

    @torch.no_grad()
    def update_teacher(self) -> None:
        """One EMA step of the teacher towards ``model.encoder``."""
        source = self.teacher_source()
        self.teacher.to(next(source.parameters()).device)
        self.teacher.step(source)

    def after_optimizer_step(self, num_updates: int | None = None) -> None:
        """Hook for the Brain after every real optimiser step (call on the unwrapped module).

        ``num_updates`` (the Brain's update count) is unused here; the aqc objectives schedule
        their quantizer on it.
        """
        del num_updates
        self.update_teacher()

    def reset_teacher(self) -> None:
        """Copy the student into the teacher (e.g. after loading pretrained weights)."""
        self.teacher.model.load_state_dict(self.teacher_source().state_dict())

    def get_extra_state(self) -> dict[str, Any]:
        """Teacher weights and update counter, saved with ``state_dict()``."""
        return {"teacher": self.teacher.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`get_extra_state` saved."""
        if not isinstance(state, dict) or "teacher" not in state:
            raise ValueError("objective extra state must be a dict with a 'teacher' entry")
        self.teacher.load_state_dict(state["teacher"])
