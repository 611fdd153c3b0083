"""`load_data`: one front door for every data source.

A spec says where the data is:

=================================  =========================================
spec                               data
=================================  =========================================
`None`                             the offline default of the task (see
                                   `kerasdl.data.offline`)
`"tfds:NAME[/CONFIG]"`             TensorFlow Datasets
`"idx:IMAGES,LABELS"`              a pair of IDX files
`"PATH"`                           one file or folder, split by `test_split`
`"train=PATH,test=PATH"`           explicit splits; `",validation=PATH"`
                                   may follow
`"...,encoding=NAME"`              after any `train=` spec: the text
                                   encoding of its files (e.g. `latin-1`),
                                   for callers that pass only a spec
=================================  =========================================

A PATH is a sentence file (`LABEL SENTENCE` a line), a `.tsv`/`.csv`
table, an IDX image file (`*-images-idx3-ubyte[.gz]`, labels found beside
it) or a folder of class sub-folders of images.
"""

import logging
import pathlib

from kerasdl.data import images
from kerasdl.data import offline
from kerasdl.data import text
from kerasdl.data.bundle import TASKS
from kerasdl.data.bundle import DataBundle
from kerasdl.data.bundle import DataError
from kerasdl.data.bundle import check_fraction
from kerasdl.data.bundle import check_label_range
from kerasdl.data.bundle import finish_splits
from kerasdl.data.bundle import make_bundle

logger = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "test", "validation")
SPEC_KEYS = (*SPLIT_NAMES, "encoding")


def load_data(
    spec: str | pathlib.Path | None = None,
    *,
    task: str,
    data_dir: str | None = None,
    validation_split: float = 0.0,
    test_split: float = 0.1,
    seed: int = 0,
    image_size: tuple[int, int] | int | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    encoding: str = "utf-8",
) -> DataBundle:
    """Loads a labelled dataset as a `DataBundle` of unbatched splits.

    Text features are scalar `tf.string` sentences, image features float32
    `(H, W, C)` in [0, 1], labels int64. Splits missing from the source
    are carved with a seeded permutation: `test_split` of the examples
    when there is no test file, then `validation_split` of what remains
    for validation; the same seed gives the same, disjoint splits.

    Args:
        spec: where the data is (see the module docstring); `None` for
            the offline default of `task`.
        task: `"text"` or `"image"`.
        data_dir: the TensorFlow Datasets folder (for `tfds:` specs).
        validation_split: fraction of train held out for validation; 0
            for no validation split (unless a validation file is named).
        test_split: fraction held out as test when there is no test file.
        seed: seed of the splits.
        image_size: `(height, width)` (or one int for squares) to resize
            images to; `None` keeps the source's size.
        text_column: the sentence column of a table (or tfds feature).
        label_column: the label column of a table (or tfds feature).
        encoding: the text encoding of sentence files and tables; an
            `encoding=NAME` part of the spec takes precedence.

    Returns:
        A `DataBundle`.

    Raises:
        DataError: naming the file (and line) of bad data.
        ValueError: if an argument is invalid.

    Example:

    >>> bundle = load_data(task="text")
    >>> bundle.class_names
    ['definition', 'location', 'number', 'person', 'time']
    >>> bundle = load_data("train=a.txt,test=b.txt", task="text")
    """
    if task not in TASKS:
        raise ValueError(
            f"`task` must be one of {TASKS}. Received: task={task!r}"
        )
    check_fraction("validation_split", validation_split)
    check_fraction("test_split", test_split)
    image_size = _image_size(image_size)
    options = dict(
        task=task,
        validation_split=validation_split,
        test_split=test_split,
        seed=seed,
        image_size=image_size,
    )
    if spec is None:
        return _load_default(**options)
    if not isinstance(spec, (str, pathlib.Path)):
        raise TypeError(
            f"`spec` must be a string, a path or None. Received: spec={spec!r}"
        )
    spec = str(spec)
    if spec.startswith("tfds:"):
        # Imported here: importing tensorflow_datasets takes seconds.
        from kerasdl.data.tfds import load_tfds

        return load_tfds(
            spec[len("tfds:") :],
            data_dir=data_dir,
            text_column=text_column,
            label_column=label_column,
            **options,
        )
    paths = _parse_paths(spec)
    encoding = paths.pop("encoding", encoding)
    reader = _Reader(
        task,
        image_size=image_size,
        text_column=text_column,
        label_column=label_column,
        encoding=encoding,
    )
    return reader.load(paths, **options)


