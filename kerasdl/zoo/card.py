"""Model cards: every layer's output shape and every weight's size.

`describe(name)` builds a registered model and returns its `ModelCard`;
`describe_model(model)` does the same for any built Keras model. `str(card)`
is a fixed-width table, `card.to_dict()` the same data as JSON-able values.
"""

import dataclasses
import math
from typing import Any

import keras

from kerasdl.zoo import registry

_COLUMNS = (
    ("Layer (type)", 40),
    ("Output shape", 20),
    ("Weight", 18),
    ("Shape", 14),
)
_PARAMS_WIDTH = 10


@dataclasses.dataclass(frozen=True)
class WeightRow:
    """One weight variable: its name, shape, size and whether it trains."""

    name: str
    shape: tuple
    count: int
    trainable: bool


@dataclasses.dataclass(frozen=True)
class LayerRow:
    """One layer: its name, class, output shape and weights."""

    name: str
    class_name: str
    output_shape: Any
    weights: tuple

    @property
    def count(self):
        """Parameters held by this layer's weights."""
        return sum(weight.count for weight in self.weights)


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """A readable description of a built model.

    Args:
        name: The model's name (the registered name for `describe`).
        layers: One `LayerRow` per layer, in order.
        trainable_count: Trainable parameters (shared weights once).
        non_trainable_count: Non-trainable parameters.
        task: The registered task, or `""`.
        source: The paper and section, or `""`.
        arguments: The builder arguments the model was built with.
        note: Extra explanation for readers, or `""`.

    Example:

    >>> from kerasdl import zoo
    >>> card = zoo.describe("text_cnn")
    >>> card.total_count
    6023
    """

    name: str
    layers: tuple
    trainable_count: int
    non_trainable_count: int
    task: str = ""
    source: str = ""
    arguments: dict = dataclasses.field(default_factory=dict)
    note: str = ""

    @property
    def total_count(self):
        """All parameters, trainable or not."""
        return self.trainable_count + self.non_trainable_count

    def to_dict(self):
        """Returns the card as JSON-able data (lists, str, int, bool)."""
        return {
            "name": self.name,
            "task": self.task,
            "source": self.source,
            "arguments": {k: _jsonable(v) for k, v in self.arguments.items()},
            "note": self.note,
            "layers": [
                {
                    "name": layer.name,
                    "class_name": layer.class_name,
                    "output_shape": _jsonable(layer.output_shape),
                    "count": layer.count,
                    "weights": [
                        {
                            "name": weight.name,
                            "shape": list(weight.shape),
                            "count": weight.count,
                            "trainable": weight.trainable,
                        }
                        for weight in layer.weights
                    ],
                }
                for layer in self.layers
            ],
            "trainable_count": self.trainable_count,
            "non_trainable_count": self.non_trainable_count,
            "total_count": self.total_count,
        }

    def to_table(self):
        """Returns the card as a fixed-width text table."""
        lines = [f"Model: {self.name}"]
        if self.task:
            lines.append(f"Task: {self.task}")
        if self.source:
            lines.append(f"Source: {self.source}")
        if self.arguments:
            arguments = ", ".join(
                f"{key}={_short(value)}"
                for key, value in self.arguments.items()
            )
            lines.append(f"Arguments: {arguments}")
        if self.note:
            lines.append(f"Note: {self.note}")

        header = "".join(title.ljust(width) for title, width in _COLUMNS)
        header += "Params".rjust(_PARAMS_WIDTH)
        rule = "-" * len(header)
        lines += ["", header, rule]
        for layer in self.layers:
            lines += _layer_lines(layer)
        lines += [
            rule,
            f"Total params: {self.total_count:,}",
            f"Trainable params: {self.trainable_count:,}",
            f"Non-trainable params: {self.non_trainable_count:,}",
        ]
        return "\n".join(lines)

    def __str__(self):
        return self.to_table()


def _jsonable(value):
    """Tuples become lists, NumPy arrays their shape; others stay."""
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"array{tuple(value.shape)}"
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _short(value):
    """A one-line form of an argument (arrays by their shape)."""
    jsonable = _jsonable(value)
    if isinstance(jsonable, list) and isinstance(value, tuple):
        return str(tuple(value))
    return repr(jsonable) if isinstance(jsonable, str) else str(jsonable)


def _layer_lines(layer):
    """The table rows of one layer: the first weight on its own line."""
    (_, layer_width), (_, shape_width), (_, weight_width), (_, size_width) = (
        _COLUMNS
    )
    title = f"{layer.name} ({layer.class_name})"
    shape = "?" if layer.output_shape is None else str(layer.output_shape)
    first = title.ljust(layer_width - 1)[: layer_width - 1] + " "
    first += shape.ljust(shape_width)
    if not layer.weights:
        return [first.rstrip()]

    lines = []
    for index, weight in enumerate(layer.weights):
        prefix = first if index == 0 else " " * (layer_width + shape_width)
        name = weight.name if weight.trainable else f"{weight.name} (frozen)"
        lines.append(
            prefix
            + name.ljust(weight_width)
            + str(weight.shape).ljust(size_width)
            + f"{weight.count:,}".rjust(_PARAMS_WIDTH)
        )
    return lines


