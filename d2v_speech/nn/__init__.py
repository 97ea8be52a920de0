"""Building blocks with weights: the data2vec audio encoder and its configuration."""

from d2v_speech.nn.config import DEFAULT_CONV_LAYERS, EncoderConfig
from d2v_speech.nn.data2vec_audio import Data2VecAudioModel
from d2v_speech.nn.feature_encoder import ConvBlock, FeatureEncoder, FeatureProjection
from d2v_speech.nn.positional import PositionalConvEmbedding, PositionalConvLayer
from d2v_speech.nn.transformer import (
    EncoderLayer,
    EncoderOutput,
    FeedForward,
    SelfAttention,
    TransformerEncoder,
)

__all__ = [
    "DEFAULT_CONV_LAYERS",
    "ConvBlock",
    "Data2VecAudioModel",
    "EncoderConfig",
    "EncoderLayer",
    "EncoderOutput",
    "FeatureEncoder",
    "FeatureProjection",
    "FeedForward",
    "PositionalConvEmbedding",
    "PositionalConvLayer",
    "SelfAttention",
    "TransformerEncoder",
]
