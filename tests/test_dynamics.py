"""Tests for kerasdl.dynamics: the |k|^50 experiment, Keras-model norms,
the training callback, the plot and the `kerasdl dynamics` command."""

import logging
import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasdl.cli
from kerasdl import dynamics

DEPTH = 51
# Relative-error budgets for |k|^(depth - l) after 50 float32 matmuls
# (measured worst case over 20 seeds: 4.6e-7) and in float64 (4.2e-15).
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}
SCALES = {0.5: 2.0**-50, 1.0: 1.0, 2.0: 2.0**50}


# ---------------------------------------------------------------------------
# The deep linear network.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("scale", sorted(SCALES))
def test_first_layer_gradient_is_k_to_the_50(scale, dtype):
    norms = dynamics.deep_linear_gradient_norms(
        depth=DEPTH, scale=scale, dtype=dtype
    )

    assert norms.shape == (DEPTH + 1,)
    expected = SCALES[scale]
    assert abs(norms[1] - expected) / expected <= TOLERANCE[dtype]


def test_the_three_values_are_the_textbook_numbers():
    # 2^-50 ~ 8.88e-16 vanishes, 2^50 ~ 1.13e15 explodes.
    small = dynamics.deep_linear_gradient_norms(scale=0.5)[1]
    large = dynamics.deep_linear_gradient_norms(scale=2.0)[1]

    assert small == pytest.approx(8.881784197001252e-16, rel=1e-5)
    assert large == pytest.approx(1.125899906842624e15, rel=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0, -1.5])
def test_whole_profile_follows_k_to_the_depth_minus_l(scale, dtype):
    norms = dynamics.deep_linear_gradient_norms(
        depth=DEPTH, width=32, scale=scale, seed=3, dtype=dtype
    )
    theory = np.abs(scale) ** (DEPTH - np.arange(DEPTH + 1))

    errors = dynamics.relative_errors(norms, theory)
    assert errors.max() <= TOLERANCE[dtype]
    np.testing.assert_allclose(
        dynamics.expected_gradient_norms(DEPTH, scale), theory, rtol=1e-15
    )


def test_different_seeds_give_different_networks_with_the_same_norms():
    first = dynamics.deep_linear_gradient_norms(depth=5, scale=2.0, seed=0)
    second = dynamics.deep_linear_gradient_norms(depth=5, scale=2.0, seed=1)
    again = dynamics.deep_linear_gradient_norms(depth=5, scale=2.0, seed=0)

    np.testing.assert_allclose(first, second, rtol=1e-5)
    np.testing.assert_array_equal(first, again)


def test_singular_value_vector_bounds_the_norms(rng):
    singular_values = rng.uniform(0.8, 1.25, size=64)

    norms = dynamics.deep_linear_gradient_norms(
        depth=DEPTH, scale=singular_values, dtype="float64"
    )

    steps = DEPTH - np.arange(DEPTH + 1)
    lower = singular_values.min() ** steps
    upper = singular_values.max() ** steps
    assert lower[1] < norms[1] < upper[1]
    assert np.all(norms >= lower * (1 - 1e-12))
    assert np.all(norms <= upper * (1 + 1e-12))
    # The spread is real: not all k^50 for a single k.
    assert upper[1] / lower[1] > 1e7


@pytest.mark.parametrize(
    "scale, match", [(2.0, "overflow"), (0.5, "underflow")]
)
def test_float16_predicts_overflow_and_underflow(scale, match):
    with pytest.warns(dynamics.NumericRangeWarning, match=match):
        norms = dynamics.deep_linear_gradient_norms(
            scale=scale, dtype="float16"
        )

    if scale > 1:
        assert not np.isfinite(norms[0])
    else:
        assert norms[0] == 0.0


