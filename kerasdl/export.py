"""Export trained models as versioned SavedModels that TF Serving loads.

`export_model` writes `<base_dir>/<name>/<version>/`, the layout TF Serving
watches: an integer version directory holding `saved_model.pb`,
`variables/` and `assets.extra/` (warm-up requests, model card, README).
The version is built in a hidden temporary directory beside it and renamed
into place, so a server never sees half a model and a crash leaves nothing
behind.

The SavedModel holds the model's variables and one `tf.function` per
signature, `serving_default` first:

- `text_classification` and `language_model`: `serving_default` takes
  `sentences`, string [batch], and runs the TextVectorization step inside
  the graph; `token_ids` takes `token_ids`, int64 [batch, sequence_length].
- `image_classification`: `serving_default` takes `images`, float32
  [batch, H, W, C] in [0, 1]; `image_bytes` takes `image_bytes`, string
  [batch] of encoded PNG/JPEG/GIF/BMP files, decoded and resized inside
  the graph.

Classifiers answer `probabilities` float32 [batch, num_classes],
`class_id` int64 [batch] and `class_name` string [batch]; the language
model answers `sentence_vector` float32 [batch, units] and
`next_token_probabilities` float32 [batch, vocabulary_size].

The serving functions carry no `tf.device` pins and are not XLA-compiled,
so the same SavedModel runs on TF Serving's CPU and GPU builds. They are
saved with `experimental_custom_gradients=True`, so the hand-written
backward passes of `kerasdl.layers` still define the gradient of a
reloaded model.
"""

import datetime
import json
import logging
import os
import pathlib
import shutil
import uuid
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

logger = logging.getLogger(__name__)

TASKS = ("text_classification", "image_classification", "language_model")

# TF Serving reads these from `<version>/assets.extra/` and ignores any
# other file there, which makes it the safe place for the model card.
ASSETS_EXTRA = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
MODEL_CARD_FILE = "model_card.json"
README_FILE = "README.md"
VOCABULARY_FILE = "vocabulary.txt"

# Hidden names: TF Serving only loads directories named by an integer.
_TEMPORARY_PREFIX = ".tmp-"
_OLD_PREFIX = ".old-"

# Keras' own standardize modes, usable by name in `vectorizer.json`.
_KERAS_STANDARDIZE = (
    "lower_and_strip_punctuation",
    "lower",
    "strip_punctuation",
)


# ---------------------------------------------------------------------------
# Versions and the atomic install
# ---------------------------------------------------------------------------


def latest_version(model_dir: str | os.PathLike) -> int | None:
    """Returns the highest integer version under `model_dir`, or `None`.

    Only directories named by a plain integer count, exactly the ones TF
    Serving would load; hidden temporary directories are ignored.

    Args:
        model_dir: The folder of one model, e.g. `saved_models/text_cnn`.

    Returns:
        The largest version number, or `None` if there is none (or the
        folder does not exist).

    Example:

    >>> latest_version("saved_models/does_not_exist") is None
    True
    """
    model_dir = pathlib.Path(model_dir)
    if not model_dir.is_dir():
        return None
    versions = [
        int(entry.name)
        for entry in model_dir.iterdir()
        if entry.is_dir() and entry.name.isdigit()
    ]
    return max(versions, default=None)


def _check_version(version):
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int | np.integer):
        raise TypeError(
            f"`version` must be a positive integer or None. "
            f"Received: version={version!r}"
        )
    if version < 1:
        raise ValueError(
            f"`version` must be a positive integer (TF Serving loads "
            f"directories named 1, 2, ...). Received: version={version}"
        )
    return int(version)


def _process_is_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        # The process exists but belongs to another user.
        return True
    return True


def _owner_pid(entry_name):
    """Returns the pid recorded in `.tmp-<version>-<pid>-<hex>`, or None."""
    parts = entry_name.split("-")
    if len(parts) == 4 and parts[2].isdigit():
        return int(parts[2])
    return None


