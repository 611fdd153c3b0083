"""Serving speed: reloaded SavedModel vs predict_on_batch vs tf.function.

For `text_cnn_kim` (its `token_ids` signature) and `image_cnn_same` (its
`images` signature), the script exports the model, reloads it with
`tf.saved_model.load` and times three ways of running the same weights:

- the reloaded SavedModel's signature function (what TF Serving runs),
- `model.predict_on_batch` (Keras' own inference entry point),
- a bare `tf.function` around `model(inputs, training=False)`,
- for the text model, also the signature of its folded export
  (`export_model(..., fold_embeddings=True)`: the embedding multiplied
  into the convolutions ahead of time, `kerasdl.folding`).

It prints batch-1 latency (median and 90th percentile over `--calls`
calls) and batch-256 throughput (examples per second over `--repeats`
batches), side by side. Weights are untrained: speed does not depend on
their values.

Usage:

    python benchmarks/bench_serving.py
    python benchmarks/bench_serving.py --calls 500 --repeats 20
"""

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Run from a checkout without installing: the repository root comes first.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kerasdl import data  # noqa: E402
from kerasdl import export  # noqa: E402
from kerasdl import zoo  # noqa: E402

WARMUP_CALLS = 5
FOLDED_RUNNER = "SavedModel signature, folded"


def _token_batch(rng, batch_size, sequence_length, vocabulary_size):
    return rng.integers(
        0, vocabulary_size, size=(batch_size, sequence_length)
    ).astype("int64")


def _image_batch(rng, batch_size, image_shape):
    return rng.uniform(size=(batch_size, *image_shape)).astype("float32")


def _exported_signature(
    model, name, *, task, base_dir, vectorizer, signature_name, fold=False
):
    """Exports `model` (folded if `fold`), reloads it; one signature."""
    path = export.export_model(
        model,
        name,
        task=task,
        base_dir=base_dir,
        vectorizer=vectorizer,
        warmup=False,
        fold_embeddings=fold,
    )
    return tf.saved_model.load(str(path)).signatures[signature_name]


def _signature_runner(signature, input_name):
    return lambda batch: signature(**{input_name: tf.constant(batch)})


def _runners(model, signature, input_name, spec):
    """The three ways of running `model`, each taking a NumPy batch."""
    bare = tf.function(
        lambda inputs: model(inputs, training=False),
        input_signature=[spec],
    )
    return {
        "SavedModel signature": _signature_runner(signature, input_name),
        "model.predict_on_batch": model.predict_on_batch,
        "tf.function(model)": lambda batch: bare(tf.constant(batch)),
    }


def _latency(run, batch, calls):
    """Median and 90th percentile of single calls, in milliseconds."""
    for _ in range(WARMUP_CALLS):
        run(batch)
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        outputs = run(batch)
        # Make sure the result is computed, not just scheduled.
        _ = np.asarray(next(iter(_as_dict(outputs).values())))
        seconds.append(time.perf_counter() - start)
    quantiles = statistics.quantiles(seconds, n=10)
    return statistics.median(seconds) * 1e3, quantiles[-1] * 1e3


def _throughput(run, batch, repeats):
    """Examples per second over `repeats` calls on `batch`."""
    for _ in range(2):
        run(batch)
    start = time.perf_counter()
    for _ in range(repeats):
        _ = np.asarray(next(iter(_as_dict(run(batch)).values())))
    return repeats * len(batch) / (time.perf_counter() - start)


def _as_dict(outputs):
    return outputs if isinstance(outputs, dict) else {"outputs": outputs}


def _cases(rng):
    text = zoo.build("text_cnn_kim")
    length = zoo.get_model_info("text_cnn_kim").defaults["sequence_length"]
    vocabulary_size = zoo.get_model_info("text_cnn_kim").defaults[
        "vocabulary_size"
    ]
    image = zoo.build("image_cnn_same")
    image_shape = tuple(
        zoo.get_model_info("image_cnn_same").defaults["input_shape"]
    )
    return [
        (
            "text_cnn_kim",
            text,
            "text_classification",
            "token_ids",
            "token_ids",
            tf.TensorSpec((None, length), tf.int64),
            lambda size: _token_batch(rng, size, length, vocabulary_size),
        ),
        (
            "image_cnn_same",
            image,
            "image_classification",
            "serving_default",
            "images",
            tf.TensorSpec((None, *image_shape), tf.float32),
            lambda size: _image_batch(rng, size, image_shape),
        ),
    ]


def run_benchmark(calls, repeats, large_batch):
    """Returns one row per (model, runner) with the measured figures."""
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as base_dir:
        for case in _cases(rng):
            name, model, task, signature_name, input_name, spec, make = case
            vectorizer = None
            if task == "text_classification":
                # A token vectorizer of the right length; the timed
                # `token_ids` signature does not use it.
                vectorizer = data.make_vectorizer(
                    tf.data.Dataset.from_tensor_slices(["a small corpus"]),
                    vocabulary_size=100,
                    sequence_length=spec.shape[1],
                )

            single, large = make(1), make(large_batch)
            export_arguments = {
                "task": task,
                "base_dir": base_dir,
                "vectorizer": vectorizer,
                "signature_name": signature_name,
            }
            plain = _exported_signature(model, name, **export_arguments)
            runners = _runners(model, plain, input_name, spec)
            if task == "text_classification":
                # The inference-only export with the embedding folded
                # into the convolutions (kerasdl.folding).
                folded = _exported_signature(
                    model, f"{name}_folded", fold=True, **export_arguments
                )
                runners[FOLDED_RUNNER] = _signature_runner(folded, input_name)
            for runner, run in runners.items():
                median, p90 = _latency(run, single, calls)
                rate = _throughput(run, large, repeats)
                rows.append((name, runner, median, p90, rate))
    return rows


def _print_table(rows, large_batch):
    header = (
        f"{'model':<16}{'runner':<32}{'batch-1 median ms':>18}"
        f"{'p90 ms':>9}{f'batch-{large_batch} ex/s':>17}"
    )
    print(header)
    print("-" * len(header))
    for name, runner, median, p90, rate in rows:
        print(f"{name:<16}{runner:<32}{median:>18.2f}{p90:>9.2f}{rate:>17.0f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--calls", type=int, default=200, help="batch-1 calls per runner"
    )
    parser.add_argument(
        "--repeats", type=int, default=10, help="large batches per runner"
    )
    parser.add_argument(
        "--batch-size", type=int, default=256, help="the large batch size"
    )
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
        f"devices: {[d.device_type for d in tf.config.list_logical_devices()]}"
        f", {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} (timings on a busy machine are noisy)"
    )
    rows = run_benchmark(args.calls, args.repeats, args.batch_size)
    _print_table(rows, args.batch_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
