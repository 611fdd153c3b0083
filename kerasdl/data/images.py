"""Image files: MNIST-style IDX files and folders of images.

IDX files (gzip-compressed or not) hold a magic number giving the element
type and the number of dimensions, the dimensions as big-endian int32,
then the data. A `...-images-idx3-ubyte[.gz]` file finds its labels beside
it under the standard name (`images-idx3` -> `labels-idx1`), or both are
named in a spec `idx:IMAGES,LABELS`.

An image folder holds one sub-folder per class (the convention of
`keras.utils.image_dataset_from_directory`); class names are the sorted
sub-folder names. Images are decoded once at load time with
`tf.io.decode_image` and kept in memory as uint8.
"""

import gzip
import logging
import pathlib

import numpy as np
import tensorflow as tf

from kerasdl.data.bundle import DataError
from kerasdl.data.bundle import Examples
from kerasdl.data.bundle import where

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")

# IDX type codes (third byte of the magic number) -> big-endian dtypes.
_IDX_DTYPES = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def is_idx_images(path):
    """Whether `path` is named like an IDX image file."""
    return "-images-idx" in pathlib.Path(path).name


def read_idx(path) -> np.ndarray:
    """Reads an IDX file (gzip-compressed or not) into a NumPy array.

    Args:
        path: the file, e.g. `t10k-images-idx3-ubyte.gz`.

    Returns:
        The array, shaped by the dimensions in the file's header, e.g.
        `(10000, 28, 28)` uint8 images or `(10000,)` uint8 labels.

    Raises:
        DataError: if the file is missing, its magic number is not IDX or
            its size disagrees with its header.

    Example:

    >>> read_idx("t10k-labels-idx1-ubyte.gz")[:3]
    array([7, 2, 1], dtype=uint8)
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(where(path), "no such file", received=f"path={path}")
    content = path.read_bytes()
    if content[:2] == b"\x1f\x8b":  # the gzip magic number
        content = gzip.decompress(content)
    if (
        len(content) < 4
        or content[:2] != b"\0\0"
        or (content[2] not in _IDX_DTYPES)
    ):
        raise DataError(
            where(path),
            "not an IDX file: the magic number must be 0x00 0x00, a type "
            "code, then the number of dimensions",
            received=f"magic={content[:4]!r}",
        )
    dtype = np.dtype(_IDX_DTYPES[content[2]])
    num_dimensions = content[3]
    header_size = 4 + 4 * num_dimensions
    shape = tuple(
        int(size) for size in np.frombuffer(content[4:header_size], dtype=">i4")
    )
    expected = header_size + int(np.prod(shape)) * dtype.itemsize
    if len(content) != expected:
        raise DataError(
            where(path),
            f"the header announces shape {shape}, i.e. {expected} bytes, "
            "but the file holds a different number",
            received=f"bytes={len(content)}",
        )
    data = np.frombuffer(content, dtype=dtype, offset=header_size)
    return data.reshape(shape).astype(dtype.newbyteorder("="))


def labels_path_for(images_path):
    """The standard labels file beside an IDX image file."""
    images_path = pathlib.Path(images_path)
    name = images_path.name.replace("-images-idx3", "-labels-idx1")
    return images_path.with_name(name)


def load_idx_examples(images_path, labels_path=None):
    """Reads IDX images and labels into `Examples` of `(n, H, W, C)` uint8.

    Args:
        images_path: the image file, `(n, H, W)` or `(n, H, W, C)`.
        labels_path: the label file; default the standard name beside the
            images.

    Returns:
        `Examples` whose features are uint8 `(n, H, W, C)`.

    Raises:
        DataError: if a file is bad or the counts disagree.
    """
    labels_path = labels_path or labels_path_for(images_path)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim == 3:
        images = images[..., np.newaxis]  # (n, H, W) -> (n, H, W, 1)
    if images.ndim != 4 or labels.ndim != 1:
        raise DataError(
            where(images_path),
            "expected images of rank 3 or 4 and labels of rank 1",
            received=f"images.shape={images.shape}, labels.shape="
            f"{labels.shape}",
        )
    if len(images) != len(labels):
        raise DataError(
            where(labels_path),
            f"the labels file holds {len(labels)} labels for "
            f"{len(images)} images in {images_path}",
            received=f"labels={len(labels)}",
        )
    return Examples(images, labels.astype(np.int64), str(images_path))


def _decode(path, image_size):
    try:
        image = tf.io.decode_image(path.read_bytes(), expand_animations=False)
    except tf.errors.InvalidArgumentError as error:
        raise DataError(
            where(path),
            "cannot decode the image",
            received=f"error={error.message!r}",
        ) from None
    if image_size is not None:
        image = tf.image.resize(image, image_size)
        image = tf.cast(tf.round(tf.clip_by_value(image, 0, 255)), tf.uint8)
    return image.numpy()


def list_image_folder(folder):
    """Returns `(class_names, [(path, label), ...])` for an image folder."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise DataError(
            where(folder), "no such folder", received=f"path={folder}"
        )
    class_names = sorted(
        child.name for child in folder.iterdir() if child.is_dir()
    )
    files = [
        (path, label)
        for label, name in enumerate(class_names)
        for path in sorted((folder / name).iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise DataError(
            where(folder),
            "found no images: expected one sub-folder per class holding "
            f"{', '.join(IMAGE_SUFFIXES)} files",
            received=f"sub-folders={class_names}",
        )
    return class_names, files


def load_image_folder(folder, *, image_size=None, class_names=None):
    """Decodes an image folder into `Examples` of `(n, H, W, C)` uint8.

    Args:
        folder: one sub-folder per class.
        image_size: `(height, width)` to resize every image to, or `None`
            to require that all images share one shape.
        class_names: the classes of the training folder, or `None` when
            this is the training folder.

    Returns:
        `(examples, class_names)`.

    Raises:
        DataError: naming the file whose shape differs from the first
            image's when `image_size` is `None`, or that cannot be decoded.
    """
    found_names, files = list_image_folder(folder)
    if class_names is not None and found_names != list(class_names):
        raise DataError(
            where(folder),
            f"the sub-folders must be the training classes {class_names}",
            received=f"sub-folders={found_names}",
        )
    images = []
    for path, _ in files:
        image = _decode(path, image_size)
        if images and image.shape != images[0].shape:
            # Resizing fixes height and width, not the channels.
            fix = (
                "pass image_size=(height, width) to resize them all"
                if image_size is None
                else "convert the images to one number of channels"
            )
            raise DataError(
                where(path),
                f"the image has shape {image.shape} but {files[0][0].name} "
                f"has {images[0].shape}; {fix}",
                received=f"image_size={image_size}",
            )
        images.append(image)
    labels = np.array([label for _, label in files], dtype=np.int64)
    return Examples(np.stack(images), labels, str(folder)), found_names