def _remove_stale_temporaries(model_dir):
    """Deletes temporaries left by exports that died (e.g. on SIGKILL).

    A directory whose recorded process still runs belongs to a concurrent
    export and is left alone. A `.old-` directory whose version is missing
    is what remains of an overwrite killed between its two renames: it is
    moved back rather than deleted.
    """
    for entry in model_dir.iterdir():
        name = entry.name
        if not name.startswith((_TEMPORARY_PREFIX, _OLD_PREFIX)):
            continue
        pid = _owner_pid(name)
        if pid is not None and pid != os.getpid() and _process_is_alive(pid):
            continue
        version = name.split("-")[1]
        target = model_dir / version
        if name.startswith(_OLD_PREFIX) and version.isdigit():
            if not target.exists():
                logger.warning("Restoring %s from %s", target, entry)
                os.rename(entry, target)
                continue
        logger.info("Removing stale export directory %s", entry)
        shutil.rmtree(entry, ignore_errors=True)


def _hidden_sibling(model_dir, prefix, version):
    return model_dir / f"{prefix}{version}-{os.getpid()}-{uuid.uuid4().hex}"


def _version_exists(target):
    return FileExistsError(
        f"Version {target.name} of this model already exists at {target}. "
        "Pass `overwrite=True` to replace it, or leave `version=None` for "
        f"the next free number. Received: version={target.name}"
    )


def _install(temporary, target, overwrite):
    """Renames the finished `temporary` directory to `target`.

    Raises:
        FileExistsError: If `target` exists and `overwrite` is False.
    """
    if not target.exists():
        try:
            os.rename(temporary, target)
        except OSError as error:
            # rename() refuses (ENOTEMPTY) rather than merging when a
            # concurrent export installed this version a moment ago.
            if target.exists():
                raise _version_exists(target) from error
            raise
        return
    if not overwrite:
        raise _version_exists(target)
    # Rename the old version aside first: a server polling the folder sees
    # either the old or the new complete version, never a mixture.
    old = _hidden_sibling(target.parent, _OLD_PREFIX, target.name)
    os.rename(target, old)
    try:
        os.rename(temporary, target)
    except OSError:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------
# Serving functions
# ---------------------------------------------------------------------------


def _call_model(model, inputs):
    """Calls `model` in inference mode, casting inputs to its input dtype."""
    if _has_inputs(model):
        inputs = tf.cast(inputs, model.inputs[0].dtype)
    return model(inputs, training=False)


def _classifier_outputs(probabilities, class_names):
    # A model trained under mixed_float16 may hand back float16; clients
    # always get float32.
    probabilities = tf.cast(probabilities, tf.float32)
    class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
    class_name = tf.gather(tf.constant(class_names), class_id)
    return {
        "probabilities": probabilities,  # (batch, num_classes)
        "class_id": class_id,  # (batch,)
        "class_name": class_name,  # (batch,)
    }


def _to_channels(image, channels):
    """Converts a decoded (h, w, c) image to `channels` channels."""
    have = tf.shape(image)[-1]
    if channels == 1:
        # Grey (+ alpha) keeps its first plane untouched, so that a
        # grey PNG decodes exactly; colour is converted with ITU-R 601.
        return tf.cond(
            have < 3,
            lambda: image[..., :1],
            lambda: tf.image.rgb_to_grayscale(image[..., :3]),
        )
    colour = tf.cond(
        have < 3,
        lambda: tf.repeat(image[..., :1], 3, axis=-1),
        lambda: image[..., :3],
    )
    if channels == 3:
        return colour
    # channels == 4: an opaque alpha plane.
    alpha = tf.ones_like(colour[..., :1])
    return tf.concat([colour, alpha], axis=-1)


def _decode_images(image_bytes, image_shape):
    """Decodes a batch of encoded images to float32 (batch, H, W, C)."""
    height, width, channels = image_shape

    def decode_one(encoded):
        # (h, w, c) float32 in [0, 1]; GIFs give their first frame.
        image = tf.io.decode_image(
            encoded, dtype=tf.float32, expand_animations=False
        )
        image = _to_channels(image, channels)
        image = tf.image.resize(image, (height, width))
        return tf.ensure_shape(image, image_shape)

    return tf.map_fn(
        decode_one,
        image_bytes,
        fn_output_signature=tf.TensorSpec(image_shape, tf.float32),
    )