def _image_size(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    if (
        not isinstance(image_size, (tuple, list))
        or len(image_size) != 2
        or not all(isinstance(size, int) and size > 0 for size in image_size)
    ):
        raise ValueError(
            "`image_size` must be (height, width) of positive integers. "
            f"Received: image_size={image_size!r}"
        )
    return tuple(image_size)


def _parse_paths(spec):
    """Splits a spec into `{"train": PATH, ...}` (train only for one PATH)."""
    if spec.startswith("idx:"):
        images_path, _, labels_path = spec[len("idx:") :].partition(",")
        if not labels_path:
            raise ValueError(
                "An `idx:` spec names the image and the label file: "
                f"'idx:IMAGES,LABELS'. Received: spec={spec!r}"
            )
        return {"train": ("idx", images_path, labels_path)}
    if "=" not in spec or pathlib.Path(spec).exists():
        return {"train": spec}
    paths = {}
    for part in spec.split(","):
        key, _, path = part.partition("=")
        key = key.strip()
        if key not in SPEC_KEYS or not path or key in paths:
            raise ValueError(
                f"A split spec is 'train=PATH,test=PATH' with optional "
                f"',validation=PATH' and ',encoding=NAME'; each of "
                f"{SPEC_KEYS} at most once. Received: spec={spec!r}"
            )
        paths[key] = path.strip()
    if "train" not in paths:
        raise ValueError(
            f"A split spec needs 'train=PATH'. Received: spec={spec!r}"
        )
    return paths


def _load_default(*, task, validation_split, test_split, seed, image_size):
    if task == "text":
        examples, class_names = offline.demo_text_examples()
        description = (
            f"{offline.DEMO_TEXT_SOURCE} (synthetic demo data, "
            f"{len(examples)} template-generated questions in "
            f"{len(class_names)} classes; not a benchmark)"
        )
        image_shape = None
    else:
        examples, class_names = offline.digits_examples()
        image_shape = (*(image_size or offline.DIGITS_SHAPE[:2]), 1)
        description = (
            f"{offline.DIGITS_SOURCE} ({len(examples)} real 8x8 digit "
            f"images from scikit-learn, upsampled to "
            f"{image_shape[0]}x{image_shape[1]}x1 with bilinear "
            "tf.image.resize)"
        )
    train, test, validation = finish_splits(
        examples,
        None,
        None,
        test_split=test_split,
        validation_split=validation_split,
        seed=seed,
    )
    return make_bundle(
        task,
        train,
        test,
        validation,
        class_names=class_names,
        description=description,
        image_shape=image_shape,
    )


class _Reader:
    """Reads the user's files of one task, train first for the classes."""

    def __init__(
        self, task, *, image_size, text_column, label_column, encoding
    ):
        self.task = task
        self.image_size = image_size
        self.text_column = text_column
        self.label_column = label_column
        self.encoding = encoding

    def load(self, paths, *, task, validation_split, test_split, seed, **_):
        train, class_names = self._read(paths["train"], None)
        splits = {"train": train}
        for name in ("test", "validation"):
            if name in paths:
                splits[name], _ = self._read(paths[name], class_names)
        train, test, validation = finish_splits(
            train,
            splits.get("test"),
            splits.get("validation"),
            test_split=test_split,
            validation_split=validation_split,
            seed=seed,
        )
        image_shape = None
        if task == "image":
            image_shape = (
                *(self.image_size or train.features.shape[1:3]),
                train.features.shape[3],
            )
            self._check_shapes(train, test, validation, image_shape)
        return make_bundle(
            task,
            train,
            test,
            validation,
            class_names=class_names,
            description=self._describe(paths),
            image_shape=image_shape,
        )

    def _read(self, path, class_names):
        """Returns `(Examples, class_names)` for one file or folder."""
        if isinstance(path, tuple):  # ("idx", IMAGES, LABELS)
            self._expect("image", path[1])
            return self._idx(path[1], path[2], class_names)
        location = pathlib.Path(path)
        if location.is_dir():
            self._expect("image", path)
            return images.load_image_folder(
                location, image_size=self.image_size, class_names=class_names
            )
        if images.is_idx_images(location):
            self._expect("image", path)
            return self._idx(location, None, class_names)
        self._expect("text", path)
        if location.suffix.lower() in text.TABLE_SUFFIXES:
            return text.load_table_examples(
                location,
                text_column=self.text_column,
                label_column=self.label_column,
                class_names=class_names,
                encoding=self.encoding,
            )
        num_classes = None if class_names is None else len(class_names)
        examples, num_classes = text.load_sentence_examples(
            location, num_classes=num_classes, encoding=self.encoding
        )
        return examples, [str(label) for label in range(num_classes)]

    def _idx(self, images_path, labels_path, class_names):
        examples = images.load_idx_examples(images_path, labels_path)
        if class_names is None:
            class_names = [
                str(label) for label in range(int(examples.labels.max()) + 1)
            ]
        check_label_range(examples, len(class_names))
        return examples, class_names

    def _expect(self, kind, path):
        if kind != self.task:
            raise ValueError(
                f"{path} holds {kind} data but `task` is {self.task!r}; "
                f"pass task={kind!r}. Received: task={self.task!r}"
            )

    def _check_shapes(self, train, test, validation, image_shape):
        for examples in (test, validation):
            if examples is None:
                continue
            shape = examples.features.shape[1:]
            if self.image_size is None and shape != train.features.shape[1:]:
                raise DataError(
                    examples.source,
                    f"its images have shape {shape} but the training "
                    f"images {train.features.shape[1:]}; pass "
                    "image_size=(height, width)",
                    received=f"image_size={self.image_size}",
                )

    def _describe(self, paths):
        parts = []
        for name, path in paths.items():
            if isinstance(path, tuple):
                path = f"{path[1]} + {path[2]}"
            parts.append(f"{name}={path}")
        return f"{self.task} files: " + ", ".join(parts)
