"""Models: the brain encoder, its building blocks and the linear (ridge) baseline."""

from .channel_reordering import ChannelReordering
from .conv import DilatedConv, DilatedConvStack, GLUConv
from .encoder import TABLE4_ABLATIONS, BrainEncoder, EncoderConfig
from .readout import WindowClassifier
from .ridge import RidgeDecoder
from .spatial_attention import SpatialAttention
from .subject_layers import SubjectEmbedding, SubjectLayers

__all__ = [
    "TABLE4_ABLATIONS",
    "BrainEncoder",
    "ChannelReordering",
    "DilatedConv",
    "DilatedConvStack",
    "EncoderConfig",
    "GLUConv",
    "RidgeDecoder",
    "SpatialAttention",
    "SubjectEmbedding",
    "SubjectLayers",
    "WindowClassifier",
]
