"""Text files and in-graph text preprocessing.

Two file formats are read:

* sentence files, one example a line: an integer label, one space, then the
  sentence (the format of the Kim (2014) benchmark files in
  `../shared/data/text`);
* TSV/CSV tables with a header row, the sentence and label in named
  columns; labels may be integers `0..K-1` or strings (then the classes are
  the sorted unique strings of the training file).

`make_vectorizer` adapts a `keras.layers.TextVectorization` whose
standardisation (`standardize_text`) runs as TensorFlow string ops inside
the graph, so a model exported with it takes raw sentences.
"""

import csv
import logging
import pathlib

import keras
import numpy as np
import tensorflow as tf

from kerasdl.data.bundle import DataError
from kerasdl.data.bundle import Examples
from kerasdl.data.bundle import where

logger = logging.getLogger(__name__)

TABLE_SUFFIXES = (".tsv", ".csv")
DEFAULT_TEXT_COLUMNS = ("sentence", "text")
DEFAULT_LABEL_COLUMNS = ("label",)
STANDARDIZE_NAME = "kerasdl>standardize_text"


# ---------------------------------------------------------------- reading


def _check_exists(path):
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(
            where(path),
            "no such file",
            received=f"path={str(path)!r}",
        )
    return path


def _decode_line(raw, path, line, encoding):
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as error:
        raise DataError(
            where(path, line),
            f"the bytes are not valid {encoding} (at byte {error.start} of "
            "the line); re-encode the file as UTF-8 or pass the file's "
            "encoding, e.g. encoding='latin-1'",
            received=f"bytes={raw[error.start : error.start + 4]!r}",
        ) from None


def _read_lines(path, encoding):
    """Yields `(line_number, text)` for every non-blank line of `path`.

    Splits the raw bytes on `\\n` only: after a Latin-1 decode, `\\x85`
    would otherwise count as a line break (the MR file holds one).
    """
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        text = _decode_line(raw, path, number, encoding).strip()
        if text:
            yield number, text


def _read_sentence_lines(path, encoding):
    sentences, labels, line_numbers = [], [], []
    for number, text in _read_lines(path, encoding):
        label, _, sentence = text.partition(" ")
        try:
            label = int(label)
        except ValueError:
            raise DataError(
                where(path, number),
                "a line must start with an integer label, a space, then "
                "the sentence",
                received=f"label={label!r}",
            ) from None
        if label < 0:
            raise DataError(
                where(path, number),
                "labels must be integers >= 0",
                received=f"label={label}",
            )
        sentence = sentence.strip()
        if not sentence:
            raise DataError(
                where(path, number),
                "the sentence after the label is empty",
                received=f"line={text!r}",
            )
        sentences.append(sentence)
        labels.append(label)
        line_numbers.append(number)
    return sentences, labels, line_numbers


def read_sentence_file(
    path, *, encoding: str = "utf-8"
) -> tuple[list[str], list[int]]:
    """Reads a sentence file: `LABEL SENTENCE` on every line.

    Blank lines are skipped; every other line must hold an integer label
    >= 0, one space and a non-empty sentence.

    Args:
        path: the file.
        encoding: its text encoding; UTF-8 unless told otherwise.

    Returns:
        `(sentences, labels)`: two lists of the same length.

    Raises:
        DataError: naming the file and line of a missing file, a
            non-integer or negative label, an empty sentence or bytes that
            are not valid in `encoding`.

    Example:

    >>> sentences, labels = read_sentence_file("TREC.test.all")
    >>> sentences[0], labels[0]
    ('How far is it from Denver to Aspen ?', 5)
    """
    sentences, labels, _ = _read_sentence_lines(_check_exists(path), encoding)
    return sentences, labels


def load_sentence_examples(path, *, num_classes=None, encoding="utf-8"):
    """Reads a sentence file into `Examples`, checking the label range.

    Args:
        path: the file.
        num_classes: the classes of the training split, or `None` when this
            is the training split (then `max(label) + 1`).
        encoding: the file's text encoding.

    Returns:
        `(examples, num_classes)`.
    """
    path = _check_exists(path)
    sentences, labels, line_numbers = _read_sentence_lines(path, encoding)
    examples = Examples(
        np.array(sentences, dtype=object),
        np.array(labels, dtype=np.int64),
        str(path),
    )
    if num_classes is None:
        num_classes = int(examples.labels.max()) + 1 if labels else 0
    _check_labels(examples, num_classes, line_numbers)
    return examples, num_classes


