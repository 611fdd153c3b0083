"""LeNet-5-style image classifier, as a `keras.Model` subclass.

Two convolution and pooling stages, then three Dense layers:
Conv2D 5x5 (6 filters), MaxPool 2, Conv2D 5x5 (16 filters), MaxPool 2,
Flatten, Dense 120, Dense 84, Dense num_classes. LeCun et al. (1998) used
scaled tanh and subsampling; this version uses ReLU and max pooling, as
most modern re-implementations do.

With `padding="valid"` a 32x32x3 image shrinks to 28x28x6, 14x14x6,
10x10x16, 5x5x16 = 400 features (62,006 parameters); with `"same"` the
convolutions keep the size: 32x32x6, 16x16x6, 16x16x16, 8x8x16 = 1,024
features (136,886 parameters).
"""

import keras

from kerasdl.zoo import _blocks
from kerasdl.zoo import _checks
from kerasdl.zoo.registry import register

_LENET_SOURCE = (
    "LeCun et al. (1998), Gradient-Based Learning Applied to Document "
    "Recognition, §II.B (LeNet-5), with ReLU and max pooling"
)

# LeNet-5's layer sizes (LeCun et al. 1998, §II.B): C1 and C3 filters,
# the 5x5 kernels, 2x2 pooling, and the F5/F6 widths.
CONV_FILTERS = (6, 16)
KERNEL_SIZE = 5
POOL_SIZE = 2
DENSE_UNITS = (120, 84)


def minimum_image_size(padding):
    """Returns the smallest height/width LeNet accepts with `padding`.

    "valid": each 5x5 convolution removes 4 pixels and each pooling halves
    (rounding down), and the last pooling needs at least 2 pixels: 16 -> 12
    -> 6 -> 2 -> 1. "same": only the two poolings shrink: 4 -> 2 -> 1.
    """
    _checks.choice("padding", padding, _checks.PADDINGS)
    shrink = KERNEL_SIZE - 1 if padding == "valid" else 0
    size = 1
    for _ in CONV_FILTERS:
        # Undo one stage: the pooling needs 2 * size, the conv adds shrink.
        size = POOL_SIZE * size + shrink
    return size


def _check_input_shape(input_shape, padding):
    """Checks `(height, width, channels)` against the minimum size."""
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else ()
    if len(shape) != 3 or not all(
        _checks.is_integer(size) and size >= 1 for size in shape
    ):
        raise ValueError(
            "Argument `input_shape` must be (height, width, channels) with "
            f"positive integers. Received: input_shape={input_shape!r}"
        )
    minimum = minimum_image_size(padding)
    if min(shape[:2]) < minimum:
        raise ValueError(
            f"Argument `input_shape` is too small for padding={padding!r}: "
            f"height and width must be at least {minimum}. "
            f"Received: input_shape={shape!r}"
        )
    return tuple(int(size) for size in shape)


