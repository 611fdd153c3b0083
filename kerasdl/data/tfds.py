"""TensorFlow Datasets as a `DataBundle`, found from the feature spec.

Nothing here is specific to one dataset: the text feature is the first
`tfds.features.Text` (or scalar `tf.string` tensor) feature, the image
feature the first `tfds.features.Image`, the label the first
`tfds.features.ClassLabel`, and the class names are that ClassLabel's
`names`. The test split is "test" when it exists and is labelled (GLUE
test splits carry the label -1), else "validation", else a seeded split
of "train".
"""

import difflib
import logging

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from kerasdl.data.bundle import DataBundle
from kerasdl.data.bundle import split_indices

logger = logging.getLogger(__name__)


def _find_feature(features, wanted, requested, argument, name):
    """Returns the key of the first feature matching `wanted`."""
    if requested is not None:
        if requested not in features:
            raise ValueError(
                f"The dataset {name!r} has no feature {requested!r}; it "
                f"has {sorted(features)}. Received: {argument}={requested!r}"
            )
        return requested
    for key, feature in features.items():
        if wanted(feature):
            return key
    raise ValueError(
        f"The dataset {name!r} has no feature usable as `{argument}`; its "
        f"features are {sorted(features)}. Name one with `{argument}`. "
        f"Received: {argument}=None"
    )


def _is_text(feature):
    if isinstance(feature, tfds.features.Text):
        return True
    return (
        isinstance(feature, tfds.features.Tensor)
        and feature.dtype == tf.string
        and feature.shape == ()
    )


def _is_image(feature):
    return isinstance(feature, tfds.features.Image)


def _is_label(feature):
    return isinstance(feature, tfds.features.ClassLabel)


def _builder(name, data_dir):
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        # tfds' own message lists all ~1,000 names; offer the close ones.
        close = difflib.get_close_matches(
            name.split("/")[0], tfds.list_builders(), n=5
        )
        raise ValueError(
            f"TensorFlow Datasets has no dataset {name!r}. Close names: "
            f"{close}; `tfds.list_builders()` lists all. "
            f"Received: spec='tfds:{name}'"
        ) from None
    # Reads the prepared files in data_dir; downloads only where they are
    # missing (that needs a network, as with `tfds.load`).
    builder.download_and_prepare()
    return builder


def _cardinality(dataset):
    count = int(dataset.cardinality())
    if count < 0:  # unknown: count once
        count = int(dataset.reduce(0, lambda total, _: total + 1))
    return count


def _is_labelled(dataset, label_key):
    """Whether the first example has a real label (unlabelled ones: -1)."""
    for example in dataset.take(1):
        return int(example[label_key]) >= 0
    return False


def _split(dataset, fraction, rng, *, source, name):
    """Seeded, disjoint split of a dataset with a deterministic order."""
    count = _cardinality(dataset)
    kept, held_out = split_indices(
        count, fraction, rng, source=source, name=name
    )
    is_held_out = np.zeros(count, dtype=bool)
    is_held_out[held_out] = True
    mask = tf.constant(is_held_out)

    def keep(wanted):
        return (
            dataset.enumerate()
            .filter(lambda index, _: tf.equal(mask[index], wanted))
            .map(lambda _, example: example)
            .apply(
                tf.data.experimental.assert_cardinality(
                    len(held_out) if wanted else len(kept)
                )
            )
        )

    return keep(False), keep(True)


def _available_splits(builder):
    # Without metadata (e.g. under tfds.testing.mock_data) the split names
    # are unknown; assume the common train/test pair.
    names = list(builder.info.splits)
    return names or ["train", "test"]


def load_tfds(
    name,
    *,
    task,
    data_dir=None,
    validation_split=0.0,
    test_split=0.1,
    seed=0,
    image_size=None,
    text_column=None,
    label_column=None,
) -> DataBundle:
    """Loads `tfds:NAME[/CONFIG]` as a `DataBundle`.

    Args:
        name: the dataset name, e.g. `"glue/sst2"` or `"mnist"`.
        task: `"text"` or `"image"`.
        data_dir: where TensorFlow Datasets keeps its files.
        validation_split: fraction of train held out for validation.
        test_split: fraction of train held out as test when the dataset
            has no labelled test or validation split.
        seed: seed of the splits.
        image_size: `(height, width)` to resize images to; required when
            the dataset's images have no fixed size.
        text_column: the text feature; default the first text feature.
        label_column: the label feature; default the first ClassLabel.

    Returns:
        A `DataBundle` of `(features, label)` pairs.

    Raises:
        ValueError: if the dataset is unknown or has no suitable feature.
    """
    builder = _builder(name, data_dir)
    features = builder.info.features
    label_key = _find_feature(
        features, _is_label, label_column, "label_column", name
    )
    if task == "text":
        feature_key = _find_feature(
            features, _is_text, text_column, "text_column", name
        )
        image_shape = None
    else:
        feature_key = _find_feature(
            features, _is_image, text_column, "text_column", name
        )
        image_shape = _image_shape(features[feature_key], image_size, name)
    splits = _pick_splits(
        builder, label_key, test_split, validation_split, seed, name
    )

    def to_pair(example):
        value = example[feature_key]
        if task == "image":
            value = tf.cast(value, tf.float32) / 255.0
            if image_size is not None:
                value = tf.image.resize(value, image_shape[:2])
        return value, tf.cast(example[label_key], tf.int64)

    datasets = {
        split: dataset.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE)
        for split, dataset in splits.items()
    }
    num_examples = {
        split: _cardinality(dataset) for split, dataset in datasets.items()
    }
    description = (
        f"TensorFlow Datasets {name} ({builder.info.version}): "
        f"{feature_key!r} -> {label_key!r}"
    )
    logger.info("Loaded %s: %s", description, num_examples)
    return DataBundle(
        task=task,
        train=datasets["train"],
        test=datasets["test"],
        validation=datasets.get("validation"),
        class_names=list(features[label_key].names),
        num_examples=num_examples,
        description=description,
        image_shape=image_shape,
    )


def _image_shape(feature, image_size, name):
    height, width, channels = feature.shape
    if image_size is not None:
        height, width = image_size
    if height is None or width is None or channels is None:
        raise ValueError(
            f"The images of {name!r} have no fixed shape "
            f"{feature.shape}; pass image_size=(height, width). "
            f"Received: image_size={image_size}"
        )
    return (int(height), int(width), int(channels))


def _pick_splits(builder, label_key, test_split, validation_split, seed, name):
    available = _available_splits(builder)
    rng = np.random.default_rng(seed)
    read = {
        split: builder.as_dataset(split=split, shuffle_files=False)
        for split in ("train", "test", "validation")
        if split in available
    }
    if "train" not in read:
        raise ValueError(
            f"The dataset {name!r} has no 'train' split; it has "
            f"{available}. Received: spec='tfds:{name}'"
        )
    splits = {"train": read["train"]}
    for candidate in ("test", "validation"):
        if candidate in read and _is_labelled(read[candidate], label_key):
            splits["test"] = read[candidate]
            break
    if "test" not in splits:
        splits["train"], splits["test"] = _split(
            splits["train"], test_split, rng, source=name, name="test_split"
        )
    if validation_split > 0:
        splits["train"], splits["validation"] = _split(
            splits["train"],
            validation_split,
            rng,
            source=name,
            name="validation_split",
        )
    return splits
