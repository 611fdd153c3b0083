"""Training: one function that takes a zoo model from data to a SavedModel.

`train(TrainConfig(...))` loads the data (`kerasdl.data`), adapts a
`TextVectorization` on the training sentences (text models), builds and
compiles a zoo model (under a `tf.distribute` strategy when asked), fits it
with crash-safe callbacks, evaluates it on the test split and, optionally,
exports it with `kerasdl.export`.

Everything a run produces lands in one run directory:

- `config.json`: the resolved configuration.
- `metrics.csv`: one row per epoch (loss, metrics, examples/s).
- `tensorboard/`: TensorBoard logs, with per-layer gradient norms when
  `kerasdl.dynamics.GradientNormMonitor` is available.
- `backup/`: the `BackupAndRestore` checkpoint; it exists only while a run
  is unfinished, and running the same configuration again resumes from it.
- `best.keras`: the best checkpoint on the monitored metric.
- `model.keras`: the final trained model (token ids in, for text).
- `vocabulary.txt`, `vectorizer.json`: the vectorizer (text only).
- `class_names.json`, `metrics.json`: label names; test metrics, examples/s,
  wall time, epochs run and the epoch the run resumed from.
"""

import ast
import csv
import dataclasses
import datetime
import importlib.util
import json
import logging
import math
import os
import pathlib
import re
import shutil
import sys
import tempfile
import time
import uuid
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerasdl import zoo
from kerasdl.optimizers import DenseGradientAdadelta
from kerasdl.optimizers import SparseAdadelta

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "sgd", "rmsprop", "adadelta")
DISTRIBUTE_MODES = ("none", "mirrored", "multi_worker")

# Learning rates used when `learning_rate` is None. Adadelta adapts its own
# step size and is run with 1.0 as in Zeiler (2012) and Kim (2014); Keras'
# own default of 0.001 barely moves the weights.
DEFAULT_LEARNING_RATES = {
    "adam": 1e-3,
    "sgd": 1e-2,
    "rmsprop": 1e-3,
    "adadelta": 1.0,
}

# The zoo's task decides which kind of data `kerasdl.data.load_data` loads.
DATA_TASKS = {
    "text_classification": "text",
    "image_classification": "image",
    "language_model": "text",
}

# Training sets up to this many examples are cached in memory after their
# first pass, so later epochs skip reading and decoding the files.
_CACHE_LIMIT = 200_000
_SHUFFLE_BUFFER = 10_000
# Training splits up to this size are held as tensors and shuffled by
# index (see `training_batches`).
_IN_MEMORY_BYTES = 512 * 2**20