@keras.saving.register_keras_serializable(package="kerasdl")
class LeNet(keras.Model):
    """LeNet-5-style convolutional classifier with ReLU and max pooling.

    Args:
        num_classes: Classes of the softmax.
        padding: `"valid"` (convolutions shrink the image by 4 pixels) or
            `"same"` (they keep its size).
        input_shape: `(height, width, channels)` of the images, e.g.
            `(32, 32, 3)` (CIFAR-10) or `(28, 28, 1)` (MNIST).
        hand_written_activations: If `True`, kerasdl's ReLU with its
            hand-written gradient; if `False`, Keras' built-in.
        **kwargs: Base `keras.Model` arguments (`name`, `dtype`, ...).

    Input shape:
        `(batch, height, width, channels)` floats.

    Output shape:
        `(batch, num_classes)` class probabilities (float32).

    Raises:
        ValueError: If `padding` is unknown, `num_classes < 2`, or the
            image is smaller than `minimum_image_size(padding)`.

    Example:

    >>> model = LeNet(num_classes=10, padding="valid")
    >>> model.build((None, 32, 32, 3))
    >>> model.count_params()
    62006
    """

    def __init__(
        self,
        num_classes=10,
        padding="valid",
        input_shape=(32, 32, 3),
        hand_written_activations=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_classes = _checks.num_classes(num_classes)
        self.padding = _checks.choice("padding", padding, _checks.PADDINGS)
        # Stored as `image_shape`: a Keras model's `input_shape` means the
        # shape with its batch axis; get_config returns it as input_shape.
        self.image_shape = _check_input_shape(input_shape, padding)
        self.hand_written_activations = _checks.boolean(
            "hand_written_activations", hand_written_activations
        )

        # --- Layers, in the order they are applied ---
        self.stack = []
        for stage, filters in enumerate(CONV_FILTERS, start=1):
            self.stack += [
                keras.layers.Conv2D(
                    filters, KERNEL_SIZE, padding=padding, name=f"conv_{stage}"
                ),
                self._relu(f"relu_conv_{stage}"),
                keras.layers.MaxPooling2D(POOL_SIZE, name=f"pool_{stage}"),
            ]
        self.stack.append(keras.layers.Flatten(name="flatten"))
        for index, units in enumerate(DENSE_UNITS, start=1):
            self.stack += [
                keras.layers.Dense(units, name=f"dense_{index}"),
                self._relu(f"relu_dense_{index}"),
            ]
        self.stack += [
            keras.layers.Dense(self.num_classes, name="logits"),
            keras.layers.Activation(
                "softmax", dtype=_blocks.softmax_dtype(), name="softmax"
            ),
        ]

    def _relu(self, name):
        return _blocks.activation_layer(
            "relu", self.hand_written_activations, name
        )

    def build(self, input_shape):
        # Build layer by layer, passing each one's output shape on.
        shape = tuple(input_shape)
        for layer in self.stack:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def build_from_config(self, config):
        super().build_from_config(config)
        # Keras exports (SavedModel) a subclassed model only once it has
        # been called; a model reloaded from a .keras file has only been
        # built, so give it one forward pass on a zero image.
        self._call_once()

    def _call_once(self):
        self(keras.ops.zeros((1, *self.image_shape)))

    def call(self, inputs, training=None):
        outputs = inputs
        for layer in self.stack:
            outputs = layer(outputs, training=training)
        return outputs

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.stack:
            shape = layer.compute_output_shape(shape)
        return shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "padding": self.padding,
                "input_shape": self.image_shape,
                "hand_written_activations": self.hand_written_activations,
            }
        )
        return config


def _build_lenet(num_classes, padding, input_shape, hand_written_activations):
    """Returns a built LeNet, so that its weights and shapes exist."""
    model = LeNet(
        num_classes=num_classes,
        padding=padding,
        input_shape=input_shape,
        hand_written_activations=hand_written_activations,
        name=f"image_cnn_{padding}",
    )
    model.build((None, *model.image_shape))
    # Called once as well: describe(), export and summary() need it.
    model._call_once()
    return model


@register(task="image_classification", source=_LENET_SOURCE)
def image_cnn_valid(
    num_classes=10,
    padding="valid",
    input_shape=(32, 32, 3),
    hand_written_activations=True,
):
    """LeNet with "valid" convolutions: 62,006 parameters on 32x32x3.

    Args:
        num_classes: Classes of the softmax.
        padding: `"valid"` or `"same"`.
        input_shape: `(height, width, channels)`; at least 16x16 for
            `"valid"`.
        hand_written_activations: kerasdl's ReLU if `True`, else Keras'.

    Returns:
        A built `LeNet`.

    Raises:
        ValueError: If an argument has an invalid value.

    Example:

    >>> from kerasdl import zoo
    >>> zoo.build("image_cnn_valid", input_shape=(28, 28, 1)).count_params()
    44426
    """
    return _build_lenet(
        num_classes, padding, input_shape, hand_written_activations
    )


@register(task="image_classification", source=_LENET_SOURCE)
def image_cnn_same(
    num_classes=10,
    padding="same",
    input_shape=(32, 32, 3),
    hand_written_activations=True,
):
    """LeNet with "same" convolutions: 136,886 parameters on 32x32x3.

    Args:
        num_classes: Classes of the softmax.
        padding: `"same"` or `"valid"`.
        input_shape: `(height, width, channels)`; at least 4x4 for
            `"same"`.
        hand_written_activations: kerasdl's ReLU if `True`, else Keras'.

    Returns:
        A built `LeNet`.

    Raises:
        ValueError: If an argument has an invalid value.

    Example:

    >>> from kerasdl import zoo
    >>> zoo.build("image_cnn_same").count_params()
    136886
    """
    return _build_lenet(
        num_classes, padding, input_shape, hand_written_activations
    )
