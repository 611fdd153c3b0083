"""The model registry: builder functions registered by name.

A builder is a plain function whose keyword arguments (all with defaults)
describe one model family; `@register(task=...)` files it under its name,
`build(name, **overrides)` calls it, and `get_model_info(name)` tells the
training and export code what kind of model it is and with which defaults.
"""

import dataclasses
import difflib
import fnmatch
import inspect
import logging
from collections.abc import Callable
from typing import Any

import keras

logger = logging.getLogger(__name__)

TASKS = ("text_classification", "image_classification", "language_model")

_REGISTRY: dict[str, "ModelInfo"] = {}


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one model.

    Args:
        name: The registered name, e.g. `"text_cnn"`.
        task: One of `TASKS`: `"text_classification"`,
            `"image_classification"` or `"language_model"`.
        source: Where the architecture comes from (paper and section).
        defaults: The builder's keyword arguments and their default values,
            read from its signature.
        builder: The function that builds the model.
        note: Extra text for the model card; `{argument}` fields are filled
            with the arguments the model was built with.

    Example:

    >>> from kerasdl import zoo
    >>> zoo.get_model_info("text_cnn").defaults["num_classes"]
    3
    """

    name: str
    task: str
    source: str
    defaults: dict[str, Any] = dataclasses.field(hash=False)
    builder: Callable[..., keras.Model] = dataclasses.field(
        hash=False, repr=False
    )
    note: str = ""


def _builder_defaults(builder: Callable) -> dict[str, Any]:
    """Returns `{keyword: default}` for every keyword of `builder`."""
    defaults = {}
    for parameter in inspect.signature(builder).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.default is parameter.empty:
            raise TypeError(
                "Every argument of a model builder needs a default value, "
                "so that `build(name)` alone gives a model. Received: "
                f"builder={builder.__name__}, argument={parameter.name!r}"
            )
        defaults[parameter.name] = parameter.default
    return defaults


def register(
    name: str | None = None,
    *,
    task: str,
    source: str = "",
    overwrite: bool = False,
    note: str = "",
) -> Callable[[Callable[..., keras.Model]], Callable[..., keras.Model]]:
    """Returns a decorator that registers a model builder under `name`.

    Args:
        name: The name to register; defaults to the function's name.
        task: One of `TASKS`; the training and export code pick data and
            signatures from it.
        source: The paper and section the architecture comes from.
        overwrite: If `False`, registering a name twice is an error.
        note: Extra text for the model card, with `{argument}` fields.

    Returns:
        A decorator that registers the builder and returns it unchanged.

    Raises:
        ValueError: If `task` is unknown, or `name` is taken and
            `overwrite` is `False`.
        TypeError: If a builder argument has no default value.

    Example:

    >>> import keras
    >>> from kerasdl import zoo
    >>> @zoo.register(task="image_classification", overwrite=True)
    ... def tiny_mlp(num_classes=10):
    ...     inputs = keras.Input((4,))
    ...     outputs = keras.layers.Dense(num_classes)(inputs)
    ...     return keras.Model(inputs, outputs)
    >>> "tiny_mlp" in zoo.list_models()
    True
    >>> zoo.unregister("tiny_mlp")
    """
    if task not in TASKS:
        raise ValueError(
            f"Unknown task. Expected one of {TASKS}. Received: task={task!r}"
        )

    def decorator(builder):
        model_name = builder.__name__ if name is None else name
        if model_name in _REGISTRY and not overwrite:
            raise ValueError(
                f"A model named {model_name!r} is already registered; pass "
                "overwrite=True to replace it. Received: "
                f"name={model_name!r}"
            )
        _REGISTRY[model_name] = ModelInfo(
            name=model_name,
            task=task,
            source=source,
            defaults=_builder_defaults(builder),
            builder=builder,
            note=note,
        )
        return builder

    return decorator


def unregister(name: str) -> None:
    """Removes a registered model (for tests and interactive sessions).

    Args:
        name: A registered name.

    Raises:
        ValueError: If `name` is not registered.
    """
    get_model_info(name)
    del _REGISTRY[name]


def list_models(pattern: str = "*") -> list[str]:
    """Returns the sorted names of the registered models matching `pattern`.

    Args:
        pattern: A shell-style wildcard (`fnmatch`), e.g. `"text_*"`.

    Returns:
        A sorted list of names.

    Example:

    >>> from kerasdl import zoo
    >>> zoo.list_models("image_cnn_*")
    ['image_cnn_same', 'image_cnn_valid']
    """
    return sorted(fnmatch.filter(_REGISTRY, pattern))


def get_model_info(name: str) -> ModelInfo:
    """Returns the `ModelInfo` of a registered model.

    Args:
        name: A registered name.

    Returns:
        The model's `ModelInfo`.

    Raises:
        ValueError: If `name` is not registered; the message suggests
            close matches.

    Example:

    >>> from kerasdl import zoo
    >>> zoo.get_model_info("rnn_language_model").task
    'language_model'
    """
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3)
        hint = (
            f"Did you mean {' or '.join(map(repr, close))}? " if close else ""
        )
        raise ValueError(
            f"Unknown model. {hint}`kerasdl.zoo.list_models()` lists all "
            f"registered models. Received: name={name!r}"
        )
    return _REGISTRY[name]


def build(name: str, **overrides: Any) -> keras.Model:
    """Builds a registered model, its weights created and its input known.

    Args:
        name: A registered name (see `list_models()`).
        **overrides: Keyword arguments of the builder to change from their
            defaults (see `get_model_info(name).defaults`).

    Returns:
        A built `keras.Model`.

    Raises:
        ValueError: If `name` is not registered, or an override has an
            invalid value.
        TypeError: If an override is not an argument of the builder.

    Example:

    >>> from kerasdl import zoo
    >>> zoo.build("text_cnn").count_params()
    6023
    """
    info = get_model_info(name)
    for keyword, value in overrides.items():
        if keyword not in info.defaults:
            raise TypeError(
                f"Unknown keyword argument {keyword!r} for model {name!r}. "
                f"It accepts: {', '.join(sorted(info.defaults))}. "
                f"Received: {keyword}={value!r}"
            )
    logger.info("Building %s with %s", name, overrides or "its defaults")
    return info.builder(**overrides)
