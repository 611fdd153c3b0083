"""Time one Adadelta step of text_cnn_kim: Keras', dense, and row-wise.

For `text_cnn_kim` sized like TREC (`--vocabulary` words, 37 tokens, 6
classes), one batch of 50 random sentences gives one set of gradients (a
`tf.IndexedSlices` for the embedding). The script then times
`optimizer.apply` on those gradients, in a `tf.function`, for:

- `keras.optimizers.Adadelta` (densifies the embedding gradient inside
  its arithmetic),
- `kerasdl.optimizers.DenseGradientAdadelta` (whole embedding every step),
- `kerasdl.optimizers.SparseAdadelta` (the batch's rows only),

each for all variables and for the embedding alone, next to the
forward-and-backward pass that produced the gradients. Figures are medians
of `--repeats` rounds of `--steps` calls.

Example:

    python benchmarks/bench_optimizers.py
    python benchmarks/bench_optimizers.py --vocabulary 20000 --steps 20
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kerasdl import zoo  # noqa: E402
from kerasdl.optimizers import DenseGradientAdadelta  # noqa: E402
from kerasdl.optimizers import SparseAdadelta  # noqa: E402

SEQUENCE_LENGTH = 37  # TREC's longest question
NUM_CLASSES = 6


def milliseconds_per_call(function, steps, repeats):
    """Median over `repeats` rounds of the mean time of `steps` calls."""
    function()  # trace
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            function()
        rounds.append((time.perf_counter() - start) / steps * 1e3)
    return statistics.median(rounds)


def run_benchmark(vocabulary_size, batch_size, steps, repeats, seed=0):
    """Returns `[(what, milliseconds), ...]`."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = zoo.build(
        "text_cnn_kim",
        vocabulary_size=vocabulary_size,
        sequence_length=SEQUENCE_LENGTH,
        num_classes=NUM_CLASSES,
    )
    ids = tf.constant(
        rng.integers(1, vocabulary_size, (batch_size, SEQUENCE_LENGTH)),
        tf.int32,
    )
    labels = tf.constant(rng.integers(0, NUM_CLASSES, batch_size))
    loss = keras.losses.SparseCategoricalCrossentropy()
    variables = model.trainable_variables

    @tf.function
    def gradients():
        with tf.GradientTape() as tape:
            value = loss(labels, model(ids, training=True))
        return tape.gradient(value, variables)

    rows = [
        (
            "forward + backward (the gradients)",
            milliseconds_per_call(gradients, steps, repeats),
        )
    ]
    grads = gradients()
    kinds = {
        "keras.optimizers.Adadelta": keras.optimizers.Adadelta,
        "DenseGradientAdadelta": DenseGradientAdadelta,
        "SparseAdadelta": SparseAdadelta,
    }
    for name, kind in kinds.items():
        optimizer = kind(learning_rate=1.0, rho=0.95, epsilon=1e-6)
        optimizer.build(variables)
        every = tf.function(lambda o=optimizer: o.apply(grads, variables))
        embedding = tf.function(
            lambda o=optimizer: o.apply(grads[:1], variables[:1])
        )
        rows.append(
            (
                f"{name}: all variables",
                milliseconds_per_call(every, steps, repeats),
            )
        )
        rows.append(
            (
                f"{name}: embedding only",
                milliseconds_per_call(embedding, steps, repeats),
            )
        )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocabulary", type=int, default=8_700)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(
        f"text_cnn_kim, {args.vocabulary:,} words x 300, {SEQUENCE_LENGTH} "
        f"tokens, batch {args.batch_size}; TensorFlow {tf.__version__}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    rows = run_benchmark(
        args.vocabulary, args.batch_size, args.steps, args.repeats
    )
    width = max(len(what) for what, _ in rows)
    for what, milliseconds in rows:
        print(f"{what:<{width}}  {milliseconds:8.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