def _language_model_outputs(model, encoder, token_ids):
    # (batch, sequence_length, vocabulary_size): a distribution over the
    # next token at every position.
    probabilities = tf.cast(_call_model(model, token_ids), tf.float32)
    sentence_vector = tf.cast(_call_model(encoder, token_ids), tf.float32)

    # The vectorizer pads at the end, so the last real token sits at
    # (number of non-zero ids) - 1; an empty sentence reads position 0.
    lengths = tf.math.count_nonzero(token_ids, axis=1, dtype=tf.int64)
    last = tf.maximum(lengths - 1, 0)  # (batch,)
    next_token = tf.gather(probabilities, last, axis=1, batch_dims=1)
    return {
        "sentence_vector": sentence_vector,  # (batch, units)
        "next_token_probabilities": next_token,  # (batch, vocabulary_size)
    }


def _text_signatures(model, task, vectorizer, sequence_length, class_names):
    if task == "language_model":
        from kerasdl import zoo

        encoder = zoo.sentence_encoder(model)

        def outputs(token_ids):
            return _language_model_outputs(model, encoder, token_ids)

    else:

        def outputs(token_ids):
            return _classifier_outputs(
                _call_model(model, token_ids), class_names
            )

    def token_ids(token_ids):
        return outputs(tf.cast(token_ids, tf.int64))

    def sentences(sentences):
        # The TextVectorization step runs inside the graph: standardize,
        # split, look up; (batch,) strings -> (batch, sequence_length).
        return outputs(tf.cast(vectorizer(sentences), tf.int64))

    token_spec = tf.TensorSpec((None, sequence_length), tf.int64)
    sentence_spec = tf.TensorSpec((None,), tf.string)
    if vectorizer is None:
        logger.warning(
            "No vectorizer given: `serving_default` takes token ids, like "
            "`token_ids`, and the SavedModel cannot read raw sentences."
        )
        return {
            "serving_default": (token_ids, token_spec),
            "token_ids": (token_ids, token_spec),
        }
    return {
        "serving_default": (sentences, sentence_spec),
        "token_ids": (token_ids, token_spec),
    }


def _image_signatures(model, image_shape, class_names):
    def images(images):
        return _classifier_outputs(_call_model(model, images), class_names)

    def image_bytes(image_bytes):
        decoded = _decode_images(image_bytes, image_shape)
        return _classifier_outputs(_call_model(model, decoded), class_names)

    return {
        "serving_default": (
            images,
            tf.TensorSpec((None, *image_shape), tf.float32),
        ),
        "image_bytes": (image_bytes, tf.TensorSpec((None,), tf.string)),
    }


# ---------------------------------------------------------------------------
# Checking the arguments against the model
# ---------------------------------------------------------------------------


def _check_name(name):
    if not isinstance(name, str) or not name:
        raise TypeError(
            f"`name` must be a non-empty string. Received: name={name!r}"
        )
    if name.startswith(".") or "/" in name or os.sep in name:
        raise ValueError(
            "`name` must be a plain folder name: no path separator and no "
            f"leading dot. Received: name={name!r}"
        )


def _check_task(task):
    if task not in TASKS:
        raise ValueError(
            f"`task` must be one of {TASKS}. Received: task={task!r}"
        )


def _input_shape(model):
    """Returns the model's input shape, batch first, e.g. (None, 32, 32, 3).

    Functional models know it from `model.inputs`; a subclassed model (the
    zoo's LeNet) is asked for the `input_shape` of its config.

    Raises:
        ValueError: If the shape cannot be found.
    """
    if _has_inputs(model):
        return tuple(model.inputs[0].shape)
    shape = model.get_config().get("input_shape")
    if shape is None:
        raise ValueError(
            "Cannot tell the input shape of this subclassed model: give it "
            "an `input_shape` config entry, or export a functional model. "
            f"Received: model={model.name!r}"
        )
    return (None, *shape)


def _has_inputs(model):
    try:
        return bool(model.inputs)
    except AttributeError:
        return False


def _output_shape(model):
    if _has_inputs(model):
        return tuple(model.outputs[0].shape)
    return tuple(model.compute_output_shape(_input_shape(model)))


def _output_width(model):
    return _output_shape(model)[-1]


def _check_class_names(model, class_names):
    num_classes = _output_width(model)
    if class_names is None:
        return [str(index) for index in range(num_classes)]
    class_names = [str(class_name) for class_name in class_names]
    if len(class_names) != num_classes:
        raise ValueError(
            f"`class_names` must name each of the model's {num_classes} "
            f"outputs. Received: class_names={class_names}"
        )
    return class_names


