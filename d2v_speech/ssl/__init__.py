"""Self-supervised machinery: masking, EMA teacher, targets, losses, monitors and objectives."""

from d2v_speech.ssl.data2vec import Data2VecObjective, FrontendOutput
from d2v_speech.ssl.ema import EMATeacher, annealed_decay
from d2v_speech.ssl.masking import compute_channel_mask, compute_span_mask
from d2v_speech.ssl.monitors import CollapseMonitor, frame_std
from d2v_speech.ssl.regression import regression_loss
from d2v_speech.ssl.targets import build_targets, instance_norm_over_time

__all__ = [
    "CollapseMonitor",
    "Data2VecObjective",
    "EMATeacher",
    "FrontendOutput",
    "annealed_decay",
    "build_targets",
    "compute_channel_mask",
    "compute_span_mask",
    "frame_std",
    "instance_norm_over_time",
    "regression_loss",
]
