"""Shared pieces of the benchmark scripts: data, Kim's recipe, reporting.

The four sentence-classification benchmarks of Kim (2014) are read from
`../shared/data/text` (or any folder holding the same files), turned into
token ids with `kerasdl.data.make_vectorizer`, and trained with Kim's
recipe: Adadelta (rho 0.95), batch 50, dropout 0.5, max-norm 3 and early
stopping on a dev set (10 % of train where the data has none).

Every finished run is cached as one JSON file, so a killed or repeated
sweep skips the runs it already has (see `RunCache`).
"""

import dataclasses
import datetime
import hashlib
import json
import logging
import os
import pathlib
import platform
import statistics
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from kerasdl import data
from kerasdl import zoo
from kerasdl.optimizers import DenseGradientAdadelta
from kerasdl.optimizers import SparseAdadelta

logger = logging.getLogger(__name__)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "docs" / "results"
CACHE_DIR = REPO_ROOT / "runs" / "benchmarks"
DEFAULT_DATA_ROOT = REPO_ROOT.parent / "shared" / "data" / "text"

# Kim (2014) §3.1: mini-batches of 50, Adadelta with rho 0.95 (Zeiler
# 2012, whose epsilon 1e-6 we keep), learning rate 1.0 (Adadelta's own).
KIM_BATCH_SIZE = 50
KIM_RHO = 0.95
KIM_EPSILON = 1e-6
DEV_FRACTION = 0.1
# Large enough for every benchmark's vocabulary (MR has ~18k words).
MAX_VOCABULARY = 50_000
# Longer than any benchmark sentence (MR's longest has 59 tokens); ids are
# cut to the longest sentence afterwards.
MAX_SEQUENCE_LENGTH = 128

# The zoo's text classifiers, plus the RNN language model used as a
# pretrained encoder under a classifier head (`zoo.sentence_classifier`).
TEXT_MODELS = ("text_cnn_kim", "text_cnn", "simple_rnn", "rnn_language_model")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One of Kim's (2014) benchmarks and its published CNN-rand score.

    Args:
        name: The name in Kim's Table 2 ("MR", "SST-1", "SST-2", "TREC").
        files: `{"train": ..., "dev": ..., "test": ...}` file names; MR has
            only `"all"`.
        encoding: The text encoding of the files.
        kim_accuracy: CNN-rand test accuracy in %, Kim (2014) Table 2.
        note: How our protocol differs from Kim's, for the table.
    """

    name: str
    files: dict
    encoding: str
    kim_accuracy: float
    note: str = ""


DATASETS = {
    "MR": DatasetSpec(
        "MR",
        {"all": "rt-polarity.all"},
        "latin-1",
        76.1,
        "10-fold CV (seeded), dev = 10 % of each training fold",
    ),
    "SST-1": DatasetSpec(
        "SST-1",
        {
            "train": "stsa.fine.train",
            "dev": "stsa.fine.dev",
            "test": "stsa.fine.test",
        },
        "utf-8",
        45.0,
        "given splits, sentences only (Kim also trained on phrases)",
    ),
    "SST-2": DatasetSpec(
        "SST-2",
        {
            "train": "stsa.binary.train",
            "dev": "stsa.binary.dev",
            "test": "stsa.binary.test",
        },
        "utf-8",
        82.7,
        "given splits, sentences only (Kim also trained on phrases)",
    ),
    "TREC": DatasetSpec(
        "TREC",
        {"train": "TREC.train.all", "test": "TREC.test.all"},
        "latin-1",
        91.2,
        "given train/test, dev = 10 % of train",
    ),
}


# ------------------------------------------------------------ machine info


def cpu_model() -> str:
    """Returns the CPU's model name from /proc/cpuinfo (Linux), or ''."""
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def machine_info() -> dict:
    """Returns the machine, versions, date and load, for result files.

    The load average tells a reader whether timings were taken on a quiet
    machine: `conditions` is "quiet" when the 1-minute load is below half
    the cores, else "busy" with the figures.
    """
    cores = os.cpu_count() or 1
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0,) * 3
    if load[0] < cores / 2:
        conditions = "quiet"
    else:
        conditions = (
            f"busy (1-min load {load[0]:.1f} on {cores} cores): timings "
            "are noisy"
        )
    return {
        "cpu": cpu_model(),
        "cores": cores,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "load_average": [round(value, 2) for value in load],
        "conditions": conditions,
    }


