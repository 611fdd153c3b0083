"""Pretrained word vectors (GloVe, word2vec and fastText text files).

Both formats hold one word a line followed by its vector's values,
separated by spaces; word2vec and fastText files start with a header line
`COUNT DIM`. Only the words of the vocabulary are parsed, so reading a
400,000-word file costs little more than reading its bytes.
"""

import logging
import pathlib

import numpy as np

from kerasdl.data.bundle import DataError
from kerasdl.data.bundle import where

logger = logging.getLogger(__name__)

PADDING_TOKEN = ""
OOV_TOKEN = "[UNK]"
# Range of the random rows when no word is found; otherwise the range is
# matched to the found vectors' spread, as in Kim (2014), section 3.1.
DEFAULT_UNIFORM_RANGE = 0.25


def _parse_header(fields):
    """`(count, dim)` if a first line is a word2vec header, else `None`."""
    if len(fields) == 2 and all(field.isdigit() for field in fields):
        return int(fields[0]), int(fields[1])
    return None


def _decode(raw, path, line):
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as error:
        raise DataError(
            where(path, line),
            "the bytes are not valid UTF-8",
            received=f"bytes={raw[error.start : error.start + 4]!r}",
        ) from None


def _vector(fields, dim, path, line):
    """Parses the last `dim` fields; the rest is the word (may hold spaces)."""
    if len(fields) < dim + 1:
        raise DataError(
            where(path, line),
            f"expected a word and {dim} values (the dimension of the "
            f"first vector or the header) but found {len(fields) - 1} "
            "values",
            received=f"line={' '.join(fields)[:60]!r}",
        )
    try:
        values = np.array(fields[-dim:], dtype=np.float32)
    except ValueError:
        raise DataError(
            where(path, line),
            "the values after the word must be numbers",
            received=f"line={' '.join(fields)[:60]!r}",
        ) from None
    return " ".join(fields[:-dim]), values


def _read_vectors(path, index, embedding_dim):
    """Yields `(row, values, exact)` for vocabulary words found in `path`."""
    # The file's own dimension: from the header, else the first vector
    # (a larger embedding_dim must not turn values into part of a word).
    dim = None
    with open(path, "rb") as file:
        for number, raw in enumerate(file, start=1):
            fields = _decode(raw, path, number).split(" ")
            fields = [field for field in fields if field]
            if not fields:
                continue
            header = _parse_header(fields) if number == 1 else None
            if header is not None:
                dim = _check_dim(header[1], embedding_dim, path, number)
                continue
            if dim is None:
                dim = _check_dim(len(fields) - 1, embedding_dim, path, number)
            word = fields[0] if len(fields) == dim + 1 else None
            # Parse only the words we need; a word with spaces (GloVe 840B)
            # has more fields and is parsed to find where it ends.
            if (
                word is not None
                and word not in index
                and (word.lower() not in index)
            ):
                continue
            word, values = _vector(fields, dim, path, number)
            if word in index:
                yield index[word], values, True
            elif word.lower() in index:
                yield index[word.lower()], values, False


def _check_dim(dim, embedding_dim, path, line):
    if embedding_dim is not None and dim != embedding_dim:
        raise DataError(
            where(path, line),
            f"the vectors have {dim} values but embedding_dim is "
            f"{embedding_dim}",
            received=f"embedding_dim={embedding_dim}",
        )
    return dim


def load_word_vectors(
    path,
    vocabulary: list[str],
    *,
    embedding_dim: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, float]:
    """Builds an embedding matrix for `vocabulary` from a vectors file.

    Row `i` holds the vector of `vocabulary[i]`: the exact word if the file
    has it, else its lower-cased form. The padding row (token `""`) is
    zero; the OOV row (`"[UNK]"`) and words missing from the file get
    seeded uniform random values whose spread matches the found vectors
    (Kim, 2014), so the model can still learn them.

    Args:
        path: a GloVe (`word v1 ... vd`) or word2vec/fastText text file
            (first line `count dim`), UTF-8.
        vocabulary: the tokens, index = id, e.g. the vectorizer's
            `get_vocabulary()`.
        embedding_dim: the expected dimension; `None` takes the file's.
        seed: seed of the random rows.

    Returns:
        `(matrix, found_fraction)`: float32 `(len(vocabulary), dim)` and
        the fraction of real words (not padding or OOV) found in the file.

    Raises:
        DataError: naming the file and line of a missing file, a vector of
            the wrong dimension, a non-numeric value or bad UTF-8.

    Example:

    >>> matrix, found = load_word_vectors(
    ...     "glove.6B.50d.txt", ["", "[UNK]", "the", "zyzzyva"])
    >>> matrix.shape, found
    ((4, 50), 0.5)
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(where(path), "no such file", received=f"path={path}")
    vocabulary = [str(token) for token in vocabulary]
    index = {word: row for row, word in enumerate(vocabulary)}
    found, exact = {}, set()
    for row, values, is_exact in _read_vectors(path, index, embedding_dim):
        # An exact match wins over a lower-cased one, whatever the order.
        if row not in exact:
            found[row] = values
        if is_exact:
            exact.add(row)
    if not found and embedding_dim is None:
        raise DataError(
            where(path),
            "no word of the vocabulary is in the file, so its dimension is "
            "unknown; pass embedding_dim",
            received=f"embedding_dim={embedding_dim}",
        )
    matrix = _fill_matrix(vocabulary, found, embedding_dim, seed)
    words = [
        row
        for row, word in enumerate(vocabulary)
        if word not in (PADDING_TOKEN, OOV_TOKEN)
    ]
    found_fraction = (
        sum(row in found for row in words) / len(words) if words else 0.0
    )
    logger.info(
        "Found %d of %d words (%.1f%%) in %s",
        sum(row in found for row in words),
        len(words),
        100 * found_fraction,
        path,
    )
    return matrix, found_fraction


def _fill_matrix(vocabulary, found, embedding_dim, seed):
    dim = len(next(iter(found.values()))) if found else embedding_dim
    if found:
        # U(-a, a) has variance a^2 / 3: match the found vectors' variance.
        spread = float(np.sqrt(3.0) * np.std(np.stack(list(found.values()))))
    else:
        spread = DEFAULT_UNIFORM_RANGE
    rng = np.random.default_rng(seed)
    matrix = rng.uniform(-spread, spread, size=(len(vocabulary), dim))
    matrix = matrix.astype(np.float32)
    for row, values in found.items():
        matrix[row] = values
    for row, word in enumerate(vocabulary):
        if word == PADDING_TOKEN:
            matrix[row] = 0.0
    return matrix
