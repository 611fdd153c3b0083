"""Keras layers with hand-written backward passes."""

from kerasdl.layers.activations import ACTIVATIONS
from kerasdl.layers.activations import ReLU
from kerasdl.layers.activations import Sigmoid
from kerasdl.layers.activations import Tanh
from kerasdl.layers.activations import get_activation
from kerasdl.layers.activations import relu
from kerasdl.layers.activations import sigmoid
from kerasdl.layers.activations import tanh

__all__ = [
    "ACTIVATIONS",
    "ReLU",
    "Sigmoid",
    "Tanh",
    "get_activation",
    "relu",
    "sigmoid",
    "tanh",
]