def _check_image_shape(model, image_shape):
    model_shape = _input_shape(model)[1:]
    if image_shape is None:
        image_shape = model_shape
    image_shape = tuple(int(size) for size in image_shape)
    if len(image_shape) != 3 or image_shape[-1] not in (1, 3, 4):
        raise ValueError(
            "`image_shape` must be (height, width, channels) with 1, 3 or "
            f"4 channels. Received: image_shape={image_shape}"
        )
    if any(
        size is not None and size != want
        for size, want in zip(model_shape, image_shape)
    ):
        raise ValueError(
            f"`image_shape` must match the model's input {model_shape}. "
            f"Received: image_shape={image_shape}"
        )
    return image_shape


def _sequence_length(model, vectorizer):
    model_length = _input_shape(model)[1]
    if vectorizer is None:
        return model_length
    if not isinstance(vectorizer, keras.layers.TextVectorization):
        raise TypeError(
            "`vectorizer` must be an adapted "
            "`keras.layers.TextVectorization`. "
            f"Received: vectorizer={type(vectorizer).__name__}"
        )
    length = vectorizer.get_config()["output_sequence_length"]
    if model_length is not None and length != model_length:
        raise ValueError(
            f"The vectorizer's output_sequence_length must equal the "
            f"model's sequence length {model_length}. "
            f"Received: output_sequence_length={length}"
        )
    if not vectorizer.built:
        # Tracking for export needs a built layer; one call builds it.
        vectorizer(tf.constant([""]))
    return length if length is not None else model_length


def hand_written_layers(model: keras.Model) -> list[str]:
    """Returns the class names of the kerasdl activation layers in `model`.

    Args:
        model: Any Keras model; nested models are searched too.

    Returns:
        The sorted, distinct class names (e.g. `["ReLU", "Tanh"]`) of the
        layers whose backward pass is written by hand in `kerasdl.layers`.

    Example:

    >>> import keras
    >>> from kerasdl.layers import Tanh
    >>> inputs = keras.Input((2,))
    >>> hand_written_layers(keras.Model(inputs, Tanh()(inputs)))
    ['Tanh']
    """
    from kerasdl.layers import ACTIVATIONS

    kinds = tuple(ACTIVATIONS.values())
    found = set()
    pending = list(model.layers)
    while pending:
        layer = pending.pop()
        if isinstance(layer, kinds):
            found.add(type(layer).__name__)
        # Nested models and blocks list their own layers.
        pending.extend(getattr(layer, "layers", []))
    return sorted(found)


# ---------------------------------------------------------------------------
# Warm-up requests and the model card
# ---------------------------------------------------------------------------


def _example_sentences(vectorizer, count=4):
    """A few sentences of in-vocabulary words, plus an OOV and an empty one."""
    vocabulary = [token for token in vectorizer.get_vocabulary()[2:] if token]
    sentences = []
    for index in range(count - 2):
        words = vocabulary[index * 5 : index * 5 + 5]
        sentences.append(" ".join(str(word) for word in words))
    sentences.append("zzqx unseen words")
    sentences.append("")
    return sentences


def _example_images(image_shape, count=3):
    # Black, mid-grey and seeded noise: deterministic and in [0, 1].
    noise = np.random.default_rng(0).uniform(size=image_shape)
    images = [np.zeros(image_shape), np.full(image_shape, 0.5), noise]
    return np.stack(images[:count]).astype("float32")


def _encode_png(images):
    """(batch, H, W, C) float32 in [0, 1] -> list of PNG bytes."""
    pixels = np.round(np.clip(images, 0.0, 1.0) * 255.0).astype("uint8")
    return [tf.io.encode_png(image).numpy() for image in pixels]


def _example_requests(task, signatures, examples, vectorizer, image_shape):
    """Returns [(signature_name, {input_name: np.ndarray})] for warm-up."""
    if task == "image_classification":
        images = (
            _example_images(image_shape)
            if examples is None
            else np.asarray(examples, dtype="float32")
        )
        batches = {
            "serving_default": {"images": images},
            "image_bytes": {
                "image_bytes": np.array(_encode_png(images), dtype=object)
            },
        }
    else:
        if examples is None and vectorizer is None:
            length = signatures["token_ids"][1].shape[1] or 8
            ids = {"token_ids": np.zeros((2, length), "int64")}
            batches = {"serving_default": ids, "token_ids": ids}
        else:
            sentences = (
                _example_sentences(vectorizer)
                if examples is None
                else [str(sentence) for sentence in examples]
            )
            token_ids = vectorizer(tf.constant(sentences)).numpy()
            batches = {
                "serving_default": {
                    "sentences": np.array(sentences, dtype=object)
                },
                "token_ids": {"token_ids": token_ids.astype("int64")},
            }

    # One request of batch size 1 and one of the whole batch per signature,
    # so the server has run both shapes before its first real request.
    requests = []
    for signature, inputs in batches.items():
        for size in (1, None):
            requests.append(
                (signature, {k: v[:size] for k, v in inputs.items()})
            )
    return requests