def test_float16_warns_before_precision_is_lost_in_subnormals():
    # 0.75^57 ~ 7.6e-8 is above float16's smallest subnormal (6e-8), but
    # its 64 elements (~9e-9) are below the smallest normal (6.1e-5):
    # the measured norm is far off although no element is 0.
    with pytest.warns(dynamics.NumericRangeWarning, match="smallest normal"):
        norms = dynamics.deep_linear_gradient_norms(
            depth=57, scale=0.75, dtype="float16"
        )
    assert norms[0] > 0.0
    assert dynamics.relative_errors(norms[0], 0.75**57) > 0.5


def test_results_out_of_range_are_named_by_layer():
    problems = dynamics._observed_range_problems(
        np.array([np.inf, 0.0, 1.0]), np.ones(4), "float16"
    )

    assert problems == [
        "gradients at layers [0] overflowed to inf or nan in float16",
        "gradients at layers [1] underflowed to 0 in float16",
    ]


def test_float16_in_range_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        norms = dynamics.deep_linear_gradient_norms(
            depth=10, scale=1.0, dtype="float16"
        )
    np.testing.assert_allclose(norms, 1.0, rtol=1e-2)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"depth": 0}, ValueError, "Received: depth=0"),
        ({"depth": 2.5}, TypeError, "Received: depth=2.5"),
        ({"depth": True}, TypeError, "Received: depth=True"),
        ({"width": 0}, ValueError, "Received: width=0"),
        ({"seed": "0"}, TypeError, "Received: seed='0'"),
        ({"scale": np.ones(3)}, ValueError, r"shape \(3,\)"),
        ({"scale": np.ones((64, 64))}, ValueError, r"shape \(64, 64\)"),
        ({"scale": float("nan")}, ValueError, "must be finite"),
        ({"scale": [1.0] * 63 + [np.inf]}, ValueError, "must be finite"),
        ({"scale": "big"}, TypeError, "Received: scale='big'"),
        ({"dtype": "int32"}, ValueError, "Received: dtype='int32'"),
        ({"dtype": "float8"}, ValueError, "Received: dtype='float8'"),
    ],
)
def test_arguments_are_validated(kwargs, error, match):
    with pytest.raises(error, match=match):
        dynamics.deep_linear_gradient_norms(**kwargs)


def test_relative_errors_handle_zero_expectations():
    errors = dynamics.relative_errors([1.0, 0.0, 1.0], [2.0, 0.0, 0.0])

    assert errors.tolist() == [0.5, 0.0, np.inf]


# ---------------------------------------------------------------------------
# Any Keras model.
# ---------------------------------------------------------------------------


def _small_sequential():
    return keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4, activation="tanh", name="hidden"),
            keras.layers.Dense(2, name="head"),
        ]
    )


def test_sequential_norms_match_numpy_backprop_in_float64(rng):
    keras.config.set_dtype_policy("float64")
    model = _small_sequential()
    inputs = rng.standard_normal((5, 3))
    targets = rng.standard_normal((5, 2))

    norms = dynamics.layer_output_gradient_norms(
        model, inputs, targets, loss="mse"
    )

    # The same by hand. Forward: (5, 4) then (5, 2).
    kernel_1, bias_1 = (w.numpy() for w in model.layers[0].weights)
    kernel_2, bias_2 = (w.numpy() for w in model.layers[1].weights)
    hidden = np.tanh(inputs @ kernel_1 + bias_1)
    outputs = hidden @ kernel_2 + bias_2
    # E = mean over the 5 x 2 entries of (y - t)^2.
    d_outputs = 2.0 * (outputs - targets) / outputs.size  # (5, 2)
    d_hidden = d_outputs @ kernel_2.T  # (5, 4)
    d_inputs = (d_hidden * (1.0 - hidden**2)) @ kernel_1.T  # (5, 3)

    assert list(norms) == ["inputs", "hidden", "head"]
    reference = [np.linalg.norm(g) for g in (d_inputs, d_hidden, d_outputs)]
    np.testing.assert_allclose(list(norms.values()), reference, rtol=1e-12)