_BACKUP_METADATA = "training_metadata.json"


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines one training run.

    Args:
        model: A zoo model name (`kerasdl.zoo.list_models()`).
        data: A `kerasdl.data.load_data` spec, or None for the offline
            default of the model's task.
        epochs: Number of epochs to train.
        batch_size: The global batch size (split over replicas when
            distributed).
        learning_rate: The optimizer's learning rate; None picks
            `DEFAULT_LEARNING_RATES[optimizer]`.
        optimizer: One of `OPTIMIZERS`.
        seed: Seeds Python, NumPy, TensorFlow and the data split.
        validation_split: Fraction of the training data held out for
            validation (0 keeps the data's own validation split, if any).
        early_stopping_patience: Stop after this many epochs without
            improvement of the validation metric and restore the best
            weights; None trains all epochs.
        overrides: Keyword arguments for the model builder; they win over
            the values the data implies (e.g. `num_classes`).
        output_dir: The run directory; None gives
            `runs/<model>-<timestamp>`. Reuse it to resume a killed run.
        mixed_precision: Compute in float16 with float32 weights
            (`"mixed_float16"` policy).
        jit_compile: Compile the train step with XLA. Keras cannot
            combine XLA with op determinism, so this leaves determinism
            off.
        distribute: One of `DISTRIBUTE_MODES`.
        embeddings: Path of a word-vector file to initialise text
            embeddings.
        trainable_embeddings: Whether those embeddings keep training.
        vocabulary_size: Largest vectorizer vocabulary (ids 0 and 1 are
            padding and OOV); None takes the model's default.
        sequence_length: Tokens per sentence; None takes the model's
            default.
        export: Export a SavedModel after training.
        export_dir: Base directory of the exports.
        version: Export version; None takes the next free one.
        data_dir: Where `kerasdl.data` looks for (or keeps) datasets.
        checkpoint_every: Back up the training state every this many
            steps; None backs up at the end of every epoch.
        test_split: Fraction of a single data file held out for testing.
        encoding: Text encoding of the user's data files.
        deterministic: Enable TensorFlow op determinism, so that the same
            seed gives the same weights (slower on GPUs).
        verbose: Keras `fit` verbosity; None gives a progress bar on a
            terminal and one line per epoch otherwise.

    Example:

    >>> config = TrainConfig(model="text_cnn", epochs=2)
    >>> config.optimizer
    'adam'
    """

    model: str = "text_cnn_kim"
    data: str | None = None
    epochs: int = 10
    batch_size: int = 50
    learning_rate: float | None = None
    optimizer: str = "adam"
    seed: int = 0
    validation_split: float = 0.0
    early_stopping_patience: int | None = None
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    output_dir: str | None = None
    mixed_precision: bool = False
    jit_compile: bool = False
    distribute: str = "none"
    embeddings: str | None = None
    trainable_embeddings: bool = True
    vocabulary_size: int | None = None
    sequence_length: int | None = None
    export: bool = True
    export_dir: str = "saved_models"
    version: int | None = None
    data_dir: str | None = None
    checkpoint_every: int | None = None
    test_split: float = 0.1
    encoding: str = "utf-8"
    deterministic: bool = True
    verbose: int | None = None

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"Unknown optimizer. Expected one of {OPTIMIZERS}. "
                f"Received: optimizer={self.optimizer!r}"
            )
        if self.distribute not in DISTRIBUTE_MODES:
            raise ValueError(
                f"Unknown distribution mode. Expected one of "
                f"{DISTRIBUTE_MODES}. Received: "
                f"distribute={self.distribute!r}"
            )
        _check_positive_int("epochs", self.epochs)
        _check_positive_int("batch_size", self.batch_size)
        for name in (
            "early_stopping_patience",
            "vocabulary_size",
            "sequence_length",
            "version",
            "checkpoint_every",
        ):
            if getattr(self, name) is not None:
                _check_positive_int(name, getattr(self, name))
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(
                "Expected a positive `learning_rate` (or None for the "
                f"optimizer's default). Received: "
                f"learning_rate={self.learning_rate!r}"
            )
        for name in ("validation_split", "test_split"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(
                    f"Expected `{name}` in [0, 1). Received: {name}={value!r}"
                )
        if not isinstance(self.overrides, dict):
            raise TypeError(
                "Expected `overrides` to be a dict of builder keyword "
                f"arguments. Received: overrides={self.overrides!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Returns the configuration as a JSON-serialisable dict."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=repr))

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> "TrainConfig":
        """Rebuilds a `TrainConfig` from `to_dict()`'s output.

        Args:
            config: A dict with `TrainConfig` fields as keys.

        Returns:
            A `TrainConfig`.

        Raises:
            TypeError: If `config` has a key that is not a field.
        """
        fields = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(config) - fields)
        if unknown:
            raise TypeError(
                f"Unknown TrainConfig fields {unknown}; expected some of "
                f"{sorted(fields)}. Received: config={config!r}"
            )
        return cls(**config)


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"Expected `{name}` to be a positive integer. "
            f"Received: {name}={value!r}"
        )


_BARE_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """Parses `key=value` strings into builder keyword arguments.

    Values are read with `ast.literal_eval` (`6`, `0.5`, `(28, 28, 1)`,
    `None`, `'tanh'`); a bare word such as `tanh` is taken as that string.

    Args:
        pairs: Strings of the form `"key=value"`, e.g. from `--set`.

    Returns:
        A dict `{key: value}`; a key given twice keeps its last value.

    Raises:
        ValueError: If a pair has no `=`, the key is not a Python
            identifier, or the value is not a Python literal.

    Example:

    >>> parse_overrides(["num_classes=6", "input_shape=(28, 28, 1)"])
    {'num_classes': 6, 'input_shape': (28, 28, 1)}
    """
    overrides = {}
    for pair in pairs or ():
        key, separator, text = pair.partition("=")
        key = key.strip()
        text = text.strip()
        if not separator or not key.isidentifier():
            raise ValueError(
                "Expected a model override of the form key=value with a "
                "Python identifier as key, e.g. num_classes=6. "
                f"Received: override={pair!r}"
            )
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            if not _BARE_WORD.match(text):
                raise ValueError(
                    f"The value of {key!r} is not a Python literal; quote "
                    "strings and write tuples as (28, 28, 1). "
                    f"Received: override={pair!r}"
                ) from None
            value = text
        overrides[key] = value
    return overrides


@dataclasses.dataclass
class TrainResult:
    """What `train` returns.

    Args:
        model: The trained `keras.Model` (best weights when early stopping
            restored them).
        history: `{metric name: [value per epoch run in this call]}`.
        metrics: The content of `metrics.json`.
        run_dir: The run directory.
        export_path: The exported SavedModel version directory, or None.
        vectorizer: The `TextVectorization` layer (text models), or None.
        chief: False on a multi-worker worker other than the chief, whose
            files went to a temporary directory that is now removed.
    """

    model: keras.Model
    history: dict[str, list[float]]
    metrics: dict[str, Any]
    run_dir: pathlib.Path
    export_path: pathlib.Path | None = None
    vectorizer: keras.layers.TextVectorization | None = None
    chief: bool = True


# ---------------------------------------------------------------------------
# Metrics and callbacks
# ---------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="kerasdl")
class Perplexity(keras.metrics.Metric):
    """Perplexity of a next-token model: exp(mean crossentropy per token).

    Accumulates the summed crossentropy and the summed sample weights over
    all batches, so padded positions (weight 0) do not count and the result
    is exact over a whole dataset, not an average of batch averages.

    Args:
        name: The metric's name.
        dtype: The dtype of the accumulators.

    Example:

    >>> metric = Perplexity()
    >>> metric.update_state([[1]], [[[0.5, 0.5]]])
    >>> round(float(metric.result()), 3)
    2.0
    """

    def __init__(self, name="perplexity", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total_crossentropy = self.add_variable(
            shape=(), initializer="zeros", name="total_crossentropy"
        )
        self.total_weight = self.add_variable(
            shape=(), initializer="zeros", name="total_weight"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        # (batch, sequence_length): -log p(target) at every position.
        crossentropy = keras.losses.sparse_categorical_crossentropy(
            y_true, y_pred
        )
        crossentropy = keras.ops.cast(crossentropy, self.dtype)
        weight = keras.ops.ones_like(crossentropy)
        if sample_weight is not None:
            # Broadcasts (batch,) or (batch, sequence_length) weights.
            weight = weight * keras.ops.cast(sample_weight, self.dtype)
        self.total_crossentropy.assign_add(keras.ops.sum(crossentropy * weight))
        self.total_weight.assign_add(keras.ops.sum(weight))

    def result(self):
        # Guard against an empty dataset: exp(0) = 1 rather than 0/0.
        mean = self.total_crossentropy / keras.ops.maximum(
            self.total_weight, 1e-12
        )
        return keras.ops.exp(mean)

    def reset_state(self):
        self.total_crossentropy.assign(0.0)
        self.total_weight.assign(0.0)


class ThroughputLogger(keras.callbacks.Callback):
    """Adds examples/s to the epoch logs and logs one line per epoch.

    The time runs from the start of the epoch to its last training batch,
    so validation is not counted. The first epoch includes tracing.

    Args:
        num_examples: Training examples per epoch.
        epochs: Total epochs, for the "epoch 3/10" in the log line.

    Example:

    >>> callback = ThroughputLogger(num_examples=1000, epochs=5)
    """

    def __init__(self, num_examples, epochs):
        super().__init__()
        self.num_examples = num_examples
        self.epochs = epochs
        self.examples_per_second = []
        self._epoch_start = None
        self._last_batch_end = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()
        self._last_batch_end = None

    def on_train_batch_end(self, batch, logs=None):
        self._last_batch_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        end = self._last_batch_end or time.perf_counter()
        seconds = max(end - self._epoch_start, 1e-9)
        rate = self.num_examples / seconds
        self.examples_per_second.append(rate)
        if logs is not None:
            logs["examples_per_second"] = rate
        shown = ", ".join(
            f"{key} {value:.4g}"
            for key, value in (logs or {}).items()
            if key != "examples_per_second"
        )
        logger.info(
            "epoch %d/%d: %s; %.0f examples/s, %.1f s",
            epoch + 1,
            self.epochs,
            shown,
            rate,
            seconds,
        )


class MetricsCSVLogger(keras.callbacks.Callback):
    """Writes one CSV row per epoch, rewriting the file atomically.

    Unlike `keras.callbacks.CSVLogger`, which appends to an open file, this
    rewrites the whole (small) file through a temporary file and
    `os.replace` after every epoch, so a run killed at any moment leaves a
    complete CSV. On resume it keeps only the rows of the epochs before the
    one training restarts from, so no epoch appears twice.

    Args:
        path: The CSV file.
        initial_epoch: The epoch training starts from (0, or the epoch a
            resumed run restarts at).

    Example:

    >>> callback = MetricsCSVLogger("/tmp/metrics.csv")
    """

    def __init__(self, path, initial_epoch=0):
        super().__init__()
        self.path = pathlib.Path(path)
        self.rows = [
            row
            for row in read_metrics_csv(self.path)
            if int(row["epoch"]) < initial_epoch
        ]

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch}
        row.update(
            {key: float(value) for key, value in sorted((logs or {}).items())}
        )
        self.rows.append(row)
        fieldnames = []
        for each in self.rows:
            fieldnames += [key for key in each if key not in fieldnames]
        _write_atomic(self.path, _csv_text(fieldnames, self.rows))


def read_metrics_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Reads a run's `metrics.csv`; an absent file gives no rows.

    Args:
        path: The CSV file.

    Returns:
        One dict per epoch row, `epoch` as int and the rest as floats.
    """
    path = pathlib.Path(path)
    if not path.exists():
        return []
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    return [
        {
            key: int(value) if key == "epoch" else float(value)
            for key, value in row.items()
            if value not in ("", None)
        }
        for row in rows
    ]


def _csv_text(fieldnames, rows):
    lines = [",".join(fieldnames)]
    for row in rows:
        lines.append(",".join(_csv_value(row.get(key)) for key in fieldnames))
    return "\n".join(lines) + "\n"


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _write_atomic(path, text):
    """Writes `text` to `path` through a temporary file and `os.replace`."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name beside the target (same file system, so the rename is
    # atomic); plain `open` keeps the user's umask, unlike `mkstemp`.
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with temporary.open("w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, value: Any) -> None:
    """Writes `value` as indented JSON, atomically (temporary + replace).

    Args:
        path: The JSON file.
        value: A JSON-serialisable value; NumPy scalars are converted.
    """
    _write_atomic(
        path, json.dumps(value, indent=2, default=_json_default) + "\n"
    )


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return f"<array shape={value.shape} dtype={value.dtype}>"
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return repr(value)


# ---------------------------------------------------------------------------
# Run set-up: strategy, seeds, run directory
# ---------------------------------------------------------------------------


def _make_strategy(distribute):
    """Returns the `tf.distribute` strategy for `distribute`."""
    if distribute == "multi_worker":
        # Reads the cluster from TF_CONFIG; must be created before other
        # TensorFlow ops run, so `train` makes it first.
        return tf.distribute.MultiWorkerMirroredStrategy()
    if distribute == "mirrored":
        devices = None
        if not tf.config.list_logical_devices("GPU"):
            # Without GPUs, mirror over the logical CPU devices (tests split
            # the CPU in two); MirroredStrategy would otherwise take one.
            devices = [
                device.name for device in tf.config.list_logical_devices("CPU")
            ]
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.get_strategy()


def _is_chief(strategy):
    """Whether this process writes the run directory and the export."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def _set_seeds(config):
    keras.utils.set_random_seed(config.seed)
    if config.deterministic and config.jit_compile:
        # Keras turns XLA off while op determinism is on.
        logger.warning(
            "jit_compile=True: TensorFlow op determinism stays off, so "
            "runs with the same seed may differ in the last digits"
        )
    elif config.deterministic:
        # Makes reductions and scatter ops pick fixed orders: the same seed
        # then gives bit-identical weights, at some cost on GPUs.
        tf.config.experimental.enable_op_determinism()


def default_run_dir(model: str) -> pathlib.Path:
    """Returns `runs/<model>-<YYYYmmdd-HHMMSS>` (relative to the cwd).

    Args:
        model: The model name.

    Returns:
        A path that does not exist yet.
    """
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return pathlib.Path("runs") / f"{model}-{stamp}"


def _read_backup_epoch(backup_dir):
    """Returns the epoch a backup restarts at, or 0 when there is none."""
    path = pathlib.Path(backup_dir) / _BACKUP_METADATA
    if not path.exists():
        return 0
    try:
        return int(json.loads(path.read_text())["epoch"])
    except (ValueError, KeyError, TypeError):
        logger.warning("Ignoring an unreadable backup record at %s", path)
        return 0


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def _load_bundle(config, data_task):
    # Imported here: `kerasdl.data` pulls in tensorflow-datasets.
    from kerasdl import data

    image_size = None
    input_shape = config.overrides.get("input_shape")
    if data_task == "image" and input_shape is not None:
        image_size = tuple(input_shape[:2])
    return data.load_data(
        config.data,
        task=data_task,
        data_dir=config.data_dir,
        validation_split=config.validation_split,
        test_split=config.test_split,
        seed=config.seed,
        image_size=image_size,
        encoding=config.encoding,
    )


def _texts(dataset):
    return dataset.map(lambda features, label: features)


def _prepare_vectorizer(
    bundle, run_dir, vocabulary_size, sequence_length, resuming
):
    """Adapts a vectorizer, or rebuilds the one a killed run saved.

    Reloading `vocabulary.txt` (rather than adapting again) guarantees that
    a resumed run maps every word to the id its checkpoint was trained on.

    Returns:
        `(vectorizer, reloaded)`.
    """
    # Imported here: `kerasdl.data` pulls in tensorflow-datasets.
    from kerasdl import data

    vocabulary_path = run_dir / "vocabulary.txt"
    settings_path = run_dir / "vectorizer.json"
    if resuming and vocabulary_path.exists() and settings_path.exists():
        settings = json.loads(settings_path.read_text())
        wanted = (sequence_length, vocabulary_size)
        found = (
            settings.get("training_sequence_length"),
            settings.get("max_tokens"),
        )
        if found == wanted:
            vectorizer = data.vectorizer_from_vocabulary(
                read_vocabulary(vocabulary_path),
                sequence_length=sequence_length,
            )
            logger.info("Reloaded the vocabulary from %s", vocabulary_path)
            return vectorizer, True
        logger.warning(
            "Ignoring %s: it was written for (sequence_length, "
            "vocabulary_size) %s, not %s",
            settings_path,
            found,
            wanted,
        )

    vectorizer = data.make_vectorizer(
        _texts(bundle.train),
        vocabulary_size=vocabulary_size,
        sequence_length=sequence_length,
    )
    return vectorizer, False


def read_vocabulary(path: str | os.PathLike) -> list[str]:
    """Reads `vocabulary.txt`: one token a line, line number = token id.

    Args:
        path: The file; line 1 is the padding token (empty), line 2 OOV.

    Returns:
        The tokens in id order.
    """
    text = pathlib.Path(path).read_text(encoding="utf-8")
    # Split on "\n" only: `splitlines` would also split tokens holding
    # rarer separators such as U+2028.
    tokens = text.split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    return tokens


def _save_vectorizer(vectorizer, run_dir, *, sequence_length, max_tokens):
    """Writes `vocabulary.txt` and `vectorizer.json`.

    `sequence_length` is the model's input length, which serving uses;
    `training_sequence_length` is what the training vectorizer produced
    (one more for a language model, whose targets are shifted by one).
    """
    vocabulary = [str(token) for token in vectorizer.get_vocabulary()]
    _write_atomic(run_dir / "vocabulary.txt", "\n".join(vocabulary) + "\n")
    standardize = vectorizer.get_config()["standardize"]
    if callable(standardize):
        # A registered function is known by "package>name".
        standardize = keras.saving.get_registered_name(standardize)
    write_json_atomic(
        run_dir / "vectorizer.json",
        {
            "sequence_length": sequence_length,
            "training_sequence_length": vectorizer.get_config()[
                "output_sequence_length"
            ],
            "standardize": standardize,
            "vocabulary_size": len(vocabulary),
            "max_tokens": max_tokens,
        },
    )


def _in_memory(dataset, num_examples):
    """Whether a split is small enough to hold as tensors (< ~512 MiB)."""
    if num_examples is None:
        return False
    bytes_per_example = 0
    for spec in tf.nest.flatten(dataset.element_spec):
        if not spec.shape.is_fully_defined():
            return False
        # Strings: a guess of 64 bytes per sentence.
        size = 64 if spec.dtype == tf.string else spec.dtype.size
        bytes_per_example += size * max(1, spec.shape.num_elements())
    return num_examples * bytes_per_example <= _IN_MEMORY_BYTES


def training_batches(
    dataset: tf.data.Dataset,
    *,
    num_examples: int | None,
    batch_size: int,
    seed: int,
    initial_epoch: int,
    epochs: int,
    prepare=None,
) -> tf.data.Dataset:
    """The training batches of epochs `initial_epoch` to `epochs - 1`.

    Each epoch's order is a stateless function of `(seed, epoch)`, not of
    how many iterators were opened before. This is what makes runs
    comparable: the same batches reach a single device, a
    `MirroredStrategy` (which re-creates the pipeline), and a run resumed
    at `initial_epoch`. A `Dataset.shuffle` with
    `reshuffle_each_iteration=True` gives none of these guarantees.

    Small splits are held as tensors and prepared (vectorized) once;
    larger ones are cached, shuffled with a buffer and prepared per batch.

    Args:
        dataset: Unbatched `(features, label)` pairs.
        num_examples: The number of pairs, or None if unknown.
        batch_size: The global batch size; the last batch of an epoch may
            be smaller.
        seed: The shuffling seed.
        initial_epoch: The first epoch to produce.
        epochs: One past the last epoch to produce.
        prepare: Optional function mapping a batch `(features, labels)`
            to the model's `(inputs, targets[, sample_weights])`.

    Returns:
        A `tf.data.Dataset` of batches, `ceil(num_examples / batch_size)`
        per epoch, epochs one after another.

    Example:

    >>> pairs = tf.data.Dataset.from_tensor_slices(([1.0, 2.0, 3.0], [0, 1, 0]))
    >>> batches = training_batches(pairs, num_examples=3, batch_size=2,
    ...     seed=0, initial_epoch=0, epochs=2)
    >>> len(list(batches))
    4
    """
    if not _in_memory(dataset, num_examples):
        dataset = dataset.cache().shuffle(
            _SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True
        )
        dataset = dataset.batch(batch_size)
        if prepare is not None:
            dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        return dataset.repeat(epochs - initial_epoch).prefetch(tf.data.AUTOTUNE)

    # Every split as one tensor: (num_examples, ...) per component.
    tensors = dataset.batch(num_examples).get_single_element()
    if prepare is not None:
        tensors = prepare(*tensors)

    def epoch_order(epoch):
        # A fresh permutation per epoch, a pure function of (seed, epoch).
        keys = tf.random.stateless_uniform(
            [num_examples], seed=tf.stack([tf.constant(seed, tf.int64), epoch])
        )
        return tf.data.Dataset.from_tensor_slices(tf.argsort(keys))

    def gather(indices):
        return tuple(tf.gather(tensor, indices) for tensor in tensors)

    batches = tf.data.Dataset.range(initial_epoch, epochs).flat_map(
        lambda epoch: epoch_order(epoch).batch(batch_size)
    )
    return batches.map(gather).prefetch(tf.data.AUTOTUNE)


def _evaluation_batches(dataset, *, num_examples, batch_size, prepare):
    """Batches of a validation or test split, in order, cached if small."""
    if num_examples is not None and num_examples <= _CACHE_LIMIT:
        dataset = dataset.cache()
    dataset = dataset.batch(batch_size)
    if prepare is not None:
        dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _classification_prepare(vectorizer):
    def prepare(features, labels):
        # (batch,) strings -> (batch, sequence_length) int64 token ids.
        return vectorizer(features), labels

    return prepare


def _language_model_prepare(vectorizer):
    def prepare(features, labels):
        # (batch, sequence_length + 1) ids: inputs drop the last token,
        # targets drop the first, so position t predicts token t + 1.
        ids = vectorizer(features)
        inputs = ids[:, :-1]
        targets = ids[:, 1:]
        # Padding (id 0) targets get weight 0: no loss, no metric.
        weights = tf.cast(tf.not_equal(targets, 0), tf.float32)
        return inputs, targets, weights

    return prepare


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------


def _resolve_text_sizes(config, info):
    """Returns `(vocabulary_size, sequence_length)` for the vectorizer."""
    defaults = info.defaults
    vocabulary_size = (
        config.vocabulary_size
        or config.overrides.get("vocabulary_size")
        or defaults.get("vocabulary_size")
        or 20000
    )
    sequence_length = (
        config.sequence_length
        or config.overrides.get("sequence_length")
        or defaults.get("sequence_length")
        or 64
    )
    return int(vocabulary_size), int(sequence_length)


def _model_arguments(config, info, bundle, vocabulary, sequence_length):
    """The builder keywords implied by the data, then the user's overrides.

    Only keywords the builder takes are filled in automatically; the
    user's overrides are passed as given so that the zoo reports unknown
    ones.
    """
    implied = {}
    if info.task == "image_classification":
        implied["num_classes"] = bundle.num_classes
        if bundle.image_shape is not None:
            implied["input_shape"] = tuple(bundle.image_shape)
    else:
        implied["vocabulary_size"] = len(vocabulary)
        implied["sequence_length"] = sequence_length
        if info.task == "text_classification":
            implied["num_classes"] = bundle.num_classes
        if config.embeddings is not None:
            matrix = _word_vectors(config, vocabulary)
            implied["embeddings"] = matrix
            implied["embedding_dim"] = int(matrix.shape[1])
            implied["trainable_embeddings"] = config.trainable_embeddings
        elif not config.trainable_embeddings:
            implied["trainable_embeddings"] = False
    arguments = {
        key: value for key, value in implied.items() if key in info.defaults
    }
    # The vectorizer already settled these sizes (from the overrides too);
    # another value would feed the model ids or lengths it cannot take.
    settled = {"vocabulary_size", "sequence_length"} & arguments.keys()
    arguments.update(
        {
            key: value
            for key, value in config.overrides.items()
            if key not in settled
        }
    )
    return arguments


def _word_vectors(config, vocabulary):
    from kerasdl import data

    # The file decides the dimension unless the user set one to check.
    matrix, found = data.load_word_vectors(
        config.embeddings,
        vocabulary,
        embedding_dim=config.overrides.get("embedding_dim"),
        seed=config.seed,
    )
    logger.info(
        "Word vectors from %s cover %.1f%% of the vocabulary",
        config.embeddings,
        100 * found,
    )
    return matrix


def _make_optimizer(config):
    learning_rate = (
        config.learning_rate or DEFAULT_LEARNING_RATES[config.optimizer]
    )
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate)
    # rho=0.95 as in Kim (2014), following Zeiler (2012). Keras' own
    # Adadelta is wrong for an id repeated in a batch and stalls under
    # XLA; SparseAdadelta updates only the batch's embedding rows (same
    # result as dense Adadelta). Under XLA, DenseGradientAdadelta stays:
    # its XLA speed is what the benchmark suite measured (SparseAdadelta
    # compiles there too, but has not been timed under XLA).
    if config.jit_compile:
        return DenseGradientAdadelta(learning_rate=learning_rate, rho=0.95)
    return SparseAdadelta(learning_rate=learning_rate, rho=0.95)


