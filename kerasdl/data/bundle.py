"""The `DataBundle` every loader returns, `DataError`, and seeded splits.

Loaders for small file formats read everything into NumPy arrays first
(an `Examples`), check it, split it with a seeded permutation and only then
wrap each split in `tf.data.Dataset.from_tensor_slices`, so that the
pipelines run without per-element Python.
"""

import dataclasses
import logging

import numpy as np
import tensorflow as tf

logger = logging.getLogger(__name__)

TASKS = ("text", "image")


class DataError(ValueError):
    """Bad data in a user's file: the message names the file and line.

    A `ValueError`, so callers that catch `ValueError` also catch it.

    Args:
        location: `"PATH, line N"` (see `where`) or just the path.
        problem: what is wrong, as a sentence without a final period.
        received: the offending value, as `name=value`.

    Example:

    >>> str(DataError(where("train.txt", 3), "bad label", received="x=1"))
    'train.txt, line 3: bad label. Received: x=1'
    """

    def __init__(self, location, problem, *, received):
        super().__init__(f"{location}: {problem}. Received: {received}")
        self.location = location


def where(path, line=None):
    """Formats a location as `PATH, line N` (or `PATH` without a line)."""
    if line is None:
        return str(path)
    return f"{path}, line {line}"


@dataclasses.dataclass
class DataBundle:
    """A labelled dataset split into train, test and optional validation.

    Every split is an UNBATCHED `tf.data.Dataset` of `(features, label)`
    pairs: text features are scalar `tf.string` sentences, image features
    float32 `(H, W, C)` in [0, 1]; labels are int64 scalars indexing
    `class_names`.

    Args:
        task: `"text"` or `"image"`.
        train: the training split.
        test: the test split.
        validation: the validation split, or `None`.
        class_names: the name of every class; index = label id.
        num_examples: examples per split, e.g. `{"train": 90, "test": 10}`.
        description: where the data came from, for logs and model cards.
        image_shape: `(H, W, C)` of every image, or `None` for text.

    Example:

    >>> bundle = load_data(task="text")
    >>> features, label = next(iter(bundle.train))
    >>> bundle.num_classes == len(bundle.class_names)
    True
    """

    task: str
    train: tf.data.Dataset
    test: tf.data.Dataset
    validation: tf.data.Dataset | None
    class_names: list[str]
    num_examples: dict[str, int]
    description: str
    image_shape: tuple[int, int, int] | None = None

    @property
    def num_classes(self) -> int:
        """The number of classes, `len(class_names)`."""
        return len(self.class_names)


@dataclasses.dataclass
class Examples:
    """One split held in memory before it becomes a `tf.data.Dataset`.

    Args:
        features: `(n,)` object array of `str` for text, `(n, H, W, C)`
            uint8 or float32 array for images.
        labels: `(n,)` int64 array.
        source: the file or folder it was read from (for messages).
    """

    features: np.ndarray
    labels: np.ndarray
    source: str

    def __len__(self):
        return len(self.labels)

    def take(self, indices):
        """Returns the examples at `indices` (a NumPy index array)."""
        return Examples(
            self.features[indices], self.labels[indices], self.source
        )


def check_fraction(name, value):
    """Raises unless `0 <= value < 1` (a split fraction)."""
    if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(
            f"`{name}` must be a fraction in [0, 1). Received: {name}={value!r}"
        )


def split_indices(num_examples, fraction, rng, *, source, name):
    """Splits `range(num_examples)` into kept and held-out index arrays.

    The held-out part has `round(fraction * num_examples)` examples, drawn
    by a seeded permutation, so the same seed gives the same disjoint parts.

    Args:
        num_examples: how many examples there are.
        fraction: the share to hold out, in (0, 1).
        rng: a `np.random.Generator`.
        source: the file the examples came from (for the error message).
        name: the argument that asked for the split, e.g. `"test_split"`.

    Returns:
        `(kept, held_out)`: two sorted int64 index arrays.

    Raises:
        DataError: if either part would be empty.
    """
    num_held_out = int(round(fraction * num_examples))
    if num_held_out == 0 or num_held_out == num_examples:
        raise DataError(
            where(source),
            f"splitting off {name}={fraction} of {num_examples} examples "
            "leaves an empty split; use a larger file or another fraction",
            received=f"{name}={fraction}",
        )
    order = rng.permutation(num_examples)
    return np.sort(order[num_held_out:]), np.sort(order[:num_held_out])