def _write_warmup(path, name, requests):
    try:
        from tensorflow_serving.apis import predict_pb2
        from tensorflow_serving.apis import prediction_log_pb2
    except ImportError:
        logger.warning(
            "tensorflow-serving-api is not installed (pip install "
            "'kerasdl[serving]'): no warm-up requests written."
        )
        return 0
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, inputs in requests:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = name
            request.model_spec.signature_name = signature
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return len(requests)


def _describe_spec(spec):
    shape = [None if size is None else int(size) for size in spec.shape]
    return {"dtype": spec.dtype.name, "shape": shape}


def _describe_signatures(signatures, functions):
    described = {}
    for name, (function, spec) in signatures.items():
        # Each serving function is named after its one input.
        concrete = functions[name].get_concrete_function()
        described[name] = {
            "inputs": {function.__name__: _describe_spec(spec)},
            "outputs": {
                key: _describe_spec(tf.TensorSpec.from_tensor(value))
                for key, value in concrete.structured_outputs.items()
            },
        }
    return described


def _render_readme(card):
    lines = [
        f"# {card['name']} (version {card['version']})",
        "",
        f"Task: `{card['task']}`. Zoo model: `{card.get('model')}`.",
        f"Exported {card['exported_at']} with TensorFlow "
        f"{card['versions']['tensorflow']}, Keras "
        f"{card['versions']['keras']}.",
        "",
        "## Signatures",
        "",
        "| signature | inputs | outputs |",
        "|---|---|---|",
    ]
    for name, signature in card["signatures"].items():
        inputs = ", ".join(
            f"`{k}` {v['dtype']} {v['shape']}"
            for k, v in signature["inputs"].items()
        )
        outputs = ", ".join(
            f"`{k}` {v['dtype']} {v['shape']}"
            for k, v in signature["outputs"].items()
        )
        lines.append(f"| `{name}` | {inputs} | {outputs} |")
    if card.get("class_names"):
        lines += ["", "## Classes", ""]
        lines += [
            f"{index}. {class_name}"
            for index, class_name in enumerate(card["class_names"])
        ]
    if card.get("data"):
        lines += ["", "## Training data", "", str(card["data"])]
    if card.get("metrics"):
        lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [
            f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
            for k, v in card["metrics"].items()
        ]
    if card.get("folded_embeddings"):
        lines += [
            "",
            "## Folded embeddings",
            "",
            "Inference only: the embedding is multiplied into the "
            "convolutions ahead of time (`kerasdl.folding`); the "
            "SavedModel has no trainable weights and no gradients.",
        ]
    if card.get("hand_written_gradients"):
        layers = ", ".join(card["hand_written_gradients"])
        lines += [
            "",
            "## Gradients",
            "",
            f"The backward passes of {layers} are kerasdl's hand-written "
            "ones, saved as custom gradients: `tf.GradientTape` through "
            "the reloaded model uses them.",
        ]
    return "\n".join(lines) + "\n"


def _json_safe(value):
    return json.loads(json.dumps(value, default=str))