def _compile(model, config, task):
    if task == "language_model":
        model.compile(
            optimizer=_make_optimizer(config),
            # Mean over the real (weight 1) tokens, so exp(loss) is the
            # perplexity of a batch.
            loss=keras.losses.SparseCategoricalCrossentropy(
                reduction="mean_with_sample_weight"
            ),
            weighted_metrics=[
                keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                Perplexity(),
            ],
            jit_compile=config.jit_compile,
        )
        return
    model.compile(
        optimizer=_make_optimizer(config),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=config.jit_compile,
    )


def _build_model(config, info, arguments, strategy):
    previous_policy = keras.config.dtype_policy()
    if config.mixed_precision:
        # Float16 compute with float32 weights; the zoo keeps its softmax
        # in float32, and Keras 3's compile wraps the optimizer in a
        # LossScaleOptimizer on its own.
        keras.config.set_dtype_policy("mixed_float16")
    try:
        with strategy.scope():
            model = zoo.build(config.model, **arguments)
            _compile(model, config, info.task)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    return model


def _patch_for_multi_worker(model, strategy, sample):
    """Works around two Keras 3 bugs with `MultiWorkerMirroredStrategy`.

    1. `fit` and `evaluate` first build the metrics and optimizer from one
       distributed batch averaged with `strategy.reduce`, which cannot take
       the (inputs, targets) structure under this strategy. Building from a
       local batch creates the same variables and leaves nothing to do.
    2. The logs of every step are averaged with
       `strategy.reduce("MEAN", value, axis=0)`, which fails on scalars.
       Returning each log value with shape (1,) makes axis 0 exist; the
       reduction gives back a scalar.

    Both are keras-team/keras#20585 ("Does Keras 3 work with
    MultiWorkerMirroredStrategy?").
    """
    # TODO: drop this once Keras 3 supports MultiWorkerMirroredStrategy;
    # it patches private Trainer methods of this one model instance.
    with strategy.scope():
        model._symbolic_build(data_batch=sample)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    model.train_step = _logs_as_vectors(model.train_step)
    model.test_step = _logs_as_vectors(model.test_step)


