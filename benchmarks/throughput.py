"""Training throughput of zoo models against the CPU's matmul peak.

`matmul_peak` measures what the machine can do: the best float32 GFLOP/s
of `tf.linalg.matmul` on large square matrices. `measure_training` times
`model.fit` in steady state: after warm-up steps (tracing, XLA
compilation, first touches of memory), the training steps are cut into
windows of about `window_seconds` and the median window's examples/s is
reported. Achieved GFLOP/s are examples/s times the analytic training
FLOPs of `benchmarks.flops` (3x forward).
"""

import dataclasses
import functools
import logging
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from benchmarks import flops
from benchmarks import fused_text_cnn
from kerasdl import zoo

logger = logging.getLogger(__name__)

# The text models are sized like TREC (Kim 2014): 6 classes, ~8,700 words
# in the training vocabulary, 37 tokens in the longest sentence.
TREC_NUM_CLASSES = 6
TREC_VOCABULARY_SIZE = 8_700
TREC_SEQUENCE_LENGTH = 37
SYNTHETIC_EXAMPLES = 2_000


def matmul_peak(sizes=(1024, 2048, 4096), repeats=5) -> dict:
    """The best float32 matmul GFLOP/s over square sizes and repeats.

    Args:
        sizes: Matrix sizes n; each product costs 2 n^3 FLOPs.
        repeats: Timed products per size, after one warm-up product.

    Returns:
        `{"gflops": best, "by_size": {n: best GFLOP/s at n}}`.

    Example:

    >>> matmul_peak(sizes=(256,), repeats=2)["gflops"] > 0
    True
    """
    by_size = {}
    for size in sizes:
        a = tf.random.normal((size, size), dtype=tf.float32, seed=1)
        b = tf.random.normal((size, size), dtype=tf.float32, seed=2)
        tf.linalg.matmul(a, b).numpy()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            # .numpy() waits for the product to finish.
            tf.linalg.matmul(a, b).numpy()
            best = min(best, time.perf_counter() - start)
        by_size[size] = 2 * size**3 / best / 1e9
    return {"gflops": max(by_size.values()), "by_size": by_size}


class _StepClock(keras.callbacks.Callback):
    """Records the time at the end of every executed batch."""

    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())