def check_not_empty(examples, split):
    """Raises `DataError` if a split read from a file has no examples."""
    if len(examples) == 0:
        raise DataError(
            where(examples.source),
            f"the {split} split has no examples",
            received=f"{split}={examples.source}",
        )


def finish_splits(
    train,
    test,
    validation,
    *,
    test_split,
    validation_split,
    seed,
):
    """Fills in missing test and validation splits by seeded splitting.

    Args:
        train: `Examples` for training.
        test: `Examples` for testing, or `None` to split `test_split` off
            `train`.
        validation: `Examples`, or `None` to carve `validation_split` of
            what remains of `train` (no validation when it is 0).
        test_split: fraction of `train` held out as the test split.
        validation_split: fraction of `train` held out for validation.
        seed: seed of the permutations.

    Returns:
        `(train, test, validation)`; `validation` may be `None`.

    Raises:
        DataError: if a split is empty.
        ValueError: if no test file is given and `test_split` is 0.
    """
    check_fraction("test_split", test_split)
    check_fraction("validation_split", validation_split)
    rng = np.random.default_rng(seed)
    check_not_empty(train, "train")
    if test is None:
        if test_split == 0:
            raise ValueError(
                "Without a test file `test_split` must be > 0 to hold out "
                f"a test split of {train.source}. Received: test_split=0"
            )
        kept, held_out = split_indices(
            len(train), test_split, rng, source=train.source, name="test_split"
        )
        train, test = train.take(kept), train.take(held_out)
    check_not_empty(test, "test")
    if validation is None and validation_split > 0:
        kept, held_out = split_indices(
            len(train),
            validation_split,
            rng,
            source=train.source,
            name="validation_split",
        )
        train, validation = train.take(kept), train.take(held_out)
    elif validation is not None:
        check_not_empty(validation, "validation")
        if validation_split > 0:
            logger.info(
                "Using the validation file %s; validation_split=%s is ignored.",
                validation.source,
                validation_split,
            )
    return train, test, validation


def check_label_range(examples, num_classes, *, line_numbers=None):
    """Raises `DataError` at the first label outside `[0, num_classes)`.

    Args:
        examples: the `Examples` to check.
        num_classes: the number of classes (from the training split).
        line_numbers: `(n,)` line of each example in its file, if known.
    """
    bad = np.flatnonzero(
        (examples.labels < 0) | (examples.labels >= num_classes)
    )
    if bad.size == 0:
        return
    index = int(bad[0])
    line = None if line_numbers is None else int(line_numbers[index])
    raise DataError(
        where(examples.source, line),
        f"labels must be integers from 0 to {num_classes - 1} (the classes "
        "seen in the training split)",
        received=f"label={int(examples.labels[index])}",
    )


def to_dataset(examples, *, image_shape=None):
    """Wraps in-memory `Examples` in an unbatched `tf.data.Dataset`.

    Text features become scalar `tf.string`; uint8 images are scaled to
    float32 in [0, 1] inside the pipeline (keeping uint8 in memory is four
    times smaller), and resized there when `image_shape` differs.
    """
    labels = examples.labels.astype(np.int64)
    if examples.features.dtype == object:
        features = tf.constant(examples.features.tolist(), dtype=tf.string)
        return tf.data.Dataset.from_tensor_slices((features, labels))
    dataset = tf.data.Dataset.from_tensor_slices((examples.features, labels))
    scale = 255.0 if examples.features.dtype == np.uint8 else 1.0
    stored_size = tuple(examples.features.shape[1:3])

    def to_float(image, label):
        image = tf.cast(image, tf.float32) / scale
        if image_shape is not None and tuple(image_shape[:2]) != stored_size:
            # bilinear upsampling, e.g. (8, 8, 1) -> (28, 28, 1)
            image = tf.image.resize(image, image_shape[:2])
        return image, label

    return dataset.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)


def make_bundle(
    task,
    train,
    test,
    validation,
    *,
    class_names,
    description,
    image_shape=None,
):
    """Builds a `DataBundle` from in-memory `Examples` splits."""
    splits = {"train": train, "test": test}
    if validation is not None:
        splits["validation"] = validation
    datasets = {
        name: to_dataset(examples, image_shape=image_shape)
        for name, examples in splits.items()
    }
    num_examples = {name: len(examples) for name, examples in splits.items()}
    logger.info("Loaded %s: %s", description, num_examples)
    return DataBundle(
        task=task,
        train=datasets["train"],
        test=datasets["test"],
        validation=datasets.get("validation"),
        class_names=list(class_names),
        num_examples=num_examples,
        description=description,
        image_shape=None if image_shape is None else tuple(image_shape),
    )