def _logs_as_vectors(step):
    def step_with_vector_logs(data):
        logs = step(data)
        # Scalars -> shape (1,) so that the per-step reduction has axis 0.
        return {key: tf.reshape(value, [1]) for key, value in logs.items()}

    return step_with_vector_logs


# ---------------------------------------------------------------------------
# Callbacks
# ---------------------------------------------------------------------------


def _monitor(task, has_validation):
    """Returns `(metric name, mode)` for checkpoints and early stopping."""
    prefix = "val_" if has_validation else ""
    if task == "language_model":
        return prefix + "perplexity", "min"
    return prefix + "accuracy", "max"


def _callbacks(
    config,
    model,
    *,
    task,
    run_dir,
    has_validation,
    initial_epoch,
    num_examples,
    steps_per_epoch,
    sample,
):
    monitor, mode = _monitor(task, has_validation)
    throughput = ThroughputLogger(num_examples, config.epochs)
    checkpoint = keras.callbacks.ModelCheckpoint(
        run_dir / "best.keras",
        monitor=monitor,
        mode=mode,
        save_best_only=True,
    )
    # A resumed run must only beat the best epoch before the crash.
    previous = [
        row[monitor]
        for row in read_metrics_csv(run_dir / "metrics.csv")
        if row["epoch"] < initial_epoch and monitor in row
    ]
    if previous and (run_dir / "best.keras").exists():
        checkpoint.best = max(previous) if mode == "max" else min(previous)

    callbacks = [
        throughput,
        # The CSV row of an epoch is written before its backup: a kill in
        # between leaves a row the resumed run drops and writes again,
        # never a missing one.
        MetricsCSVLogger(run_dir / "metrics.csv", initial_epoch),
        keras.callbacks.BackupAndRestore(
            backup_dir=run_dir / "backup",
            save_freq=config.checkpoint_every or "epoch",
            # Keeps the previous backup too, so a kill in the middle of
            # writing one still leaves a readable checkpoint.
            double_checkpoint=True,
            delete_checkpoint=True,
        ),
        checkpoint,
    ]
    if _tensorboard_available():
        callbacks.append(
            keras.callbacks.TensorBoard(
                log_dir=run_dir / "tensorboard", write_graph=False
            )
        )
        monitor_callback = _gradient_norm_monitor(
            model, sample, run_dir / "tensorboard", steps_per_epoch
        )
        if monitor_callback is not None:
            callbacks.append(monitor_callback)
    if config.early_stopping_patience is not None:
        if not has_validation:
            raise ValueError(
                "Early stopping watches a validation metric, but the data "
                "has no validation split; set validation_split > 0. "
                "Received: early_stopping_patience="
                f"{config.early_stopping_patience}, validation_split="
                f"{config.validation_split}"
            )
        # TODO: a resumed run restarts the patience count, because Keras
        # resets EarlyStopping at the start of every fit call.
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor,
                mode=mode,
                patience=config.early_stopping_patience,
                restore_best_weights=True,
            )
        )
    return callbacks, throughput


