"""The kerasdl model zoo: registered model builders and model cards.

Every model is built by name, with keyword overrides of its defaults:

>>> from kerasdl import zoo
>>> zoo.list_models("text_*")
['text_cnn', 'text_cnn_kim']
>>> model = zoo.build("text_cnn", num_classes=2)
>>> print(zoo.describe("text_cnn"))  # doctest: +SKIP

Importing this package registers the built-in models: `text_cnn`,
`text_cnn_kim`, `simple_rnn`, `rnn_language_model`, `image_cnn_valid` and
`image_cnn_same`.
"""

from kerasdl.zoo import batches
from kerasdl.zoo import lenet
from kerasdl.zoo import rnn
from kerasdl.zoo import text_cnn
from kerasdl.zoo.batches import random_batch
from kerasdl.zoo.card import LayerRow
from kerasdl.zoo.card import ModelCard
from kerasdl.zoo.card import WeightRow
from kerasdl.zoo.card import describe
from kerasdl.zoo.card import describe_model
from kerasdl.zoo.lenet import LeNet
from kerasdl.zoo.registry import TASKS
from kerasdl.zoo.registry import ModelInfo
from kerasdl.zoo.registry import build
from kerasdl.zoo.registry import get_model_info
from kerasdl.zoo.registry import list_models
from kerasdl.zoo.registry import register
from kerasdl.zoo.registry import unregister
from kerasdl.zoo.rnn import sentence_classifier
from kerasdl.zoo.rnn import sentence_encoder

__all__ = [
    "TASKS",
    "LayerRow",
    "LeNet",
    "ModelCard",
    "ModelInfo",
    "WeightRow",
    "batches",
    "build",
    "describe",
    "describe_model",
    "get_model_info",
    "lenet",
    "list_models",
    "random_batch",
    "register",
    "rnn",
    "sentence_classifier",
    "sentence_encoder",
    "text_cnn",
    "unregister",
]
