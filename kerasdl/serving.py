"""Client-side helpers for exported SavedModels.

Everything here works from the SavedModel alone, through
`tf.saved_model.load` and the signatures `kerasdl.export` wrote: no
kerasdl model code runs, exactly as on a serving machine. Requests are
checked against the signature before they reach the graph, so that a wrong
dtype, a wrong rank or an empty batch is reported as a `RequestError`
naming the input, not as a TensorFlow traceback.

Example:

>>> served = load_export("saved_models/text_cnn")  # doctest: +SKIP
>>> served.predict_sentences(["what is the capital of peru ?"])
...                                                 # doctest: +SKIP
{'probabilities': array([[...]]), 'class_id': ..., 'class_name': ...}
"""

import json
import logging
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp")

# Where kerasdl.export puts its extra files; TF Serving ignores them.
_ASSETS_EXTRA = "assets.extra"


class RequestError(ValueError):
    """A request that does not fit the SavedModel's signature."""


def resolve_export(
    path: str | os.PathLike, *, base_dir: str | os.PathLike = "saved_models"
) -> pathlib.Path:
    """Finds the version directory to load.

    Args:
        path: A version directory (holding `saved_model.pb`), a model
            directory (holding integer versions: the latest is taken), or
            a model name looked up under `base_dir`.
        base_dir: The folder of exported models, for bare names.

    Returns:
        The version directory.

    Raises:
        FileNotFoundError: If nothing loadable is found.

    Example:

    >>> resolve_export("saved_models/text_cnn")  # doctest: +SKIP
    PosixPath('saved_models/text_cnn/3')
    """
    candidates = [pathlib.Path(path)]
    if not candidates[0].exists():
        candidates.append(pathlib.Path(base_dir) / path)
    for candidate in candidates:
        if (candidate / "saved_model.pb").is_file():
            return candidate
        if candidate.is_dir():
            versions = [
                int(entry.name)
                for entry in candidate.iterdir()
                if entry.name.isdigit() and (entry / "saved_model.pb").is_file()
            ]
            if versions:
                return candidate / str(max(versions))
    raise FileNotFoundError(
        "Expected a SavedModel version directory, a model directory with "
        f"integer versions, or a model name under {str(base_dir)!r}. "
        f"Received: path={str(path)!r}"
    )


def _as_array(name, value, spec):
    """Converts one request input to a NumPy array of the spec's dtype."""
    if spec.dtype == tf.string:
        array = np.asarray(value, dtype=object)
        flat = array.reshape(-1)
        if not all(isinstance(item, str | bytes) for item in flat):
            raise RequestError(
                f"Input `{name}` must hold strings. Received: "
                f"{name}={_short(value)}"
            )
        encoded = [
            item.encode("utf-8") if isinstance(item, str) else item
            for item in flat
        ]
        return np.array(encoded, dtype=object).reshape(array.shape)

    array = np.asarray(value)
    kind = "fc" if spec.dtype.is_floating else "iu"
    if array.dtype.kind not in kind:
        wanted = "floating-point" if spec.dtype.is_floating else "integer"
        hint = ""
        if spec.dtype.is_floating and array.dtype.kind in "iu":
            hint = " (images are float32 in [0, 1], not 0-255 integers)"
        raise RequestError(
            f"Input `{name}` must be {wanted} ({spec.dtype.name}){hint}. "
            f"Received: dtype={array.dtype}"
        )
    return array.astype(spec.dtype.as_numpy_dtype)


