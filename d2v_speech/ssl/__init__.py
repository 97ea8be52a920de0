"""Self-supervised machinery: masking, EMA teacher, targets, losses, monitors, the parts a YAML
composes (masker, teacher, target builder, predictor, quantizer, negative sampler, cluster
scaler, cross-contrastive head) and the objectives that wire them."""

from d2v_speech.ssl.aqc import AQCObjective
from d2v_speech.ssl.cluster_scaler import ClusterScaler, CosineKMeans
from d2v_speech.ssl.cross_contrastive import CrossContrastiveHead
from d2v_speech.ssl.data2vec import Data2VecObjective, FrontendOutput
from d2v_speech.ssl.ema import EMATeacher, EMATeacherSettings, annealed_decay
from d2v_speech.ssl.final_proj_predictor import FinalProjPredictor
from d2v_speech.ssl.masking import compute_channel_mask, compute_span_mask
from d2v_speech.ssl.monitors import CollapseMonitor, frame_std
from d2v_speech.ssl.negative_sampler import NegativeSampler
from d2v_speech.ssl.quantizer_settings import QuantizerSettings
from d2v_speech.ssl.regression import regression_loss
from d2v_speech.ssl.span_masker import SpanMasker
from d2v_speech.ssl.target_builder import TopKTargetBuilder
from d2v_speech.ssl.targets import build_targets, instance_norm_over_time

__all__ = [
    "AQCObjective",
    "ClusterScaler",
    "CollapseMonitor",
    "CosineKMeans",
    "CrossContrastiveHead",
    "Data2VecObjective",
    "EMATeacher",
    "EMATeacherSettings",
    "FinalProjPredictor",
    "FrontendOutput",
    "NegativeSampler",
    "QuantizerSettings",
    "SpanMasker",
    "TopKTargetBuilder",
    "annealed_decay",
    "build_targets",
    "compute_channel_mask",
    "compute_span_mask",
    "frame_std",
    "instance_norm_over_time",
    "regression_loss",
]