def _batches(inputs, targets, batch_size, seed=0):
    dataset = tf.data.Dataset.from_tensor_slices((inputs, targets))
    dataset = dataset.shuffle(len(targets), seed=seed).repeat()
    dataset = dataset.batch(batch_size, drop_remainder=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _fit_steps(model, dataset, steps):
    """Runs `steps` training steps; returns the end time of each call."""
    clock = _StepClock()
    model.fit(
        dataset,
        epochs=1,
        steps_per_epoch=steps,
        callbacks=[clock],
        # The dataset shuffles itself; fit's default would warn.
        shuffle=False,
        verbose=0,
    )
    return clock.times


def measure_training(
    model,
    inputs,
    targets,
    *,
    batch_size=50,
    jit_compile=False,
    steps_per_execution=1,
    optimizer=None,
    warmup_steps=20,
    windows=5,
    window_seconds=1.0,
) -> dict:
    """Steady-state training examples/s of `model` on the given data.

    A first `fit` of `warmup_steps` traces and compiles the train step and
    estimates the step time; a second `fit` then runs `windows` windows of
    about `window_seconds` each (plus one discarded window, as the new
    data iterator fills its prefetch buffer). The result is the median
    window.

    Args:
        model: A built Keras classifier or language model.
        inputs: The training inputs (NumPy).
        targets: Integer class ids (NumPy).
        batch_size: Examples per step.
        jit_compile: Compile the train step with XLA.
        steps_per_execution: Steps run per call into the compiled graph.
        optimizer: Default Adam.
        warmup_steps: Steps before timing; rounded up to whole executions.
        windows: Timed windows.
        window_seconds: Rough length of each window.

    Returns:
        A dict: `examples_per_second` (median window), `windows` (each
        window's examples/s), `step_milliseconds` and `steps` timed.
    """
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    dataset = _batches(inputs, targets, batch_size)
    warmup = -(-warmup_steps // steps_per_execution) * steps_per_execution
    times = _fit_steps(model, dataset, warmup)
    # Step time from the second half of the warm-up (compilation is over).
    half = max(1, len(times) // 2)
    executions = max(1, len(times) - half)
    seconds_per_execution = (times[-1] - times[half - 1]) / executions
    if len(times) < 2:
        seconds_per_execution = 0.05
    per_window = max(1, round(window_seconds / seconds_per_execution))

    times = _fit_steps(
        model, dataset, (windows + 1) * per_window * steps_per_execution
    )
    rates = []
    for window in range(1, windows + 1):
        start = times[window * per_window - 1]
        end = times[(window + 1) * per_window - 1]
        examples = per_window * steps_per_execution * batch_size
        rates.append(examples / (end - start))
    rate = statistics.median(rates)
    return {
        "examples_per_second": rate,
        "windows": rates,
        "step_milliseconds": 1e3 * batch_size / rate,
        "steps": windows * per_window * steps_per_execution,
    }


@dataclasses.dataclass
class Case:
    """One model to time: how to build it and data to train it on."""

    label: str
    build: object
    batch_size: int = 50
    jit_compile: bool = False
    steps_per_execution: int = 1
    optimizer: object = None
    data: tuple = None
    dense_gradients: bool = False
    # Keras dtype policy the model is built under ("mixed_bfloat16":
    # bfloat16 compute, float32 weights).
    dtype_policy: str = "float32"

    def build_model(self):
        """`build()` under this case's dtype policy."""
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.dtype_policy)
        try:
            return self.build()
        finally:
            keras.config.set_dtype_policy(previous)


def _text_arguments(name, vocabulary_size, sequence_length):
    defaults = zoo.get_model_info(name).defaults
    arguments = {
        "vocabulary_size": vocabulary_size,
        "sequence_length": sequence_length,
        "num_classes": TREC_NUM_CLASSES,
    }
    return {k: v for k, v in arguments.items() if k in defaults}


def zoo_builders():
    """`{name: build function}` for every registered model.

    Text classifiers are sized like TREC (token ids, 37 tokens, 6
    classes); the language model and the image models keep the zoo's
    defaults (32 tokens of a 5,000-word vocabulary; 32x32x3 images).
    """
    builders = {}
    for name in zoo.list_models():
        task = zoo.get_model_info(name).task
        if task == "text_classification":
            arguments = _text_arguments(
                name, TREC_VOCABULARY_SIZE, TREC_SEQUENCE_LENGTH
            )
        else:
            arguments = {}
        builders[name] = lambda name=name, arguments=arguments: zoo.build(
            name, **arguments
        )
    return builders


def synthetic_data(model, examples=SYNTHETIC_EXAMPLES, seed=0):
    """Random inputs and targets shaped for `model` (`zoo.random_batch`)."""
    return zoo.random_batch(model, batch_size=examples, seed=seed)


def run_case(case, peak_gflops, *, windows, window_seconds, seed=0):
    """Builds, times and counts one case; returns a table row dict."""
    keras.utils.set_random_seed(seed)
    model = case.build_model()
    inputs, targets = case.data or synthetic_data(model, seed=seed)
    training_flops = flops.training_flops_per_example(model, inputs[:1])
    row = {
        "case": case.label,
        "model": model.name,
        "batch_size": case.batch_size,
        "jit_compile": case.jit_compile,
        "steps_per_execution": case.steps_per_execution,
        "dtype_policy": case.dtype_policy,
        "training_mflops_per_example": training_flops / 1e6,
    }
    try:
        measured = measure_training(
            model,
            inputs,
            targets,
            batch_size=case.batch_size,
            jit_compile=case.jit_compile,
            steps_per_execution=case.steps_per_execution,
            optimizer=case.optimizer() if case.optimizer else None,
            windows=windows,
            window_seconds=window_seconds,
        )
    except Exception as error:  # noqa: BLE001 - one failed case, not all
        logger.warning("%s failed: %s", case.label, error)
        row["error"] = f"{type(error).__name__}: {str(error)[:200]}"
        return row
    row.update(measured)
    row["gflops"] = measured["examples_per_second"] * training_flops / 1e9
    row["percent_of_peak"] = 100 * row["gflops"] / peak_gflops
    return row


def zoo_cases(jit_options=(False, True)):
    """Every zoo model, with and without XLA, batch 50, Adam."""
    cases = []
    for name, build in zoo_builders().items():
        for jit in jit_options:
            label = f"{name}, {'XLA' if jit else 'no XLA'}"
            cases.append(Case(label, build, jit_compile=jit))
    return cases


def kim_variants(trec_data, sequence_length, vocabulary_size, optimizer):
    """The steps tried to speed up `text_cnn_kim` training on TREC.

    Each case changes one thing from the one before (see the labels):
    `SparseAdadelta` without XLA first, then dense Adadelta
    (`DenseGradientAdadelta`), with XLA and the fused convolution; then
    batch 200 (outside Kim's recipe) and, last, bfloat16 compute (not
    float32). `trec_data` is `(ids, labels)` at `sequence_length` tokens;
    the zoo default of 64 tokens pads it.
    """

    def kim(length, hand_written=True):
        return lambda: zoo.build(
            "text_cnn_kim",
            vocabulary_size=vocabulary_size,
            sequence_length=length,
            num_classes=TREC_NUM_CLASSES,
            hand_written_activations=hand_written,
        )

    def fused(hand_written=True):
        return lambda: fused_text_cnn.build_fused_text_cnn(
            vocabulary_size,
            sequence_length,
            num_classes=TREC_NUM_CLASSES,
            hand_written_activations=hand_written,
        )

    ids, labels = trec_data
    padded = np.pad(ids, [(0, 0), (0, 64 - ids.shape[1])])
    short = (ids, labels)
    cases = [
        Case("zoo defaults: 64 tokens, no XLA", kim(64), data=(padded, labels)),
        Case(
            f"{sequence_length} tokens (longest sentence)",
            kim(sequence_length),
            data=short,
        ),
        Case(
            "+ steps_per_execution=10",
            kim(sequence_length),
            steps_per_execution=10,
            data=short,
        ),
        Case(
            "dense Adadelta (every embedding row, every step)",
            kim(sequence_length),
            steps_per_execution=10,
            data=short,
            dense_gradients=True,
        ),
        Case(
            "dense Adadelta + XLA (jit_compile)",
            kim(sequence_length),
            jit_compile=True,
            steps_per_execution=10,
            data=short,
        ),
        Case(
            "+ Keras' built-in ReLU",
            kim(sequence_length, hand_written=False),
            jit_compile=True,
            steps_per_execution=10,
            data=short,
        ),
        Case(
            "+ fused Conv1D (kernel 5, masked taps)",
            fused(hand_written=False),
            jit_compile=True,
            steps_per_execution=10,
            data=short,
        ),
        Case(
            "fused, hand-written ReLU",
            fused(hand_written=True),
            jit_compile=True,
            steps_per_execution=10,
            data=short,
        ),
        Case(
            "fused, batch 200 (not Kim's recipe)",
            fused(hand_written=False),
            batch_size=200,
            jit_compile=True,
            steps_per_execution=10,
            data=short,
        ),
        Case(
            "SparseAdadelta, steps_per_execution=10, mixed_bfloat16 "
            "(bfloat16 compute: not float32)",
            kim(sequence_length),
            steps_per_execution=10,
            data=short,
            dtype_policy="mixed_bfloat16",
        ),
    ]
    for case in cases:
        # The XLA rows use dense embedding gradients
        # (`DenseGradientAdadelta`); Keras' own sparse Adadelta stalls there.
        case.optimizer = functools.partial(
            optimizer, dense_gradients=case.jit_compile or case.dense_gradients
        )
    return cases