def _model_card(
    name, version, task, signatures, class_names, extra, model, folded
):
    card = {
        "name": name,
        "version": version,
        "task": task,
        "model": None,
        "class_names": class_names,
        "signatures": signatures,
        "data": None,
        "metrics": {},
        # A folded export serves no gradients at all.
        "hand_written_gradients": [] if folded else hand_written_layers(model),
        "folded_embeddings": folded,
        "exported_at": datetime.datetime.now(datetime.timezone.utc)
        .replace(microsecond=0)
        .isoformat(),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    card.update(_json_safe(extra or {}))
    return card


def _write_assets_extra(directory, card, requests, vectorizer):
    extra = directory / ASSETS_EXTRA
    extra.mkdir(exist_ok=True)
    count = _write_warmup(extra / WARMUP_FILE, card["name"], requests)
    card["warmup_requests"] = count
    (extra / MODEL_CARD_FILE).write_text(
        json.dumps(card, indent=2) + "\n", encoding="utf-8"
    )
    (extra / README_FILE).write_text(_render_readme(card), encoding="utf-8")
    if vectorizer is not None:
        # index = token id, so a client can read next-token outputs.
        tokens = [str(token) for token in vectorizer.get_vocabulary()]
        (extra / VOCABULARY_FILE).write_text(
            "\n".join(tokens) + "\n", encoding="utf-8"
        )


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def _serving_functions(
    model, task, vectorizer, class_names, image_shape, served
):
    if task == "image_classification":
        return _image_signatures(model, image_shape, class_names)
    sequence_length = _sequence_length(model, vectorizer)
    return _text_signatures(
        served, task, vectorizer, sequence_length, class_names
    )


def _folded(model, task, vectorizer):
    if task != "text_classification":
        raise ValueError(
            "`fold_embeddings=True` needs a text classifier (a zoo text "
            f"CNN). Received: task={task!r}"
        )
    from kerasdl import folding

    folded = folding.fold_text_cnn(model)
    if vectorizer is not None:
        size = int(vectorizer.vocabulary_size())
        if size > folded.vocabulary_size:
            raise ValueError(
                f"The vectorizer has {size} tokens but the model's "
                f"embedding only {folded.vocabulary_size} rows. Received: "
                f"vectorizer.vocabulary_size()={size}"
            )
    return folded


def _build_archive(model, vectorizer, signatures):
    archive = keras.export.ExportArchive()
    archive.track(model)
    if vectorizer is not None:
        # Tracks the vocabulary lookup table, which variables do not cover.
        archive.track(vectorizer)
    functions = {}
    # `serving_default` is added first; ExportArchive wraps each function
    # in a plain tf.function (no jit_compile, no device scope).
    for name, (function, spec) in signatures.items():
        functions[name] = archive.add_endpoint(name, function, [spec])
    return archive, functions


def export_model(
    model: keras.Model,
    name: str,
    *,
    task: str,
    base_dir: str | os.PathLike = "saved_models",
    vectorizer: keras.layers.TextVectorization | None = None,
    class_names: Sequence[str] | None = None,
    image_shape: tuple[int, int, int] | None = None,
    version: int | None = None,
    overwrite: bool = False,
    model_card: dict[str, Any] | None = None,
    warmup: bool = True,
    examples: Sequence[str] | np.ndarray | None = None,
    fold_embeddings: bool = False,
) -> pathlib.Path:
    """Exports `model` as version `version` of `<base_dir>/<name>/`.

    The version is written to a hidden temporary directory beside its
    final place and renamed in when complete; whatever goes wrong, the
    temporary directory is removed and no version directory appears.
    Leftovers of an export that was killed outright are removed by the
    next export of the same model.

    Args:
        model: The trained Keras model; for text, it takes token ids.
        name: The model's folder name under `base_dir` (what TF Serving
            calls `MODEL_NAME`).
        task: One of `TASKS`, as in `kerasdl.zoo.get_model_info(...).task`.
        base_dir: The folder holding one sub-folder per model.
        vectorizer: For text tasks, the adapted
            `keras.layers.TextVectorization` that turned sentences into the
            model's token ids; it becomes part of the graph. Without it,
            `serving_default` takes token ids.
        class_names: The name of each class (index = class id); defaults
            to `"0"`, `"1"`, ...
        image_shape: `(H, W, C)` of the images; defaults to the model's
            input shape.
        version: The integer version to write; `None` takes the next free
            number (1 for a new model).
        overwrite: Whether an existing `version` may be replaced (the old
            one is renamed aside, the new one renamed in, the old deleted).
        model_card: Extra facts for `assets.extra/model_card.json` and
            `README.md`, e.g. `{"model": "text_cnn", "data": "...",
            "metrics": {"test_accuracy": 0.9}}`.
        warmup: Whether to write `assets.extra/tf_serving_warmup_requests`.
        examples: Inputs for the warm-up requests (sentences, or float32
            images (batch, H, W, C)); made up when `None`.
        fold_embeddings: For a zoo text CNN (`text_cnn`, `text_cnn_kim`
            with token-id inputs), serve `kerasdl.folding.fold_text_cnn`'s
            inference-only form: the embedding is multiplied into the
            convolutions ahead of time, so a request is a table lookup
            and a few additions (1.7x faster at batch 1 and 2.6x at batch
            256 for `text_cnn_kim`, benchmarks/bench_serving.py) at the cost
            of a table `sum(region_sizes) * filters / embedding_dim`
            times the embedding's size. The SavedModel then holds no
            trainable weights and no gradients.

    Returns:
        The version directory written, e.g. `saved_models/text_cnn/3`.

    Raises:
        ValueError: If `task`, `name`, `version`, `class_names` or
            `image_shape` do not fit the model.
        TypeError: If an argument has the wrong type.
        FileExistsError: If `version` exists and `overwrite` is False.

    Example:

    >>> from kerasdl import zoo
    >>> model = zoo.build("image_cnn_same")
    >>> path = export_model(model, "cnn", task="image_classification",
    ...                     base_dir="/tmp/saved_models")
    >>> path.parent.name
    'cnn'
    """
    _check_name(name)
    _check_task(task)
    version = _check_version(version)
    if task == "image_classification":
        class_names = _check_class_names(model, class_names)
        image_shape = _check_image_shape(model, image_shape)
    elif task == "text_classification":
        class_names = _check_class_names(model, class_names)
    else:
        class_names = None
    model_dir = pathlib.Path(base_dir) / name
    if version is not None and (model_dir / str(version)).exists():
        if not overwrite:
            # Fail before the slow tracing and saving.
            raise _version_exists(model_dir / str(version))

    served = model
    if fold_embeddings:
        served = _folded(model, task, vectorizer)
    signatures = _serving_functions(
        model, task, vectorizer, class_names, image_shape, served
    )
    archive, functions = _build_archive(served, vectorizer, signatures)

    model_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(model_dir)
    chosen = version or (latest_version(model_dir) or 0) + 1
    target = model_dir / str(chosen)
    if target.exists() and not overwrite:
        raise _version_exists(target)

    temporary = _hidden_sibling(model_dir, _TEMPORARY_PREFIX, chosen)
    try:
        archive.write_out(
            str(temporary),
            options=tf.saved_model.SaveOptions(
                experimental_custom_gradients=True
            ),
            verbose=False,
        )
        described = _describe_signatures(signatures, functions)
        card = _model_card(
            name,
            chosen,
            task,
            described,
            class_names,
            model_card,
            model,
            fold_embeddings,
        )
        requests = []
        if warmup:
            requests = _example_requests(
                task, signatures, examples, vectorizer, image_shape
            )
        _write_assets_extra(temporary, card, requests, vectorizer)
        _install(temporary, target, overwrite)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)

    logger.info("Exported %s (%s) to %s", name, task, target)
    return target