def machine_lines(machine: dict) -> list[str]:
    """Returns Markdown lines describing `machine_info()`."""
    return [
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['platform']}",
        f"- Versions: Python {machine['python']}, TensorFlow "
        f"{machine['tensorflow']}, Keras {machine['keras']}, NumPy "
        f"{machine['numpy']}",
        f"- Date: {machine['date']}",
        f"- Conditions: {machine['conditions']} (load average "
        f"{machine['load_average']})",
    ]


# ------------------------------------------------------------------ data


@dataclasses.dataclass
class Split:
    """Sentences and their integer labels."""

    sentences: np.ndarray
    labels: np.ndarray

    def take(self, indices):
        return Split(self.sentences[indices], self.labels[indices])

    def __len__(self):
        return len(self.labels)


def check_dataset_names(names, argument="datasets"):
    """Checks names against `DATASETS`; returns them as a list."""
    unknown = [name for name in names if name not in DATASETS]
    if unknown:
        raise ValueError(
            f"Unknown dataset. Expected names from {tuple(DATASETS)}. "
            f"Received: {argument}={','.join(names)}"
        )
    return list(names)


def read_dataset(name: str, data_root) -> dict[str, Split]:
    """Reads one benchmark's files into `{"train": Split, ...}`.

    Args:
        name: A key of `DATASETS`.
        data_root: The folder holding the files.

    Returns:
        A dict of `Split`s keyed like `DatasetSpec.files`.

    Raises:
        ValueError: If `name` is unknown.
        kerasdl.data.DataError: If a file is missing or malformed.
    """
    check_dataset_names([name], "dataset")
    spec = DATASETS[name]
    splits = {}
    for split, filename in spec.files.items():
        sentences, labels = data.read_sentence_file(
            pathlib.Path(data_root) / filename, encoding=spec.encoding
        )
        splits[split] = Split(
            np.array(sentences, dtype=object), np.array(labels, np.int64)
        )
    return splits


def _hold_out(split, fraction, seed):
    """Splits `split` into (rest, held_out) with a seeded permutation."""
    order = np.random.default_rng(seed).permutation(len(split))
    count = max(1, int(round(fraction * len(split))))
    return split.take(order[count:]), split.take(order[:count])