def _tensorboard_available():
    # tf.summary needs the `tensorboard` package, which TensorFlow no
    # longer installs by itself.
    if importlib.util.find_spec("tensorboard") is None:
        logger.warning(
            "TensorBoard logs and gradient norms are skipped: the "
            "`tensorboard` package is not installed"
        )
        return False
    return True


def _gradient_norm_monitor(model, sample, log_dir, steps_per_epoch):
    try:
        from kerasdl.dynamics import GradientNormMonitor
    except ImportError as error:
        logger.info("Gradient norms not logged (%s)", error)
        return None
    # The monitor walks the layer graph, which only Sequential and
    # functional models expose (a subclassed model hides it in `call`).
    if not (
        isinstance(model, keras.Sequential)
        or type(model).__name__ == "Functional"
    ):
        logger.info(
            "Gradient norms not logged: %s is a subclassed model",
            model.name,
        )
        return None
    # One measurement per epoch (an extra forward and backward pass on one
    # batch): a curve over the epochs at negligible cost.
    return GradientNormMonitor(
        sample=sample,
        log_dir=os.fspath(log_dir),
        every_n_batches=steps_per_epoch,
    )


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------


def _export(model, config, info, bundle, vectorizer, metrics):
    try:
        from kerasdl import export
    except ImportError as error:
        logger.warning(
            "kerasdl.export is not available (%s); the trained model is "
            "only in model.keras",
            error,
        )
        return None
    card = {
        "model": config.model,
        "data": bundle.description,
        "class_names": list(bundle.class_names),
        "metrics": metrics,
        "config": config.to_dict(),
    }
    return export.export_model(
        model,
        config.model,
        task=info.task,
        base_dir=config.export_dir,
        vectorizer=vectorizer,
        class_names=list(bundle.class_names),
        image_shape=bundle.image_shape,
        version=config.version,
        model_card=card,
    )


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