def test_compiled_loss_and_sum_of_outputs(rng):
    keras.config.set_dtype_policy("float64")
    model = _small_sequential()
    model.compile(optimizer="sgd", loss="mse")
    inputs = rng.standard_normal((5, 3))
    targets = rng.standard_normal((5, 2))

    compiled = dynamics.layer_output_gradient_norms(model, inputs, targets)
    given = dynamics.layer_output_gradient_norms(
        model, inputs, targets, loss=keras.losses.MeanSquaredError()
    )
    summed = dynamics.layer_output_gradient_norms(model, inputs)

    np.testing.assert_allclose(
        list(compiled.values()), list(given.values()), rtol=1e-12
    )
    # E = sum of outputs: dE/dy is all ones, ‖.‖ = sqrt(5 * 2).
    assert summed["head"] == pytest.approx(np.sqrt(10.0), rel=1e-12)


def test_functional_dag_matches_numpy_backprop(rng):
    keras.config.set_dtype_policy("float64")
    # keras.Input follows floatx (float32), not the dtype policy.
    inputs = keras.Input((3,), dtype="float64", name="features")
    left = keras.layers.Dense(4, name="left")(inputs)
    right = keras.layers.Dense(4, name="right")(inputs)
    merged = keras.layers.Add(name="merge")([left, right])
    outputs = keras.layers.Dense(1, name="out")(merged)
    model = keras.Model(inputs, outputs)
    batch = rng.standard_normal((6, 3))

    norms = dynamics.layer_output_gradient_norms(model, batch)

    # E = sum of outputs, so dE/dout = 1 everywhere: (6, 1).
    kernels = {
        name: model.get_layer(name).kernel.numpy()
        for name in ("left", "right", "out")
    }
    d_out = np.ones((6, 1))
    d_merge = d_out @ kernels["out"].T  # (6, 4), = dE/dleft = dE/dright
    d_inputs = d_merge @ kernels["left"].T + d_merge @ kernels["right"].T
    expected = {
        "features": np.linalg.norm(d_inputs),
        "left": np.linalg.norm(d_merge),
        "right": np.linalg.norm(d_merge),
        "merge": np.linalg.norm(d_merge),
        "out": np.linalg.norm(d_out),
    }
    assert sorted(norms) == sorted(expected)
    assert list(norms)[0] == "features" and list(norms)[-1] == "out"
    for name, value in expected.items():
        assert norms[name] == pytest.approx(value, rel=1e-12), name
    # A batch of one example is not mistaken for a list of outputs.
    single = dynamics.layer_output_gradient_norms(model, batch[:1])
    assert single["out"] == pytest.approx(1.0, rel=1e-12)


def test_functional_shared_layers_and_integer_inputs():
    tokens = keras.Input((5,), dtype="int32", name="tokens")
    features = keras.Input((4,), name="features")
    embedded = keras.layers.Embedding(10, 4, name="embed")(tokens)
    pooled = keras.layers.GlobalAveragePooling1D(name="pool")(embedded)
    shared = keras.layers.Dense(4, name="shared")
    merged = keras.layers.Concatenate(name="concat")(
        [shared(pooled), shared(features)]
    )
    model = keras.Model([tokens, features], keras.layers.Dense(2)(merged))
    batch = {
        "tokens": np.arange(10, dtype="int32").reshape(2, 5),
        "features": np.ones((2, 4), dtype="float32"),
    }

    norms = dynamics.layer_output_gradient_norms(model, batch)

    # Integer token ids carry no gradient and are left out.
    assert "tokens" not in norms
    assert {"features", "embed", "shared", "shared:1", "concat"} <= set(norms)
    assert all(np.isfinite(value) and value > 0 for value in norms.values())


