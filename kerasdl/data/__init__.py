"""Data pipelines: `load_data`, the text vectorizer and word vectors.

`load_data(spec, task=...)` returns a `DataBundle` of unbatched
`tf.data.Dataset` splits from the offline defaults, TensorFlow Datasets or
the user's files; `make_vectorizer` adapts the in-graph text
preprocessing; `load_word_vectors` reads GloVe or word2vec text files.

Example:

>>> from kerasdl import data
>>> bundle = data.load_data(task="text")
>>> vectorizer = data.make_vectorizer(
...     bundle.train.map(lambda text, label: text),
...     vocabulary_size=2000,
...     sequence_length=16,
... )
"""

from kerasdl.data.bundle import DataBundle
from kerasdl.data.bundle import DataError
from kerasdl.data.embeddings import load_word_vectors
from kerasdl.data.images import read_idx
from kerasdl.data.loading import load_data
from kerasdl.data.text import STANDARDIZE_NAME
from kerasdl.data.text import make_vectorizer
from kerasdl.data.text import read_sentence_file
from kerasdl.data.text import standardize_text
from kerasdl.data.text import vectorizer_from_vocabulary

__all__ = [
    "STANDARDIZE_NAME",
    "DataBundle",
    "DataError",
    "load_data",
    "load_word_vectors",
    "make_vectorizer",
    "read_idx",
    "read_sentence_file",
    "standardize_text",
    "vectorizer_from_vocabulary",
]