def _fit_verbosity(config):
    if config.verbose is not None:
        return config.verbose
    return 1 if sys.stdout.isatty() else 2


def _save_model(model, path):
    # Save next to the target, then rename: a kill never leaves a
    # half-written model.keras.
    temporary = path.with_name(f".{path.stem}.tmp.keras")
    model.save(temporary)
    os.replace(temporary, path)


def _evaluate(model, test, verbose):
    results = model.evaluate(test, return_dict=True, verbose=verbose)
    return {f"test_{key}": float(value) for key, value in results.items()}


def train(config: TrainConfig, *, bundle=None) -> TrainResult:
    """Trains a zoo model as `config` says and writes its run directory.

    Running the same configuration again with the same `output_dir` after
    a crash resumes from the last backup: the end of the last finished
    epoch, or with `checkpoint_every`, the weights of the last backed-up
    step, from the start of that step's epoch.

    Args:
        config: The run's `TrainConfig`.
        bundle: An already loaded `kerasdl.data.DataBundle` to use instead
            of loading `config.data`.

    Returns:
        A `TrainResult`.

    Raises:
        ValueError: If the model name is unknown (the zoo's error), the
            data does not suit the model, early stopping is asked for
            without validation data, or `output_dir` holds the backup of
            a run with other settings.

    Example:

    >>> result = train(TrainConfig(model="text_cnn", epochs=1))
    >>> 0.0 <= result.metrics["test_accuracy"] <= 1.0
    True
    """
    start = time.perf_counter()
    config = dataclasses.replace(config, overrides=dict(config.overrides))
    # The strategy comes first: MultiWorkerMirroredStrategy must exist
    # before any other TensorFlow op runs.
    strategy = _make_strategy(config.distribute)
    info = zoo.get_model_info(config.model)
    _set_seeds(config)

    chief = _is_chief(strategy)
    if config.output_dir is None:
        config.output_dir = os.fspath(default_run_dir(config.model))
    run_dir, scratch = _run_directory(config, chief)
    try:
        return _train(config, info, strategy, run_dir, chief, bundle, start)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _run_directory(config, chief):
    """Returns `(run_dir, scratch)`; non-chief workers get a temporary one.

    Following the TensorFlow multi-worker guide, only the chief writes the
    real run directory; the other workers write the same files to a
    temporary directory that is removed afterwards (`scratch`).
    """
    if chief:
        run_dir = pathlib.Path(config.output_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir, None
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="kerasdl-worker-"))
    # TODO: a killed multi-worker job resumes on the chief only; the other
    # workers' backups vanish with their temporary directories.
    return scratch, scratch