def folds(splits, *, seed, cross_validation=10, subsample=None):
    """Yields `(fold, train, dev, test)` for one seed of a benchmark.

    Where the data has no test file (MR), it is split into
    `cross_validation` seeded folds (or one 90/10 split when
    `cross_validation` is 1). Where it has no dev file, 10 % of the
    training part is held out, seeded.

    Args:
        splits: The output of `read_dataset`.
        seed: Seeds the permutations.
        cross_validation: Folds for data without a test file.
        subsample: If set, keep at most this many training examples and a
            quarter as many test and dev examples (for quick runs).

    Yields:
        `(fold, train, dev, test)` with `Split`s.
    """
    if "all" in splits:
        everything = splits["all"]
        order = np.random.default_rng(seed).permutation(len(everything))
        if cross_validation == 1:
            parts = [order[: len(order) // 10]]
        else:
            parts = np.array_split(order, cross_validation)
        for fold, test_indices in enumerate(parts):
            train_indices = np.setdiff1d(order, test_indices)
            train = everything.take(train_indices)
            test = everything.take(test_indices)
            train, dev = _hold_out(train, DEV_FRACTION, seed + fold)
            yield fold, *_subsample(train, dev, test, subsample, seed)
        return
    train, test = splits["train"], splits["test"]
    if "dev" in splits:
        dev = splits["dev"]
    else:
        train, dev = _hold_out(train, DEV_FRACTION, seed)
    yield 0, *_subsample(train, dev, test, subsample, seed)


def _subsample(train, dev, test, subsample, seed):
    if subsample is None:
        return train, dev, test
    rng = np.random.default_rng(seed)

    def first(split, count):
        return split.take(rng.permutation(len(split))[:count])

    small = max(1, subsample // 4)
    return first(train, subsample), first(dev, small), first(test, small)


@dataclasses.dataclass
class Vectorized:
    """Token ids of the three splits, and the sizes a model needs."""

    train: tuple
    dev: tuple
    test: tuple
    vocabulary_size: int
    sequence_length: int
    num_classes: int
    vocabulary: list


def vectorize(
    train, dev, test, *, minimum_length=1, length=None, num_classes=None
):
    """Maps sentences to token ids with a vocabulary of the training part.

    The vectorizer is `kerasdl.data.make_vectorizer`, adapted on the
    training sentences only; the ids are cut to the longest sentence of
    the three splits (Kim pads to the longest sentence of the data), but
    never below `minimum_length` (the widest filter must fit).

    Args:
        train: The training `Split`.
        dev: The dev `Split`.
        test: The test `Split`.
        minimum_length: The shortest allowed `sequence_length`.
        length: If set, every sentence is cut (or padded) to this many
            tokens instead (e.g. the seed `text_cnn` preset's 10).
        num_classes: Classes; default `max(label) + 1` over the splits.

    Returns:
        A `Vectorized`.
    """
    vectorizer = data.make_vectorizer(
        tf.data.Dataset.from_tensor_slices(list(train.sentences)),
        vocabulary_size=MAX_VOCABULARY,
        sequence_length=MAX_SEQUENCE_LENGTH,
    )
    ids = {}
    for name, split in (("train", train), ("dev", dev), ("test", test)):
        # (examples, MAX_SEQUENCE_LENGTH) int64, zero-padded on the right.
        ids[name] = vectorizer(list(split.sentences)).numpy().astype("int32")
    longest = max(int((value > 0).sum(axis=1).max()) for value in ids.values())
    if length is None:
        length = max(longest, minimum_length)
    elif length < minimum_length:
        raise ValueError(
            f"Argument `length` must be at least {minimum_length} (the "
            f"widest filter must fit). Received: length={length}"
        )
    for name, value in ids.items():
        if value.shape[1] < length:  # longer than MAX_SEQUENCE_LENGTH
            ids[name] = np.pad(value, [(0, 0), (0, length - value.shape[1])])
    if num_classes is None:
        labels = np.concatenate([train.labels, dev.labels, test.labels])
        num_classes = int(labels.max()) + 1
    return Vectorized(
        train=(ids["train"][:, :length], train.labels),
        dev=(ids["dev"][:, :length], dev.labels),
        test=(ids["test"][:, :length], test.labels),
        vocabulary_size=int(vectorizer.vocabulary_size()),
        sequence_length=length,
        num_classes=max(num_classes, 2),
        vocabulary=list(vectorizer.get_vocabulary()),
    )


# --------------------------------------------------------------- training


def kim_optimizer(dense_gradients=False):
    """Adadelta as in Kim (2014): learning rate 1.0, rho 0.95.

    Args:
        dense_gradients: Apply embedding gradients densely
            (`DenseGradientAdadelta`), as the suite's XLA rows do;
            otherwise `SparseAdadelta` updates only the batch's rows, with
            the same result.

    Returns:
        A fresh Keras optimizer.
    """
    kind = DenseGradientAdadelta if dense_gradients else SparseAdadelta
    return kind(learning_rate=1.0, rho=KIM_RHO, epsilon=KIM_EPSILON)


class BestOnDev(keras.callbacks.Callback):
    """Keeps the weights of the best dev-accuracy epoch; a time budget.

    At the end of training the best epoch's weights are restored (early
    stopping on dev, Kim 2014 §3.1). Training also stops after `patience`
    epochs without improvement, or once `time_budget` seconds of training
    have passed (checked after every batch).

    Args:
        patience: Epochs without a better dev accuracy before stopping;
            `None` never stops early.
        time_budget: Seconds of training after which to stop, or `None`.
    """

    def __init__(self, patience=None, time_budget=None):
        super().__init__()
        self.patience = patience
        self.time_budget = time_budget
        self.best_accuracy = -1.0
        self.best_epoch = -1
        self.best_weights = None
        self.epochs_run = 0
        self.steps = 0
        self.start = None

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        # Called once per execution: steps_per_execution steps.
        self.steps += self.model.steps_per_execution
        if self.time_budget is not None:
            if time.perf_counter() - self.start >= self.time_budget:
                self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_run = epoch + 1
        accuracy = float((logs or {}).get("val_accuracy", -1.0))
        if accuracy > self.best_accuracy:
            self.best_accuracy = accuracy
            self.best_epoch = epoch
            self.best_weights = self.model.get_weights()
        elif self.patience is not None:
            if epoch - self.best_epoch >= self.patience:
                self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def _builder_arguments(name, vectors, embedding_dim, overrides):
    """The zoo keyword arguments a text model gets from the data."""
    defaults = zoo.get_model_info(name).defaults
    arguments = {
        "vocabulary_size": vectors.vocabulary_size,
        "sequence_length": vectors.sequence_length,
        "num_classes": vectors.num_classes,
        "embedding_dim": embedding_dim,
    }
    arguments = {k: v for k, v in arguments.items() if k in defaults}
    arguments.update(overrides)
    return arguments


def _pretrain_language_model(vectors, embedding_dim, overrides, epochs):
    """Trains `rnn_language_model` on the training sentences (Adam).

    Inputs are the ids; targets the same ids shifted left by one, with a
    zero (padding, masked) at the end.
    """
    arguments = _builder_arguments(
        "rnn_language_model", vectors, embedding_dim, overrides
    )
    arguments.pop("num_classes", None)
    language_model = zoo.build("rnn_language_model", **arguments)
    language_model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
    )
    ids = vectors.train[0]
    # (examples, sequence_length): the next token at every position.
    targets = np.concatenate([ids[:, 1:], np.zeros_like(ids[:, :1])], axis=1)
    language_model.fit(
        ids, targets, batch_size=KIM_BATCH_SIZE, epochs=epochs, verbose=0
    )
    return language_model


def build_text_classifier(
    name,
    vectors,
    *,
    embedding_dim=300,
    embeddings=None,
    overrides=None,
    pretrain_epochs=1,
):
    """Builds a zoo text model sized for `vectors`.

    `"rnn_language_model"` means: pretrain the language model on the
    training sentences for `pretrain_epochs`, then put a softmax on its
    encoder (`zoo.sentence_classifier`, fine-tuned).

    Args:
        name: One of `TEXT_MODELS`.
        vectors: A `Vectorized`.
        embedding_dim: Size of the word vectors.
        embeddings: Optional `(vocabulary_size, embedding_dim)` matrix.
        overrides: Other zoo keyword arguments (e.g. `region_sizes`).
        pretrain_epochs: Language-model epochs before classification.

    Returns:
        A `keras.Model` from token ids to class probabilities.

    Raises:
        ValueError: If `name` is not one of `TEXT_MODELS`.
    """
    if name not in TEXT_MODELS:
        raise ValueError(
            f"Unknown text model. Expected one of {TEXT_MODELS}. "
            f"Received: model={name!r}"
        )
    overrides = dict(overrides or {})
    if embeddings is not None:
        overrides["embeddings"] = embeddings
    if name == "rnn_language_model":
        language_model = _pretrain_language_model(
            vectors, embedding_dim, overrides, pretrain_epochs
        )
        return zoo.sentence_classifier(
            language_model, vectors.num_classes, trainable=True
        )
    arguments = _builder_arguments(name, vectors, embedding_dim, overrides)
    return zoo.build(name, **arguments)


def training_batches(inputs, labels, batch_size, seed=0):
    """Shuffled full batches, reshuffled every epoch, prefetched.

    The last partial batch is dropped (a different example set each
    epoch): a batch of another shape would make XLA compile the train
    step a second time.
    """
    dataset = tf.data.Dataset.from_tensor_slices((inputs, labels))
    dataset = dataset.shuffle(len(labels), seed=seed)
    dataset = dataset.batch(batch_size, drop_remainder=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def train_and_test(
    model,
    vectors,
    *,
    epochs,
    patience=None,
    batch_size=KIM_BATCH_SIZE,
    time_budget=None,
    jit_compile=False,
    steps_per_execution=1,
    optimizer=None,
):
    """Trains with Kim's recipe and early stopping on dev; tests the best.

    Args:
        model: A built classifier from token ids.
        vectors: A `Vectorized`.
        epochs: The most epochs.
        patience: Epochs without dev improvement before stopping.
        batch_size: Examples per step (Kim: 50).
        time_budget: Stop training after this many seconds.
        jit_compile: Compile the train step with XLA.
        steps_per_execution: Steps per call into the compiled graph (the
            time budget is then checked every that many steps).
        optimizer: Default `kim_optimizer()`, with dense embedding
            gradients under XLA.

    Returns:
        A dict: `test_accuracy`, `dev_accuracy` (of the kept epoch),
        `best_epoch`, `epochs_run`, `train_seconds` (wall time of `fit`,
        tracing and dev evaluation included) and `examples_per_second`.
    """
    model.compile(
        optimizer=optimizer or kim_optimizer(dense_gradients=jit_compile),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    best = BestOnDev(patience=patience, time_budget=time_budget)
    start = time.perf_counter()
    model.fit(
        training_batches(*vectors.train, batch_size),
        epochs=epochs,
        validation_data=vectors.dev,
        # One dev batch: one shape, so XLA compiles the test step once.
        validation_batch_size=len(vectors.dev[1]),
        callbacks=[best],
        # The dataset shuffles itself; fit's default would warn.
        shuffle=False,
        verbose=0,
    )
    seconds = time.perf_counter() - start
    _, test_accuracy = model.evaluate(*vectors.test, batch_size=500, verbose=0)
    return {
        "test_accuracy": 100.0 * float(test_accuracy),
        "dev_accuracy": 100.0 * best.best_accuracy,
        "best_epoch": best.best_epoch + 1,
        "epochs_run": best.epochs_run,
        "train_seconds": seconds,
        # The last batch of an epoch may be short; close enough here.
        "examples_per_second": best.steps * batch_size / seconds,
    }


# -------------------------------------------------------------- the cache


class RunCache:
    """One JSON file per finished run, so sweeps can resume.

    Args:
        name: The sweep's folder under `root`.
        root: Default `runs/benchmarks` in the repository.
        fresh: If `True`, ignore (and overwrite) cached runs.
    """

    def __init__(self, name, root=None, fresh=False):
        self.folder = pathlib.Path(root or CACHE_DIR) / name
        self.fresh = fresh

    def path(self, key: dict) -> pathlib.Path:
        text = json.dumps(key, sort_keys=True, default=str)
        digest = hashlib.sha1(text.encode()).hexdigest()[:16]
        return self.folder / f"{digest}.json"

    def get(self, key):
        path = self.path(key)
        if self.fresh or not path.is_file():
            return None
        return json.loads(path.read_text())["result"]

    def put(self, key, result):
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"key": key, "result": result}))
        temporary.replace(path)


# -------------------------------------------------------------- reporting


def mean_std(values):
    """Returns `(mean, sample std)`; std is 0 for one value."""
    values = [float(value) for value in values]
    if not values:
        return float("nan"), float("nan")
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), spread


def markdown_table(header, rows):
    """Returns a Markdown table as a list of lines."""
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += [
        "| " + " | ".join(str(cell) for cell in row) + " |" for row in rows
    ]
    return lines


def write_results(stem, markdown_lines, payload, output_dir=None):
    """Writes `<stem>.md` and `<stem>.json`; returns their paths."""
    folder = pathlib.Path(output_dir or RESULTS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    markdown = folder / f"{stem}.md"
    markdown.write_text("\n".join(markdown_lines) + "\n")
    result = folder / f"{stem}.json"
    result.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return markdown, result


def command_line():
    """The command that produced a result, for the result files."""
    return "python " + " ".join(
        [pathlib.Path(sys.argv[0]).name if sys.argv else "?", *sys.argv[1:]]
    )


def quiet_tensorflow():
    """Silences TensorFlow's C++ and Python start-up chatter."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf.get_logger().setLevel(logging.ERROR)