def _read_json(path):
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def _resolve_standardize(name):
    if name is None or name in _KERAS_STANDARDIZE:
        return name
    import kerasdl.data  # noqa: F401  registers kerasdl's standardize

    function = keras.saving.get_registered_object(name)
    if function is None:
        raise ValueError(
            "vectorizer.json names a standardize function that is not "
            "registered with keras.saving.register_keras_serializable. "
            f"Received: standardize={name!r}"
        )
    return function


def load_vectorizer(
    run_dir: str | os.PathLike,
) -> keras.layers.TextVectorization:
    """Rebuilds a run's TextVectorization from its saved vocabulary.

    Args:
        run_dir: A training run directory holding `vocabulary.txt` (one
            token a line, index = id, padding `""` and OOV `"[UNK]"`
            first) and `vectorizer.json` (its `sequence_length` and the
            registered name of its `standardize` function).

    Returns:
        A built `keras.layers.TextVectorization` mapping sentences to the
        same token ids as during training.

    Raises:
        FileNotFoundError: If `vocabulary.txt` or `vectorizer.json` is
            missing.
        ValueError: If the vocabulary does not start with `""`, `"[UNK]"`.

    Example:

    >>> vectorizer = load_vectorizer("runs/text_cnn")  # doctest: +SKIP
    """
    from kerasdl.training import read_vocabulary

    run_dir = pathlib.Path(run_dir)
    for file_name in ("vocabulary.txt", "vectorizer.json"):
        if not (run_dir / file_name).is_file():
            raise FileNotFoundError(
                f"A text model's run directory must hold {file_name}. "
                f"Received: run_dir={str(run_dir)!r}"
            )
    settings = _read_json(run_dir / "vectorizer.json")
    vocabulary = read_vocabulary(run_dir / "vocabulary.txt")
    if vocabulary[:2] != ["", "[UNK]"]:
        raise ValueError(
            "vocabulary.txt must start with the padding token '' and the "
            f"OOV token '[UNK]'. Received: vocabulary[:2]={vocabulary[:2]!r}"
        )
    vectorizer = keras.layers.TextVectorization(
        standardize=_resolve_standardize(settings.get("standardize")),
        split="whitespace",
        output_mode="int",
        output_sequence_length=settings.get("sequence_length"),
        # Keras adds padding and OOV itself, in exactly these places.
        vocabulary=vocabulary[2:],
    )
    vectorizer(tf.constant([""]))
    return vectorizer