def _train(config, info, strategy, run_dir, chief, bundle, start):
    data_task = DATA_TASKS[info.task]
    if bundle is None:
        bundle = _load_bundle(config, data_task)
    if bundle.task != data_task:
        raise ValueError(
            f"Model {config.model!r} needs {data_task} data. Received: "
            f"data={config.data!r} (task {bundle.task!r})"
        )
    initial_epoch = _read_backup_epoch(run_dir / "backup")
    if initial_epoch:
        logger.info("Resuming %s from epoch %d", run_dir, initial_epoch)
        _check_same_run(config, run_dir / "config.json")

    # Data pipelines and the vectorizer.
    vectorizer, arguments, prepare = _prepare_inputs(
        config, info, bundle, run_dir, resuming=initial_epoch > 0
    )
    train_data, validation_data, test_data = _pipelines(
        config, bundle, prepare, initial_epoch
    )
    write_json_atomic(
        run_dir / "config.json",
        {
            **config.to_dict(),
            "resolved": {
                "task": info.task,
                "model_arguments": arguments,
                "learning_rate": config.learning_rate
                or DEFAULT_LEARNING_RATES[config.optimizer],
                "data_description": bundle.description,
                "num_examples": bundle.num_examples,
                "replicas": strategy.num_replicas_in_sync,
                "keras_version": keras.__version__,
                "tensorflow_version": tf.__version__,
            },
        },
    )
    write_json_atomic(run_dir / "class_names.json", list(bundle.class_names))

    # Model, callbacks, fit.
    model = _build_model(config, info, arguments, strategy)
    num_examples = count_examples(bundle, "train")
    steps_per_epoch = math.ceil(num_examples / config.batch_size)
    sample = next(iter(train_data))
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _patch_for_multi_worker(model, strategy, sample)
    callbacks, throughput = _callbacks(
        config,
        model,
        task=info.task,
        run_dir=run_dir,
        has_validation=validation_data is not None,
        initial_epoch=initial_epoch,
        num_examples=num_examples,
        steps_per_epoch=steps_per_epoch,
        sample=sample[:2],
    )
    verbose = _fit_verbosity(config)
    logger.info(
        "Training %s (%d parameters) on %s for %d epochs; run directory %s",
        config.model,
        model.count_params(),
        bundle.description,
        config.epochs,
        run_dir,
    )
    history = model.fit(
        train_data,
        epochs=config.epochs,
        validation_data=validation_data,
        callbacks=callbacks,
        verbose=verbose,
        initial_epoch=initial_epoch,
        # The dataset holds all remaining epochs back to back.
        steps_per_epoch=steps_per_epoch,
        # The pipeline shuffles already (seeded); Keras cannot shuffle a
        # tf.data.Dataset and would only warn.
        shuffle=False,
    )

    # Evaluation, files, export.
    metrics = _evaluate(model, test_data, verbose)
    _save_model(model, run_dir / "model.keras")
    metrics.update(
        _run_metrics(config, bundle, history, throughput, initial_epoch)
    )
    metrics["replicas"] = strategy.num_replicas_in_sync
    metrics["wall_time_seconds"] = time.perf_counter() - start
    write_json_atomic(run_dir / "metrics.json", metrics)
    logger.info("Test metrics: %s", metrics)

    export_path = None
    if config.export and chief:
        export_path = _export(model, config, info, bundle, vectorizer, metrics)
        if export_path is not None:
            logger.info("Exported SavedModel to %s", export_path)
    return TrainResult(
        model=model,
        history={
            key: list(map(float, v)) for key, v in history.history.items()
        },
        metrics=metrics,
        run_dir=pathlib.Path(config.output_dir),
        export_path=export_path,
        vectorizer=vectorizer,
        chief=chief,
    )