def _short(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_request(
    spec: dict[str, tf.TensorSpec], inputs: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Checks and converts a request for a signature with input `spec`.

    Args:
        spec: The signature's inputs, name to `tf.TensorSpec`.
        inputs: The request, name to array-like.

    Returns:
        The inputs as NumPy arrays of the signature's dtypes.

    Raises:
        RequestError: If a name is missing or unknown, or an input has the
            wrong dtype, rank or size, or the batch is empty.

    Example:

    >>> spec = {"images": tf.TensorSpec((None, 2, 2, 1), tf.float32)}
    >>> check_request(spec, {"images": np.zeros((1, 2, 2, 1))})["images"].dtype
    dtype('float32')
    """
    if set(inputs) != set(spec):
        raise RequestError(
            f"The signature takes the inputs {sorted(spec)}. "
            f"Received: inputs={sorted(inputs)}"
        )
    arrays = {}
    for name, tensor_spec in spec.items():
        array = _as_array(name, inputs[name], tensor_spec)
        if array.ndim != tensor_spec.shape.rank:
            raise RequestError(
                f"Input `{name}` must have rank {tensor_spec.shape.rank}, "
                f"shape {_shape_text(tensor_spec.shape)}. "
                f"Received: shape={array.shape}"
            )
        if array.shape[0] == 0:
            raise RequestError(
                f"Input `{name}` holds an empty batch; send at least one "
                f"example. Received: shape={array.shape}"
            )
        if not tensor_spec.shape.is_compatible_with(array.shape):
            raise RequestError(
                f"Input `{name}` must have shape "
                f"{_shape_text(tensor_spec.shape)}. "
                f"Received: shape={array.shape}"
            )
        arrays[name] = array
    return arrays


def _shape_text(shape):
    sizes = ["batch" if size is None else str(size) for size in shape]
    return "(" + ", ".join(sizes) + ")"


def _reason(error):
    """The useful line of a graph error, without TF's node bookkeeping."""
    noise = ("Graph execution error", "Detected at node", "<stack traces")
    lines = [
        line.strip()
        for line in error.message.split("\n")
        if line.strip()
        and not line.strip().startswith(noise)
        and not line.strip().startswith("[[")
    ]
    return " ".join(lines) or error.message


class ServedModel:
    """An exported SavedModel, loaded with `tf.saved_model.load`.

    Args:
        directory: A version directory written by `kerasdl.export`.

    Attributes:
        directory: The version directory.
        card: The model card (`assets.extra/model_card.json`), or `{}`.
        signatures: Name to concrete function, `serving_default` first.

    Example:

    >>> served = ServedModel(resolve_export("saved_models/cnn"))
    ...                                                 # doctest: +SKIP
    >>> served.task                                     # doctest: +SKIP
    'image_classification'
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = pathlib.Path(directory)
        self._loaded = tf.saved_model.load(str(self.directory))
        signatures = dict(self._loaded.signatures)
        first = {"serving_default": signatures.pop("serving_default")}
        self.signatures = {**first, **signatures}
        card_path = self.directory / _ASSETS_EXTRA / "model_card.json"
        self.card = {}
        if card_path.is_file():
            self.card = json.loads(card_path.read_text(encoding="utf-8"))

    def input_spec(self, signature: str = "serving_default") -> dict:
        """Returns the inputs of `signature`, name to `tf.TensorSpec`."""
        if signature not in self.signatures:
            raise RequestError(
                f"Unknown signature; this model has {list(self.signatures)}. "
                f"Received: signature={signature!r}"
            )
        _, spec = self.signatures[signature].structured_input_signature
        return spec

    @property
    def task(self) -> str:
        """The zoo task, from the model card or the signatures' names."""
        if "task" in self.card:
            return self.card["task"]
        inputs = self.input_spec()
        outputs = self.signatures["serving_default"].structured_outputs
        if "images" in inputs:
            return "image_classification"
        if "sentence_vector" in outputs:
            return "language_model"
        return "text_classification"

    @property
    def class_names(self) -> list[str] | None:
        """The class names of a classifier (from the model card)."""
        return self.card.get("class_names")

    @property
    def vocabulary(self) -> list[str] | None:
        """The vectorizer's tokens (index = id), if exported."""
        path = self.directory / _ASSETS_EXTRA / "vocabulary.txt"
        if not path.is_file():
            return None
        tokens = path.read_text(encoding="utf-8").split("\n")
        return tokens[:-1] if tokens and tokens[-1] == "" else tokens

    def __call__(
        self, inputs: dict[str, Any], signature: str = "serving_default"
    ) -> dict[str, np.ndarray]:
        """Runs `signature` on a checked request.

        Args:
            inputs: Input name to array-like, as the signature names them.
            signature: The signature to run.

        Returns:
            Output name to NumPy array.

        Raises:
            RequestError: If the request does not fit the signature, or
                the graph rejects it (e.g. undecodable image bytes).
        """
        arrays = check_request(self.input_spec(signature), inputs)
        function = self.signatures[signature]
        try:
            outputs = function(
                **{name: tf.constant(value) for name, value in arrays.items()}
            )
        except tf.errors.InvalidArgumentError as error:
            raise RequestError(
                f"The model rejected the request: {_reason(error)}"
            ) from None
        return {name: tensor.numpy() for name, tensor in outputs.items()}

    def predict_sentences(self, sentences: Sequence[str]) -> dict:
        """Classifies (or encodes) raw sentences via `serving_default`."""
        return self({"sentences": list(sentences)})

    def predict_images(self, images: np.ndarray) -> dict:
        """Classifies float32 images (batch, H, W, C) in [0, 1]."""
        return self({"images": images})

    def predict_image_files(
        self, paths: Sequence[str | os.PathLike]
    ) -> dict[str, np.ndarray]:
        """Classifies encoded image files via the `image_bytes` signature.

        Raises:
            RequestError: If a file is missing or cannot be decoded; the
                message names the file.
        """
        contents = []
        for path in paths:
            path = pathlib.Path(path)
            if not path.is_file():
                raise RequestError(
                    f"No such image file. Received: path={str(path)!r}"
                )
            contents.append(path.read_bytes())
        try:
            return self({"image_bytes": contents}, signature="image_bytes")
        except RequestError:
            # Find the culprit, one file at a time, to name it.
            for path, content in zip(paths, contents):
                try:
                    self({"image_bytes": [content]}, signature="image_bytes")
                except RequestError as error:
                    raise RequestError(
                        f"Cannot decode the image file {str(path)!r}: {error}"
                    ) from None
            raise


def load_export(
    path: str | os.PathLike, *, base_dir: str | os.PathLike = "saved_models"
) -> ServedModel:
    """Loads the latest (or the given) version of an exported model.

    Args:
        path: As for `resolve_export`: version dir, model dir or name.
        base_dir: The folder of exported models, for bare names.

    Returns:
        A `ServedModel`.

    Raises:
        FileNotFoundError: If nothing loadable is found.

    Example:

    >>> served = load_export("text_cnn")  # doctest: +SKIP
    """
    directory = resolve_export(path, base_dir=base_dir)
    logger.info("Loading %s", directory)
    return ServedModel(directory)


def top_k(
    probabilities: np.ndarray, k: int, labels: Sequence[str] | None = None
) -> list[list[tuple[str, float]]]:
    """Returns the `k` most probable labels of each row, best first.

    Args:
        probabilities: (batch, num_classes) array.
        k: How many labels per row (capped at `num_classes`).
        labels: The name of each class; defaults to the class ids. An
            index past the end of `labels` (a language model's unused
            vocabulary ids) is shown as its id.

    Returns:
        One list of `(label, probability)` pairs per row.

    Raises:
        ValueError: If `k` is not a positive integer.

    Example:

    >>> top_k(np.array([[0.1, 0.7, 0.2]]), 2, ["a", "b", "c"])
    [[('b', 0.7), ('c', 0.2)]]
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"`k` must be a positive integer. Received: k={k!r}")
    probabilities = np.asarray(probabilities)
    width = probabilities.shape[-1]
    labels = list(labels or [])
    labels += [str(index) for index in range(len(labels), width)]
    order = np.argsort(-probabilities, axis=-1, kind="stable")[:, :k]
    return [
        [(str(labels[index]), float(row[index])) for index in indices]
        for row, indices in zip(probabilities, order)
    ]


__all__ = [
    "IMAGE_EXTENSIONS",
    "RequestError",
    "ServedModel",
    "check_request",
    "load_export",
    "resolve_export",
    "top_k",
]
