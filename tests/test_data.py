"""Tests for kerasdl.data: loaders, splits, vectorizer, word vectors."""

import gzip
import struct

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdl import data
from kerasdl.data import offline

# ------------------------------------------------------------ helpers


def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def _sentences(dataset):
    return [text.decode() for text, _ in dataset.as_numpy_iterator()]


def _labels(dataset):
    return np.array([label for _, label in dataset.as_numpy_iterator()])


def _write_idx(path, array, *, compress):
    """Writes `array` (uint8) in the IDX format, gzip-compressed or not."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}i", *array.shape)
    content = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(content) if compress else content)
    return path


def _write_png(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(image).numpy())


SENTENCES = "\n".join(
    f"{index % 3} sentence number {index} of class {index % 3}"
    for index in range(30)
)


# ------------------------------------------------------ offline defaults


def test_offline_text_default():
    bundle = data.load_data(task="text", validation_split=0.1)

    assert bundle.task == "text"
    assert bundle.class_names == list(offline.DEMO_CLASS_NAMES)
    assert bundle.num_classes == 5
    assert bundle.num_examples == {
        "train": 2430,
        "test": 300,
        "validation": 270,
    }
    assert "demo" in bundle.description
    assert bundle.image_shape is None
    text, label = next(iter(bundle.train))
    assert text.dtype == tf.string and text.shape == ()
    assert label.dtype == tf.int64 and label.shape == ()
    counts = np.bincount(_labels(bundle.test), minlength=5)
    assert counts.min() > 30  # every class in the test split


def test_demo_corpus_needs_more_than_one_keyword():
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    examples, _ = offline.demo_text_examples()
    tokens = [set(sentence.split()) for sentence in examples.features]

    # The best rule "word w present -> one class, absent -> another".
    best = 0.0
    for word in set().union(*tokens):
        has = np.array([word in sentence for sentence in tokens])
        correct = sum(
            np.bincount(examples.labels[mask]).max()
            for mask in (has, ~has)
            if mask.any()
        )
        best = max(best, correct / len(examples))
    assert best < 0.5

    # ...but words together give the class.
    order = np.random.default_rng(0).permutation(len(examples))
    train, test = order[300:], order[:300]
    counts = CountVectorizer(token_pattern=r"\S+").fit_transform(
        examples.features
    )
    model = LogisticRegression(max_iter=1000)
    model.fit(counts[train], examples.labels[train])
    assert model.score(counts[test], examples.labels[test]) > 0.95


def test_demo_corpus_is_fixed_and_unique():
    first, _ = offline.demo_text_examples()
    second, _ = offline.demo_text_examples()

    np.testing.assert_array_equal(first.features, second.features)
    assert len(set(first.features)) == len(first.features) == 3000


def test_offline_image_default():
    bundle = data.load_data(task="image")

    assert bundle.image_shape == (28, 28, 1)
    assert bundle.num_examples == {"train": 1617, "test": 180}
    assert bundle.class_names == [str(digit) for digit in range(10)]
    assert "upsampled to 28x28x1" in bundle.description
    images = np.stack([image for image, _ in bundle.test.as_numpy_iterator()])
    assert images.shape == (180, 28, 28, 1) and images.dtype == np.float32
    assert images.min() == 0.0 and 0.9 < images.max() <= 1.0


def test_image_size_resizes_default():
    bundle = data.load_data(task="image", image_size=16)

    image, _ = next(iter(bundle.train))
    assert bundle.image_shape == (16, 16, 1)
    assert image.shape == (16, 16, 1)


# ------------------------------------------------------------- splits


def test_seeded_splits_are_deterministic_and_disjoint():
    options = dict(task="text", validation_split=0.2, test_split=0.1)
    first = data.load_data(seed=3, **options)
    again = data.load_data(seed=3, **options)
    other = data.load_data(seed=4, **options)

    parts = {
        name: _sentences(getattr(first, name))
        for name in ("train", "test", "validation")
    }
    assert parts["test"] == _sentences(again.test)
    assert parts["validation"] == _sentences(again.validation)
    assert parts["test"] != _sentences(other.test)
    sets = {name: set(part) for name, part in parts.items()}
    assert not sets["train"] & sets["test"]
    assert not sets["train"] & sets["validation"]
    assert not sets["test"] & sets["validation"]
    assert sum(len(part) for part in sets.values()) == 3000


def test_split_that_ends_up_empty(tmp_path):
    path = _write(tmp_path / "tiny.txt", "0 one\n1 two\n")

    with pytest.raises(data.DataError, match=r"tiny\.txt.*test_split=0\.1"):
        data.load_data(str(path), task="text", test_split=0.1)


def test_empty_test_file(tmp_path):
    train = _write(tmp_path / "train.txt", SENTENCES)
    test = _write(tmp_path / "test.txt", "\n\n")

    with pytest.raises(data.DataError, match=r"test\.txt.*no examples"):
        data.load_data(f"train={train},test={test}", task="text")


# ------------------------------------------------------ sentence files


def test_read_sentence_file(tmp_path):
    path = _write(tmp_path / "a.txt", "2 What's this ?\n\n0 l'été est là\n")

    sentences, labels = data.read_sentence_file(path)

    assert sentences == ["What's this ?", "l'été est là"]
    assert labels == [2, 0]


def test_sentence_files_with_explicit_splits(tmp_path):
    train = _write(tmp_path / "train.txt", SENTENCES)
    test = _write(tmp_path / "test.txt", "1 a test sentence\n0 another\n")
    validation = _write(tmp_path / "dev.txt", "2 a validation sentence\n")

    bundle = data.load_data(
        f"train={train},test={test},validation={validation}", task="text"
    )

    assert bundle.num_examples == {"train": 30, "test": 2, "validation": 1}
    assert bundle.class_names == ["0", "1", "2"]
    assert _sentences(bundle.test) == ["a test sentence", "another"]
    assert list(_labels(bundle.validation)) == [2]
    assert str(train) in bundle.description


def test_one_sentence_file_is_split(tmp_path):
    path = _write(tmp_path / "all.txt", SENTENCES)

    bundle = data.load_data(str(path), task="text", test_split=0.2)

    assert bundle.num_examples == {"train": 24, "test": 6}
    assert bundle.validation is None


def test_latin1_file_with_encoding(tmp_path):
    path = _write(tmp_path / "old.txt", SENTENCES + "\n1 cliché\n", "latin-1")

    bundle = data.load_data(str(path), task="text", encoding="latin-1")

    everything = _sentences(bundle.train) + _sentences(bundle.test)
    assert "cliché" in everything


# ------------------------------------------------------------- tables


def test_tsv_with_integer_labels(tmp_path):
    rows = ["label\tsentence"] + [
        f"{index % 2}\trow {index}" for index in range(20)
    ]
    path = _write(tmp_path / "data.tsv", "\n".join(rows))

    bundle = data.load_data(str(path), task="text", test_split=0.25)

    assert bundle.class_names == ["0", "1"]
    assert bundle.num_examples == {"train": 15, "test": 5}


def test_csv_with_string_labels_and_named_columns(tmp_path):
    train = _write(
        tmp_path / "train.csv",
        'id,review,mood\n1,"good, really",positive\n2,bad,negative\n'
        "3,fine,neutral\n",
    )
    test = _write(tmp_path / "test.csv", "id,review,mood\n4,great,positive\n")

    bundle = data.load_data(
        f"train={train},test={test}",
        task="text",
        text_column="review",
        label_column="mood",
    )

    assert bundle.class_names == ["negative", "neutral", "positive"]
    assert list(_labels(bundle.train)) == [2, 0, 1]
    assert _sentences(bundle.train)[0] == "good, really"
    assert list(_labels(bundle.test)) == [2]


# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("compress", [True, False])
def test_idx_files_found_by_standard_name(tmp_path, rng, compress):
    suffix = ".gz" if compress else ""
    images = rng.integers(0, 256, size=(20, 6, 5), dtype=np.uint8)
    labels = np.arange(20, dtype=np.uint8) % 4
    images_path = _write_idx(
        tmp_path / f"x-images-idx3-ubyte{suffix}", images, compress=compress
    )
    _write_idx(
        tmp_path / f"x-labels-idx1-ubyte{suffix}", labels, compress=compress
    )

    bundle = data.load_data(str(images_path), task="image", test_split=0.25)

    assert bundle.image_shape == (6, 5, 1)
    assert bundle.class_names == ["0", "1", "2", "3"]
    assert bundle.num_examples == {"train": 15, "test": 5}
    pairs = list(bundle.train.as_numpy_iterator()) + list(
        bundle.test.as_numpy_iterator()
    )
    restored = {int(round(image[0, 0, 0] * 255)) for image, _ in pairs}
    assert restored == set(images[:, 0, 0].tolist())


def test_idx_spec_names_both_files(tmp_path, rng):
    images = rng.integers(0, 256, size=(10, 4, 4), dtype=np.uint8)
    images_path = _write_idx(tmp_path / "pictures", images, compress=False)
    labels_path = _write_idx(
        tmp_path / "answers", np.arange(10) % 2, compress=True
    )

    bundle = data.load_data(
        f"idx:{images_path},{labels_path}",
        task="image",
        test_split=0.2,
        image_size=(8, 8),
    )

    image, _ = next(iter(bundle.train))
    assert image.shape == (8, 8, 1)
    assert bundle.image_shape == (8, 8, 1)


def test_idx_counts_must_agree(tmp_path, rng):
    images = rng.integers(0, 256, size=(10, 4, 4), dtype=np.uint8)
    images_path = _write_idx(
        tmp_path / "a-images-idx3-ubyte", images, compress=False
    )
    _write_idx(tmp_path / "a-labels-idx1-ubyte", np.zeros(9), compress=False)

    with pytest.raises(data.DataError, match="a-labels-idx1-ubyte.*9 labels"):
        data.load_data(str(images_path), task="image")


# -------------------------------------------------------- image folders


def test_image_folder(tmp_path, rng):
    for name, count in (("cat", 4), ("dog", 6)):
        for index in range(count):
            image = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
            _write_png(tmp_path / "pets" / name / f"{index}.png", image)

    bundle = data.load_data(
        str(tmp_path / "pets"), task="image", test_split=0.2
    )

    assert bundle.class_names == ["cat", "dog"]
    assert bundle.image_shape == (5, 7, 3)
    assert bundle.num_examples == {"train": 8, "test": 2}
    image, _ = next(iter(bundle.train))
    assert image.dtype == tf.float32
    assert (
        0.0 <= float(tf.reduce_min(image)) <= float(tf.reduce_max(image)) <= 1
    )


def test_image_folder_mixed_shapes(tmp_path, rng):
    _write_png(tmp_path / "a" / "x" / "1.png", np.zeros((5, 5, 1), np.uint8))
    _write_png(tmp_path / "a" / "y" / "2.png", np.zeros((6, 5, 1), np.uint8))

    with pytest.raises(data.DataError, match=r"2\.png.*image_size"):
        data.load_data(str(tmp_path / "a"), task="image")

    bundle = data.load_data(
        str(tmp_path / "a"), task="image", image_size=(4, 4), test_split=0.5
    )
    assert bundle.image_shape == (4, 4, 1)


# ------------------------------------------------------------ bad data


@pytest.mark.parametrize(
    "content, line, message",
    [
        ("0 fine\nx not a label\n", 2, "integer label"),
        ("0 fine\n1 fine\n\n-1 negative\n", 4, "label=-1"),
        ("0 fine\n1\n", 2, "sentence after the label is empty"),
        ("0 fine\n0 ok\n1 caf\xe9\n", 3, "not valid utf-8"),
    ],
)
def test_bad_sentence_file(tmp_path, content, line, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content.encode("latin-1"))

    with pytest.raises(data.DataError) as info:
        data.load_data(str(path), task="text")

    assert f"bad.txt, line {line}" in str(info.value)
    assert message in str(info.value)
    assert "Received: " in str(info.value)


def test_test_label_out_of_range(tmp_path):
    train = _write(tmp_path / "train.txt", SENTENCES)
    test = _write(tmp_path / "test.txt", "0 fine\n3 out of range\n")

    with pytest.raises(data.DataError, match=r"test\.txt, line 2.*label=3"):
        data.load_data(f"train={train},test={test}", task="text")


def test_missing_file(tmp_path):
    with pytest.raises(data.DataError, match=r"nothing\.txt: no such file"):
        data.load_data(str(tmp_path / "nothing.txt"), task="text")


def test_missing_column(tmp_path):
    path = _write(tmp_path / "table.csv", "words,label\nhello,0\n")

    with pytest.raises(data.DataError, match=r"table\.csv, line 1.*text_col"):
        data.load_data(str(path), task="text")
    with pytest.raises(data.DataError, match=r"label_column='mood'"):
        data.load_data(
            str(path), task="text", text_column="words", label_column="mood"
        )


def test_table_problems_name_the_line(tmp_path):
    empty = _write(tmp_path / "e.tsv", "text\tlabel\nfine\t0\n\t1\n")
    train = _write(tmp_path / "t.csv", "text,label\na,yes\nb,no\nc,yes\n")
    test = _write(tmp_path / "u.csv", "text,label\nok,no\nhm,maybe\n")

    with pytest.raises(data.DataError, match=r"e\.tsv, line 3.*empty"):
        data.load_data(str(empty), task="text")
    with pytest.raises(data.DataError, match=r"u\.csv, line 3.*'maybe'"):
        data.load_data(f"train={train},test={test}", task="text")


def test_argument_errors(tmp_path):
    path = _write(tmp_path / "s.txt", SENTENCES)

    with pytest.raises(ValueError, match="Received: task='audio'"):
        data.load_data(task="audio")
    with pytest.raises(ValueError, match="Received: test_split=1.5"):
        data.load_data(task="text", test_split=1.5)
    with pytest.raises(ValueError, match="pass task='text'"):
        data.load_data(str(path), task="image")
    with pytest.raises(ValueError, match="Received: spec='train=a,tset=b'"):
        data.load_data("train=a,tset=b", task="text")


# --------------------------------------------------------- shared data


def test_shared_trec(shared_data):
    text = shared_data / "text"

    bundle = data.load_data(
        f"train={text / 'TREC.train.all'},test={text / 'TREC.test.all'},"
        "encoding=latin-1",
        task="text",
    )

    assert bundle.num_examples == {"train": 5452, "test": 500}
    assert bundle.num_classes == 6


def test_shared_trec_is_not_utf8(shared_data):
    # The README says UTF-8; line 66 of TREC.train.all holds a Latin-1 byte.
    with pytest.raises(data.DataError, match=r"TREC\.train\.all, line 66"):
        data.read_sentence_file(shared_data / "text" / "TREC.train.all")


def test_shared_sst1(shared_data):
    text = shared_data / "text"

    bundle = data.load_data(
        f"train={text / 'stsa.fine.train'},test={text / 'stsa.fine.test'},"
        f"validation={text / 'stsa.fine.dev'}",
        task="text",
    )

    assert bundle.num_examples == {
        "train": 8544,
        "test": 2210,
        "validation": 1101,
    }
    assert bundle.num_classes == 5


def test_shared_mr_seeded_split(shared_data):
    path = shared_data / "text" / "rt-polarity.all"

    bundle = data.load_data(str(path), task="text", encoding="latin-1")
    again = data.load_data(str(path), task="text", encoding="latin-1")

    assert bundle.num_examples == {"train": 9596, "test": 1066}
    assert _sentences(bundle.test) == _sentences(again.test)
    # A Latin-1 \x85 inside a line must not split it.
    assert sum(bundle.num_examples.values()) == 10662


def test_shared_mnist_idx(shared_data):
    path = shared_data / "mnist" / "t10k-images-idx3-ubyte.gz"

    bundle = data.load_data(str(path), task="image", test_split=0.2)

    assert bundle.num_examples == {"train": 8000, "test": 2000}
    assert bundle.image_shape == (28, 28, 1)
    assert bundle.num_classes == 10
    images = np.stack(
        [image for image, _ in bundle.test.take(500).as_numpy_iterator()]
    )
    assert images.min() == 0.0 and images.max() == 1.0
    labels = data.read_idx(path.with_name("t10k-labels-idx1-ubyte.gz"))
    assert labels.shape == (10000,) and labels[:3].tolist() == [7, 2, 1]


# ---------------------------------------------------------------- tfds


def test_tfds_text_from_feature_spec():
    tfds = pytest.importorskip("tensorflow_datasets")

    with tfds.testing.mock_data(num_examples=12):
        bundle = data.load_data(
            "tfds:glue/sst2", task="text", validation_split=0.25
        )
        text, label = next(iter(bundle.train))

    assert bundle.class_names == ["negative", "positive"]
    assert bundle.num_examples == {"train": 9, "test": 12, "validation": 3}
    assert text.dtype == tf.string and label.dtype == tf.int64
    assert "'sentence' -> 'label'" in bundle.description


def test_tfds_image_from_feature_spec():
    tfds = pytest.importorskip("tensorflow_datasets")

    with tfds.testing.mock_data(num_examples=5):
        bundle = data.load_data("tfds:mnist", task="image")
        image, label = next(iter(bundle.test))

    assert bundle.image_shape == (28, 28, 1)
    assert bundle.num_classes == 10
    assert image.dtype == tf.float32 and image.shape == (28, 28, 1)
    assert 0.0 <= float(tf.reduce_min(image)) <= 1.0


def test_tfds_unlabelled_test_split_is_replaced_by_a_seeded_split():
    tfds = pytest.importorskip("tensorflow_datasets")

    def as_dataset(self, split, **kwargs):
        # Like GLUE: the test split is unlabelled (label -1).
        labels = np.arange(10) % 4 if split == "train" else np.full(10, -1)
        return tf.data.Dataset.from_tensor_slices(
            {
                "title": [f"text {i}" for i in range(10)],
                "label": labels,
                "description": ["d"] * 10,
            }
        )

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        bundle = data.load_data("tfds:ag_news_subset", task="text", seed=1)
        test = _sentences(bundle.test)
        train = _sentences(bundle.train)

    assert bundle.num_examples == {"train": 9, "test": 1}
    assert not set(test) & set(train)
    assert len(set(test) | set(train)) == 10


# ---------------------------------------------------------- vectorizer


@pytest.mark.parametrize(
    "sentence, expected",
    [
        ("What's this?", "what 's this ?"),
        ("I don't KNOW, (really)!", "i do n't know , ( really ) !"),
        ("wo n't it 's", "wo n't it 's"),
        ("  Émile  visited\tRome -- twice.", "émile visited rome twice ."),
        ("they'll go; we'd stay", "they 'll go ; we 'd stay"),
    ],
)
def test_standardize_text(sentence, expected):
    result = data.standardize_text(tf.constant([sentence]))

    assert result.numpy()[0].decode() == expected


def test_make_vectorizer_ids():
    texts = tf.data.Dataset.from_tensor_slices(
        ["the cat sat", "the dog sat", "the cat ran", "a bird"]
    )

    vectorizer = data.make_vectorizer(
        texts, vocabulary_size=5, sequence_length=6
    )
    ids = vectorizer(tf.constant(["The cat flew!", "the"]))

    vocabulary = vectorizer.get_vocabulary()
    assert vocabulary[:2] == ["", "[UNK]"] and len(vocabulary) == 5
    assert vocabulary[2] == "the"  # the most frequent word gets id 2
    assert ids.dtype == tf.int64 and ids.shape == (2, 6)
    cat = vocabulary.index("cat")
    # "flew" and "!" are out of vocabulary (1); the rest is padding (0).
    np.testing.assert_array_equal(ids[0], [2, cat, 1, 1, 0, 0])
    np.testing.assert_array_equal(ids[1], [2, 0, 0, 0, 0, 0])


def test_vectorizer_in_a_keras_file_reloads(tmp_path):
    texts = tf.data.Dataset.from_tensor_slices(["What's up?", "all good"])
    vectorizer = data.make_vectorizer(
        texts, vocabulary_size=20, sequence_length=4
    )
    inputs = keras.Input(shape=(), dtype="string")
    model = keras.Model(inputs, vectorizer(inputs))
    model.save(tmp_path / "m.keras")

    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    sentences = tf.constant(["WHAT'S good?", "nothing"])

    np.testing.assert_array_equal(reloaded(sentences), model(sentences))
    rebuilt = data.vectorizer_from_vocabulary(
        vectorizer.get_vocabulary(), sequence_length=4
    )
    np.testing.assert_array_equal(rebuilt(sentences), model(sentences))


def test_make_vectorizer_checks_sizes():
    texts = tf.data.Dataset.from_tensor_slices(["a"])

    with pytest.raises(ValueError, match="Received: vocabulary_size=2"):
        data.make_vectorizer(texts, vocabulary_size=2, sequence_length=4)
    with pytest.raises(ValueError, match="Received: sequence_length=0"):
        data.make_vectorizer(texts, vocabulary_size=10, sequence_length=0)
    with pytest.raises(TypeError, match="Received: texts=list"):
        data.make_vectorizer(["a"], vocabulary_size=10, sequence_length=4)


# -------------------------------------------------------- word vectors

VOCABULARY = ["", "[UNK]", "the", "cat", "paris", "zyzzyva"]


def test_glove_vectors(tmp_path):
    path = _write(
        tmp_path / "glove.txt",
        "the 0.1 0.2 0.3\ncat -1 0 1\ndog 5 5 5\nParis 2 2 2\nparis 3 3 3\n",
    )

    matrix, found = data.load_word_vectors(path, VOCABULARY)

    assert matrix.shape == (6, 3) and matrix.dtype == np.float32
    assert found == pytest.approx(3 / 4)  # the, cat, paris; not zyzzyva
    np.testing.assert_array_equal(matrix[0], 0.0)  # padding
    np.testing.assert_allclose(matrix[2], [0.1, 0.2, 0.3])
    np.testing.assert_allclose(matrix[4], [3, 3, 3])  # exact match wins
    assert np.all(matrix[5] != 0) and np.all(np.abs(matrix[5]) < 3)


def test_word2vec_text_vectors_and_lowercase_fallback(tmp_path):
    path = _write(tmp_path / "w2v.txt", "3 2\nThe 1 2\nCat 3 4\nzzz 0 0\n")

    matrix, found = data.load_word_vectors(path, VOCABULARY, embedding_dim=2)
    again, _ = data.load_word_vectors(path, VOCABULARY, embedding_dim=2)

    assert matrix.shape == (6, 2)
    assert found == pytest.approx(2 / 4)
    np.testing.assert_allclose(matrix[3], [3, 4])
    np.testing.assert_array_equal(matrix, again)  # seeded random rows


@pytest.mark.parametrize(
    "content, embedding_dim, line, message",
    [
        ("the 1 2 3\ncat 1 2\n", None, 2, "found 2 values"),
        ("3 2\nthe 1 2\ncat 1 x\n", None, 3, "must be numbers"),
        ("3 4\nthe 1 2 3 4\n", 3, 1, "embedding_dim is 3"),
        ("the 1 2\n", 5, 1, "have 2 values"),
    ],
)
def test_bad_word_vectors(tmp_path, content, embedding_dim, line, message):
    path = _write(tmp_path / "vectors.txt", content)

    with pytest.raises(data.DataError) as info:
        data.load_word_vectors(path, VOCABULARY, embedding_dim=embedding_dim)

    assert f"vectors.txt, line {line}" in str(info.value)
    assert message in str(info.value)


def test_word_vectors_with_spaces_in_words(tmp_path):
    # GloVe 840B has "words" with spaces; the last `dim` fields are values.
    path = _write(tmp_path / "glove.txt", "the 1 2\n. . . 5 6\ncat 3 4\n")

    matrix, found = data.load_word_vectors(path, VOCABULARY + [". . ."])

    np.testing.assert_allclose(matrix[6], [5, 6])
    np.testing.assert_allclose(matrix[3], [3, 4])
    assert found == pytest.approx(3 / 5)


def test_tfds_unknown_name_suggests_close_ones():
    tfds = pytest.importorskip("tensorflow_datasets")

    with tfds.testing.mock_data(num_examples=2):
        with pytest.raises(ValueError, match=r"Close names: \['mnist'"):
            data.load_data("tfds:mnsit", task="image")


@pytest.mark.slow
def test_demo_corpus_is_learnable_by_a_small_cnn():
    bundle = data.load_data(task="text", validation_split=0.1)
    vectorizer = data.make_vectorizer(
        bundle.train.map(lambda text, label: text),
        vocabulary_size=2000,
        sequence_length=16,
    )

    def batches(dataset):
        return dataset.batch(50).map(lambda text, y: (vectorizer(text), y))

    inputs = keras.Input(shape=(16,), dtype="int64")
    hidden = keras.layers.Embedding(2000, 32)(inputs)
    hidden = keras.layers.Conv1D(32, 3, activation="relu")(hidden)
    hidden = keras.layers.GlobalMaxPooling1D()(hidden)
    outputs = keras.layers.Dense(5, activation="softmax")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(
        "adam", "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(
        batches(bundle.train.shuffle(3000, seed=0)),
        epochs=3,
        shuffle=False,  # the dataset is shuffled above
        verbose=0,
    )

    _, accuracy = model.evaluate(batches(bundle.test), verbose=0)
    assert accuracy > 0.9


def test_path_with_equals_sign_is_a_path(tmp_path):
    path = _write(tmp_path / "lr=0.1.txt", SENTENCES)

    bundle = data.load_data(str(path), task="text")

    assert bundle.num_examples == {"train": 27, "test": 3}