def _infer_task(model):
    """Guesses the zoo task from the model's input and output shapes."""
    if len(_input_shape(model)) == 4:
        return "image_classification"
    if len(_output_shape(model)) == 3:
        return "language_model"
    return "text_classification"


def _task_of(config, model):
    from kerasdl import zoo

    preset = config.get("model")
    if preset:
        try:
            return zoo.get_model_info(preset).task
        except (KeyError, ValueError):
            logger.info("%r is not a zoo model; guessing the task", preset)
    return _infer_task(model)


def _load_model(model_path):
    # Registers kerasdl's layers and the zoo's custom objects.
    import kerasdl.layers  # noqa: F401
    import kerasdl.zoo  # noqa: F401

    return keras.saving.load_model(model_path, compile=False)


def export_run(
    run_dir: str | os.PathLike,
    *,
    name: str | None = None,
    base_dir: str | os.PathLike = "saved_models",
    version: int | None = None,
    overwrite: bool = False,
    fold_embeddings: bool = False,
) -> pathlib.Path:
    """Exports the model of a training run directory.

    Reads `model.keras` (or the given `.keras` file), `vocabulary.txt` and
    `vectorizer.json` (text), `class_names.json`, `metrics.json` and
    `config.json`, and calls `export_model`.

    Args:
        run_dir: A run directory written by `kerasdl.training.train`, or a
            `.keras` file inside one (e.g. `runs/x/best.keras`).
        name: The exported model's name; defaults to the run's zoo model
            (`config.json` `"model"`), else the file's stem.
        base_dir: The folder holding one sub-folder per model.
        fold_embeddings: Serve a text CNN with its embedding folded into
            its convolutions (see `export_model`).
        version: The version to write; `None` takes the next free number.
        overwrite: Whether an existing `version` may be replaced.

    Returns:
        The version directory written.

    Raises:
        FileNotFoundError: If there is no model file.
        ValueError: As `export_model`.

    Example:

    >>> export_run("runs/text_cnn-1")  # doctest: +SKIP
    PosixPath('saved_models/text_cnn/1')
    """
    path = pathlib.Path(run_dir)
    model_path = path / "model.keras" if path.is_dir() else path
    if not model_path.is_file() or model_path.suffix != ".keras":
        raise FileNotFoundError(
            "Expected a run directory holding model.keras, or a .keras "
            f"file. Received: run_dir={str(run_dir)!r}"
        )
    run_dir = model_path.parent
    config = _read_json(run_dir / "config.json")
    metrics = _read_json(run_dir / "metrics.json")
    class_names = _read_json(run_dir / "class_names.json") or None

    model = _load_model(model_path)
    task = _task_of(config, model)
    vectorizer = None
    if task != "image_classification":
        vectorizer = load_vectorizer(run_dir)

    card = {
        "model": config.get("model"),
        "data": metrics.get("data") or config.get("data"),
        "metrics": metrics,
        "config": config,
        "run_dir": str(run_dir),
    }
    return export_model(
        model,
        name or config.get("model") or model_path.stem,
        task=task,
        base_dir=base_dir,
        vectorizer=vectorizer,
        class_names=class_names,
        image_shape=None,
        version=version,
        overwrite=overwrite,
        model_card=card,
        fold_embeddings=fold_embeddings,
    )


__all__ = [
    "TASKS",
    "export_model",
    "export_run",
    "hand_written_layers",
    "latest_version",
    "load_vectorizer",
]