def _check_labels(examples, num_classes, line_numbers):
    bad = np.flatnonzero(examples.labels >= num_classes)
    if bad.size:
        index = int(bad[0])
        raise DataError(
            where(examples.source, line_numbers[index]),
            f"labels must be integers from 0 to {num_classes - 1} (the "
            "classes of the training file)",
            received=f"label={int(examples.labels[index])}",
        )


def _pick_column(header, requested, defaults, path, argument):
    if requested is not None:
        if requested not in header:
            raise DataError(
                where(path, 1),
                f"the header has no column {requested!r}; it has {header}",
                received=f"{argument}={requested!r}",
            )
        return requested
    for name in defaults:
        if name in header:
            return name
    raise DataError(
        where(path, 1),
        f"found none of the columns {list(defaults)} in the header "
        f"{header}; name the column with `{argument}`",
        received=f"{argument}=None",
    )


def _read_table_rows(path, text_column, label_column, encoding):
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        content = path.read_bytes().decode(encoding)
    except UnicodeDecodeError as error:
        # Count the lines before the bad byte to name the line.
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raw = error.object[error.start : error.start + 4]
        raise DataError(
            where(path, line),
            f"the bytes are not valid {encoding}; re-encode the file as "
            "UTF-8 or pass its encoding, e.g. encoding='latin-1'",
            received=f"bytes={raw!r}",
        ) from None
    reader = csv.reader(content.splitlines(), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        raise DataError(where(path, 1), "the file is empty", received="''")
    header = [name.strip() for name in header]
    text_column = _pick_column(
        header, text_column, DEFAULT_TEXT_COLUMNS, path, "text_column"
    )
    label_column = _pick_column(
        header, label_column, DEFAULT_LABEL_COLUMNS, path, "label_column"
    )
    text_index = header.index(text_column)
    label_index = header.index(label_column)
    sentences, labels, line_numbers = [], [], []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(
                where(path, reader.line_num),
                f"the row has {len(row)} fields but the header has "
                f"{len(header)}",
                received=f"row={row!r}",
            )
        sentence = row[text_index].strip()
        if not sentence:
            raise DataError(
                where(path, reader.line_num),
                f"the {text_column!r} column is empty",
                received=f"row={row!r}",
            )
        sentences.append(sentence)
        labels.append(row[label_index].strip())
        line_numbers.append(reader.line_num)
    return sentences, labels, line_numbers


def _all_integers(values):
    return all(value.lstrip("-").isdigit() for value in values)


def load_table_examples(
    path,
    *,
    text_column=None,
    label_column=None,
    class_names=None,
    encoding="utf-8",
):
    """Reads a TSV/CSV file with a header into `Examples`.

    Args:
        path: a `.tsv` (tab-separated) or `.csv` file.
        text_column: the sentence column; default `"sentence"` or `"text"`.
        label_column: the label column; default `"label"`.
        class_names: the classes of the training file, or `None` when this
            is the training file.
        encoding: the file's text encoding.

    Returns:
        `(examples, class_names)`.

    Raises:
        DataError: naming the file and line of a missing column, an empty
            sentence, a ragged row, an unknown or out-of-range label.
    """
    path = _check_exists(path)
    sentences, labels, line_numbers = _read_table_rows(
        path, text_column, label_column, encoding
    )
    if class_names is None:
        if _all_integers(labels):
            num_classes = max(int(label) for label in labels) + 1
            class_names = [str(index) for index in range(num_classes)]
        else:
            class_names = sorted(set(labels))
    ids = _label_ids(labels, class_names, line_numbers, path)
    examples = Examples(np.array(sentences, dtype=object), ids, str(path))
    return examples, class_names


def _label_ids(labels, class_names, line_numbers, path):
    """Maps label strings to ids: integers as given, names by position."""
    index = {name: position for position, name in enumerate(class_names)}
    ids = np.empty(len(labels), dtype=np.int64)
    for position, label in enumerate(labels):
        if label not in index:
            raise DataError(
                where(path, line_numbers[position]),
                "the label is not one of the classes of the training file "
                f"{class_names[:10]}",
                received=f"label={label!r}",
            )
        ids[position] = index[label]
    return ids


# ---------------------------------------------------------- vectorizing


@keras.saving.register_keras_serializable(package="kerasdl")
def standardize_text(inputs):
    """Lower-cases sentences and splits off punctuation and clitics.

    Runs as TensorFlow string ops, so it works inside an exported graph.
    The tokenisation follows the spirit of Kim's (2014) `clean_str`: words
    are lower-cased, the English clitics `'s 've n't 're 'd 'll 'm` become
    tokens of their own, punctuation `, . ! ? ; : ( ) "` is surrounded by
    spaces, and any other symbol becomes a space. Letters of any script
    are kept.

    Args:
        inputs: a `tf.string` tensor of sentences.

    Returns:
        A `tf.string` tensor of the same shape, tokens separated by single
        spaces.

    Example:

    >>> standardize_text(tf.constant(["What's this?"])).numpy()
    array([b"what 's this ?"], dtype=object)
    """
    text = tf.strings.lower(inputs, encoding="utf-8")
    # Anything but letters, digits, apostrophes and kept punctuation goes.
    text = tf.strings.regex_replace(text, r"[^\pL\pN'.,!?;:()\"]", " ")
    text = tf.strings.regex_replace(text, r"([.,!?;:()\"])", " \\1 ")
    # "don't" -> "do n't", "it's" -> "it 's" (Penn Treebank clitics).
    text = tf.strings.regex_replace(text, r"(\pL)(n't)\b", "\\1 \\2")
    text = tf.strings.regex_replace(
        text, r"(\pL)('s|'ve|'re|'d|'ll|'m)\b", "\\1 \\2"
    )
    text = tf.strings.regex_replace(text, r"\s+", " ")
    return tf.strings.strip(text)


def make_vectorizer(
    texts: tf.data.Dataset,
    *,
    vocabulary_size: int,
    sequence_length: int,
) -> keras.layers.TextVectorization:
    """Adapts a `TextVectorization` layer on the training sentences.

    The layer standardises with `standardize_text`, splits on whitespace
    and maps each token to an id: 0 is padding, 1 the out-of-vocabulary
    token, then the most frequent words. Sequences are padded or cut to
    `sequence_length`.

    Args:
        texts: a dataset of scalar `tf.string` sentences (batched or not).
        vocabulary_size: the most ids, counting padding and OOV.
        sequence_length: the length of every output sequence.

    Returns:
        An adapted `keras.layers.TextVectorization`; it maps a `(batch,)`
        string tensor to int64 `(batch, sequence_length)` ids.

    Raises:
        ValueError: if a size is not a positive integer or the
            vocabulary has room for no word.

    Example:

    >>> texts = tf.data.Dataset.from_tensor_slices(["a cat", "a dog"])
    >>> vectorizer = make_vectorizer(
    ...     texts, vocabulary_size=10, sequence_length=4)
    >>> vectorizer(["a dog ate"]).numpy()
    array([[2, 3, 1, 0]])
    """
    _check_size("vocabulary_size", vocabulary_size, minimum=3)
    _check_size("sequence_length", sequence_length, minimum=1)
    if not isinstance(texts, tf.data.Dataset):
        raise TypeError(
            "`texts` must be a tf.data.Dataset of strings. Received: "
            f"texts={type(texts).__name__}"
        )
    vectorizer = keras.layers.TextVectorization(
        max_tokens=vocabulary_size,
        standardize=standardize_text,
        split="whitespace",
        output_mode="int",
        output_sequence_length=sequence_length,
    )
    if texts.element_spec.shape.rank == 0:
        texts = texts.batch(1024)
    vectorizer.adapt(texts)
    logger.info(
        "Adapted a vocabulary of %d ids (at most %d), sequence_length=%d",
        vectorizer.vocabulary_size(),
        vocabulary_size,
        sequence_length,
    )
    return vectorizer


def vectorizer_from_vocabulary(
    vocabulary: list[str], *, sequence_length: int
) -> keras.layers.TextVectorization:
    """Rebuilds a vectorizer from `get_vocabulary()` of an adapted one.

    Used to restore the vectorizer of a training run from its
    `vocabulary.txt` (one token a line, index = id, the first two lines
    being padding `""` and OOV `"[UNK]"`).

    Args:
        vocabulary: the tokens, index = id, padding and OOV first.
        sequence_length: the length of every output sequence.

    Returns:
        A `keras.layers.TextVectorization` giving the same ids.

    Example:

    >>> vectorizer = vectorizer_from_vocabulary(
    ...     ["", "[UNK]", "a", "dog"], sequence_length=4)
    >>> vectorizer(["a dog ate"]).numpy()
    array([[2, 3, 1, 0]])
    """
    _check_size("sequence_length", sequence_length, minimum=1)
    vocabulary = list(vocabulary)
    if vocabulary[:2] != ["", "[UNK]"]:
        raise ValueError(
            "`vocabulary` must start with the padding token '' and the OOV "
            f"token '[UNK]'. Received: vocabulary[:2]={vocabulary[:2]!r}"
        )
    return keras.layers.TextVectorization(
        standardize=standardize_text,
        split="whitespace",
        output_mode="int",
        output_sequence_length=sequence_length,
        vocabulary=vocabulary[2:],
    )


def _check_size(name, value, *, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"`{name}` must be an integer >= {minimum}. Received: "
            f"{name}={value!r}"
        )