def test_unsupported_models_and_loss_arguments_raise():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)

        def call(self, inputs):
            return self.dense(inputs)

    inputs = np.ones((2, 3), dtype="float32")
    with pytest.raises(TypeError, match="model of type Subclassed"):
        dynamics.layer_output_gradient_norms(Subclassed(), inputs)
    with pytest.raises(ValueError, match="Received: targets=None"):
        dynamics.layer_output_gradient_norms(
            _small_sequential(), inputs, loss="mse"
        )
    with pytest.raises(ValueError, match="not compiled with a loss"):
        dynamics.layer_output_gradient_norms(
            _small_sequential(), inputs, targets=np.ones((2, 2))
        )
    with pytest.raises(TypeError, match="Received: loss=3"):
        dynamics.layer_output_gradient_norms(
            _small_sequential(), inputs, targets=np.ones((2, 2)), loss=3
        )


# ---------------------------------------------------------------------------
# During training.
# ---------------------------------------------------------------------------


def _deep_linear_keras_model(depth, gain):
    # Every kernel is `gain` times an orthogonal matrix: the Keras twin of
    # the experiment above, so first/last = gain ** depth exactly.
    layers = [keras.Input((8,))]
    for index in range(depth):
        layers.append(
            keras.layers.Dense(
                8,
                use_bias=False,
                kernel_initializer=keras.initializers.Orthogonal(
                    gain=gain, seed=index
                ),
                name=f"linear_{index}",
            )
        )
    return keras.Sequential(layers)


def _event_tags(log_dir):
    tags = set()
    for name in os.listdir(log_dir):
        path = os.path.join(log_dir, name)
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    return tags


def test_monitor_records_history_and_tensorboard(tmp_path, caplog, rng):
    model = _deep_linear_keras_model(depth=10, gain=2.0)
    # Learning rate 0 keeps the weights, hence the ratio, exact.
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    inputs = rng.standard_normal((32, 8)).astype("float32")
    targets = rng.standard_normal((32, 8)).astype("float32")
    monitor = dynamics.GradientNormMonitor(
        sample=(inputs[:8], targets[:8]),
        every_n_batches=2,
        log_dir=tmp_path / "logs",
        ratio_threshold=100.0,
    )

    with caplog.at_level(logging.INFO, logger="kerasdl.dynamics"):
        model.fit(
            inputs, targets, batch_size=8, epochs=2, verbose=0,
            callbacks=[monitor],
        )  # fmt: skip

    # 4 batches per epoch, measured every 2nd: steps 2, 4, 6, 8.
    assert [r["step"] for r in monitor.history] == [2, 4, 6, 8]
    assert [r["epoch"] for r in monitor.history] == [0, 0, 1, 1]
    record = monitor.history[-1]
    assert list(record["norms"]) == ["inputs"] + [
        f"linear_{index}" for index in range(10)
    ]
    assert record["ratio"] == pytest.approx(2.0**10, rel=1e-4)
    assert "Exploding gradients" in caplog.text
    assert "gradient norms inputs=" in caplog.text

    tags = _event_tags(tmp_path / "logs")
    assert "grad_norm/linear_0" in tags
    assert "grad_norm/inputs" in tags
    assert "grad_norm_ratio/first_over_last" in tags


def test_monitor_per_epoch_from_a_dataset_and_vanishing(caplog, rng):
    model = _deep_linear_keras_model(depth=4, gain=0.1)
    model.compile(optimizer="sgd", loss="mse")
    inputs = rng.standard_normal((16, 8)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((inputs, inputs)).batch(4)
    monitor = dynamics.GradientNormMonitor(sample=dataset)

    with caplog.at_level(logging.WARNING, logger="kerasdl.dynamics"):
        model.fit(
            dataset, epochs=3, shuffle=False, verbose=0, callbacks=[monitor]
        )

    assert [r["epoch"] for r in monitor.history] == [0, 1, 2]
    assert monitor.history[0]["ratio"] == pytest.approx(1e-4, rel=1e-2)
    assert "Vanishing gradients" in caplog.text


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"every_n_batches": 0}, "Received: every_n_batches=0"),
        ({"ratio_threshold": 1.0}, "Received: ratio_threshold=1.0"),
        ({"sample": (1, 2, 3)}, "sample of length 3"),
    ],
)
def test_monitor_validates_arguments(kwargs, match):
    arguments = {"sample": (np.ones((2, 3)), np.ones((2, 1))), **kwargs}
    with pytest.raises(ValueError, match=match):
        dynamics.GradientNormMonitor(**arguments)


