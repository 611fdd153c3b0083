"""Time kerasdl.gradcheck against tf.test.compute_gradient.

Runs, in one process and on the same inputs:

- `check_gradients` in full mode on each hand-written activation (1,000
  elements: every element of the gradient checked, in float64);
- `tf.test.compute_gradient` on the same layer and input (two float32
  Jacobians of 1,000 x 1,000, no verdict);
- `check_gradients` in fast mode on a ~100k-weight Keras model.

Each figure is the median of `--repeats` runs after one warm-up run. Every
`check_gradients` call compiles its own functions, so the figures include
tracing, as a user would see them.

Example:

    python benchmarks/bench_gradcheck.py --repeats 5
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kerasdl import gradcheck  # noqa: E402
from kerasdl import layers  # noqa: E402


def median_seconds(function, repeats):
    """Runs `function` once to warm up, then `repeats` times; the median."""
    outcome = function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        outcome = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), outcome


def activation_rows(points, repeats):
    rows = []
    for name in layers.ACTIVATIONS:
        layer = layers.get_activation(name)
        seconds, result = median_seconds(
            lambda layer=layer: gradcheck.check_gradients(layer, points),
            repeats,
        )
        rows.append(
            (
                f"{name} layer",
                "kerasdl full (float64)",
                str(points.size),
                f"{seconds:.3f}",
                f"{'PASS' if result.ok else 'FAIL'} "
                f"max abs err {result.max_abs_error:.1e}",
            )
        )
        seconds, (theoretical, numerical) = median_seconds(
            lambda layer=layer: tf.test.compute_gradient(layer, [points]),
            repeats,
        )
        error = np.max(np.abs(theoretical[0] - numerical[0]))
        rows.append(
            (
                f"{name} layer",
                "tf.test.compute_gradient",
                str(points.size),
                f"{seconds:.3f}",
                f"no verdict; max |J_t - J_n| {error:.1e}",
            )
        )
    return rows


def model_row(repeats, seed):
    # 784 * 128 + 128 + 128 * 10 + 10 = 101,770 weights.
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(128, activation="relu"),
            layers.Tanh(),
            keras.layers.Dense(10),
        ]
    )
    rng = np.random.default_rng(seed)
    inputs = rng.standard_normal((32, 784)).astype("float32")
    seconds, result = median_seconds(
        lambda: gradcheck.check_gradients(model, inputs, fast=True), repeats
    )
    return (
        "MLP 784-128-10",
        "kerasdl fast (float64)",
        f"{model.count_params():,} w + {inputs.size:,} in",
        f"{seconds:.3f}",
        f"{'PASS' if result.ok else 'FAIL'} {result.num_checked} projections",
    )


def print_table(rows):
    header = ("target", "method", "elements", "median s", "outcome")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(5)]
    for line in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    points = rng.normal(scale=3.0, size=args.size).astype("float32")
    rows = activation_rows(points, args.repeats)
    rows.append(model_row(args.repeats, args.seed))
    print_table(rows)


if __name__ == "__main__":
    main()