def _weight_rows(layer):
    rows = []
    for variable in layer.weights:
        shape = tuple(int(size) for size in variable.shape)
        rows.append(
            WeightRow(
                name=variable.name,
                shape=shape,
                count=math.prod(shape),
                trainable=bool(variable.trainable),
            )
        )
    return tuple(rows)


def _shape_of(value):
    """A tensor's shape as a tuple; a tuple of shapes for several outputs."""
    if isinstance(value, (list, tuple)):
        return tuple(_shape_of(item) for item in value)
    return tuple(value.shape)


def _output_shapes(model):
    """Returns `{layer name: output shape}` for every layer it can tell.

    A functional or Sequential model records each layer's symbolic output.
    A subclassed model does not; if it was built with one input shape and
    its layers run one after the other (as `LeNet`), each layer's
    `compute_output_shape` gives the next one's input.
    """
    shapes = {}
    for layer in model.layers:
        try:
            shapes[layer.name] = _shape_of(layer.output)
        except (AttributeError, ValueError):
            # Never called symbolically (a subclassed model's layers), or
            # called more than once (a shared layer): no single output.
            shapes[layer.name] = None
    if any(shape is not None for shape in shapes.values()):
        return shapes

    input_shape = (model.get_build_config() or {}).get("input_shape")
    if input_shape is None:
        return shapes
    shape = tuple(input_shape)
    for layer in model.layers:
        try:
            shape = tuple(layer.compute_output_shape(shape))
        except Exception:
            # The layers do not form a chain: the rest show as "?".
            break
        shapes[layer.name] = shape
    return shapes


def describe_model(model, **card_fields):
    """Returns the `ModelCard` of any built Keras model.

    Args:
        model: A built `keras.Model` (functional, Sequential or subclassed).
        **card_fields: Extra `ModelCard` fields (`task`, `source`,
            `arguments`, `note`).

    Returns:
        A `ModelCard`.

    Raises:
        ValueError: If `model` is not built (it has no weights yet).
        TypeError: If `model` is not a `keras.Model`.

    Example:

    >>> import keras
    >>> from kerasdl import zoo
    >>> inputs = keras.Input((4,))
    >>> model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    >>> zoo.describe_model(model).total_count
    10
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Argument `model` must be a keras.Model. "
            f"Received: model={type(model).__name__}"
        )
    if not model.built:
        raise ValueError(
            "Argument `model` must be built (call it on data or "
            f"`model.build(input_shape)` first). Received: model={model.name}"
        )
    shapes = _output_shapes(model)
    rows = tuple(
        LayerRow(
            name=layer.name,
            class_name=type(layer).__name__,
            output_shape=shapes.get(layer.name),
            weights=_weight_rows(layer),
        )
        for layer in model.layers
    )
    return ModelCard(
        name=model.name,
        layers=rows,
        trainable_count=_count(model.trainable_weights),
        non_trainable_count=_count(model.non_trainable_weights),
        **card_fields,
    )


def _count(variables):
    return sum(math.prod(int(size) for size in v.shape) for v in variables)


def _fill_note(note, arguments):
    """Fills `{argument}` fields of a note; a note with others stays raw."""
    try:
        return note.format(**arguments)
    except (KeyError, IndexError, ValueError):
        return note


def describe(name, **overrides):
    """Builds a registered model and returns its `ModelCard`.

    Args:
        name: A registered name (see `list_models()`).
        **overrides: Builder arguments to change, as for `build`.

    Returns:
        A `ModelCard` with the registered task, source, the arguments the
        model was built with and the preset's note.

    Raises:
        ValueError: If `name` is unknown or an override is invalid.
        TypeError: If an override is not an argument of the builder.

    Example:

    >>> from kerasdl import zoo
    >>> print(zoo.describe("simple_rnn").to_table())  # doctest: +ELLIPSIS
    Model: simple_rnn
    ...
    Total params: 17,754
    ...
    """
    info = registry.get_model_info(name)
    model = registry.build(name, **overrides)
    arguments = {**info.defaults, **overrides}
    card = describe_model(
        model,
        task=info.task,
        source=info.source,
        arguments=arguments,
        note=_fill_note(info.note, arguments),
    )
    # The card carries the registered name, whatever the builder named
    # the model.
    return dataclasses.replace(card, name=name)