# ---------------------------------------------------------------------------
# The plot and the command line.
# ---------------------------------------------------------------------------


def test_plot_writes_a_png_atomically(tmp_path):
    results = {
        f"k = {k:g}": dynamics.deep_linear_gradient_norms(depth=10, scale=k)
        for k in (0.5, 1.0, 2.0)
    }
    expected = {
        label: dynamics.expected_gradient_norms(10, k)
        for label, k in zip(results, (0.5, 1.0, 2.0))
    }
    path = tmp_path / "plots" / "norms.png"

    returned = dynamics.plot_gradient_norms(results, path, expected=expected)

    assert returned == str(path)
    with open(path, "rb") as file:
        assert file.read(8) == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000
    # No temporary file is left beside it.
    assert os.listdir(path.parent) == ["norms.png"]


@pytest.mark.parametrize(
    "results, path, expected, error, match",
    [
        ({}, "a.png", None, ValueError, "must not be empty"),
        ({"a": [1.0]}, "a.pdf", None, ValueError, r"a\.pdf"),
        ({"a": [1.0]}, "a.png", {"b": [1.0]}, ValueError, r"\['b'\]"),
        ({"a": np.ones((2, 2))}, "a.png", None, ValueError, r"\(2, 2\)"),
        ([1.0], "a.png", None, TypeError, "Received: results="),
    ],
)
def test_plot_validates_arguments(
    tmp_path, results, path, expected, error, match
):
    with pytest.raises(error, match=match):
        dynamics.plot_gradient_norms(
            results, tmp_path / path, expected=expected
        )


def test_cli_prints_the_table_and_saves_the_plot(tmp_path, capsys):
    output = tmp_path / "vanishing_exploding.png"

    status = kerasdl.cli.main(["dynamics", "--output", str(output)])

    printed = capsys.readouterr().out
    assert status == 0
    assert output.is_file()
    assert "|k|^50" in printed
    assert "8.8818e-16" in printed  # 2^-50
    assert "1.1259e+15" in printed  # 2^50
    assert f"plot: {output}" in printed
    rows = [line.split() for line in printed.splitlines()[1:4]]
    assert [row[0] for row in rows] == ["0.5", "1", "2"]
    # Relative errors of g[1] and over all layers, within budget.
    assert all(float(row[-2]) <= 1e-5 for row in rows)
    assert all(float(row[-1]) <= 1e-5 for row in rows)


def test_cli_reports_bad_arguments(tmp_path, capsys):
    status = kerasdl.cli.main(
        ["dynamics", "--width", "0", "--output", str(tmp_path / "x.png")]
    )

    assert status == 2
    assert "Received: width=0" in capsys.readouterr().err


def test_compiled_crossentropy_reaches_the_softmax_output():
    # Keras' crossentropy reads the logits it caches on a softmax output;
    # the measured gradient must still be taken on the probabilities.
    # Keras' loss on probabilities is E = mean_i -log(p[i, y_i] / sum_j
    # p[i, j]), so dE/dp[i, j] = (1 - [j = y_i] / p[i, y_i]) / batch.
    inputs = keras.Input((3,))
    logits = keras.layers.Dense(4, name="logits")(inputs)
    outputs = keras.layers.Activation("softmax", name="softmax")(logits)
    model = keras.Model(inputs, outputs)
    model.compile(loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    y = np.array([0, 1, 2, 3, 0])

    norms = dynamics.layer_output_gradient_norms(model, x, y)

    probabilities = model.predict_on_batch(x).astype(np.float64)
    picked = probabilities[np.arange(5), y]
    expected = np.sqrt(np.sum((1.0 - 1.0 / picked) ** 2 + 3.0)) / 5
    np.testing.assert_allclose(norms["softmax"], expected, rtol=1e-4)