# A resumed run must agree with its backup on these, or the restored
# weights would not fit the model or the data.
_RESUME_FIELDS = (
    "model",
    "data",
    "overrides",
    "vocabulary_size",
    "sequence_length",
    "embeddings",
    "seed",
)


def _check_same_run(config, path):
    if not path.exists():
        return
    saved = json.loads(path.read_text())
    current = config.to_dict()
    changed = {
        name: (saved.get(name), current[name])
        for name in _RESUME_FIELDS
        if saved.get(name) != current[name]
    }
    if changed:
        raise ValueError(
            f"The run directory {path.parent} holds the backup of a "
            "different run; use another output_dir or the same settings. "
            f"Received: changed settings (saved, now)={changed}"
        )


def _prepare_inputs(config, info, bundle, run_dir, *, resuming):
    """Returns `(vectorizer, model arguments, prepare function)`.

    The returned vectorizer maps text to the model's input ids (what
    serving needs); `prepare` turns a batch into training examples.
    """
    vectorizer = None
    prepare = None
    if info.task == "image_classification":
        arguments = _model_arguments(config, info, bundle, None, None)
    else:
        vocabulary_size, sequence_length = _resolve_text_sizes(config, info)
        # A language model reads one extra token: inputs and shifted
        # targets both come from the same row of ids.
        vectorized_length = sequence_length + (
            1 if info.task == "language_model" else 0
        )
        vectorizer, reloaded = _prepare_vectorizer(
            bundle, run_dir, vocabulary_size, vectorized_length, resuming
        )
        if not reloaded:
            _save_vectorizer(
                vectorizer,
                run_dir,
                sequence_length=sequence_length,
                max_tokens=vocabulary_size,
            )
        vocabulary = [str(token) for token in vectorizer.get_vocabulary()]
        arguments = _model_arguments(
            config, info, bundle, vocabulary, sequence_length
        )
        if info.task == "language_model":
            prepare = _language_model_prepare(vectorizer)
            # Serving feeds the model sequence_length ids, not one more.
            from kerasdl import data

            vectorizer = data.vectorizer_from_vocabulary(
                vocabulary, sequence_length=sequence_length
            )
        else:
            prepare = _classification_prepare(vectorizer)

    return vectorizer, arguments, prepare


def count_examples(bundle, split: str) -> int:
    """The examples in a split: `bundle.num_examples`, else counted once.

    Args:
        bundle: A `kerasdl.data.DataBundle`.
        split: `"train"`, `"validation"` or `"test"`.

    Returns:
        The number of examples.
    """
    known = bundle.num_examples.get(split)
    if known is not None:
        return int(known)
    dataset = getattr(bundle, split)
    cardinality = int(dataset.cardinality())
    if cardinality >= 0:
        return cardinality
    return int(dataset.reduce(0, lambda count, _: count + 1))


def _pipelines(config, bundle, prepare, initial_epoch):
    """Returns the `(train, validation, test)` batch datasets."""
    train_batches = training_batches(
        bundle.train,
        num_examples=count_examples(bundle, "train"),
        batch_size=config.batch_size,
        seed=config.seed,
        initial_epoch=initial_epoch,
        epochs=config.epochs,
        prepare=prepare,
    )
    evaluation = {}
    for split in ("validation", "test"):
        dataset = getattr(bundle, split)
        evaluation[split] = None
        if dataset is not None:
            evaluation[split] = _evaluation_batches(
                dataset,
                num_examples=bundle.num_examples.get(split),
                batch_size=config.batch_size,
                prepare=prepare,
            )
    return train_batches, evaluation["validation"], evaluation["test"]


def _run_metrics(config, bundle, history, throughput, initial_epoch):
    epochs_this_call = len(history.history.get("loss", []))
    rates = throughput.examples_per_second
    # The first epoch of a call includes tracing; leave it out when there
    # are others.
    steady = rates[1:] if len(rates) > 1 else rates
    return {
        "epochs_run": initial_epoch + epochs_this_call,
        "epochs_this_run": epochs_this_call,
        "resumed_from_epoch": initial_epoch,
        "examples_per_second": float(np.mean(steady)) if steady else 0.0,
        "train_examples": bundle.num_examples.get("train"),
        "test_examples": bundle.num_examples.get("test"),
        "model": config.model,
        "data": bundle.description,
    }
