"""Vanishing and exploding gradients, measured with `tf.GradientTape`.

The classic experiment: a deep *linear* network whose `depth` layers share
one square weight `W = U diag(sigma) V^T`. Backpropagation multiplies the
gradient by `W^T` once per layer, so with `sigma = k` everywhere the
gradient norm at layer `l` is exactly `|k| ** (depth - l)`: it stays at 1
for `k = 1`, vanishes like `2 ** -50` for `k = 1/2` and explodes like
`2 ** 50` for `k = 2` fifty layers below the output.
`deep_linear_gradient_norms` measures this with autodiff (it never uses the
formula) and `plot_gradient_norms` draws it.

The same measurement works on Sequential and functional Keras models
(`layer_output_gradient_norms`) and during training (`GradientNormMonitor`,
a Keras callback that also writes TensorBoard summaries).

This module is built on `tf.GradientTape`, so `kerasdl` imports it only on
first use, and the Keras-model tools need `KERAS_BACKEND=tensorflow`.
"""

import collections
import collections.abc
import logging
import math
import os
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf

logger = logging.getLogger(__name__)

DTYPES = ("float16", "float32", "float64")


class NumericRangeWarning(RuntimeWarning):
    """A dtype cannot hold the gradients: they overflow, or fall below its
    smallest normal number, lose precision and flush to zero."""


# ---------------------------------------------------------------------------
# Argument checks.
# ---------------------------------------------------------------------------


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"`{name}` must be an integer. Received: {name}={value!r}"
        )
    if value < 1:
        raise ValueError(
            f"`{name}` must be at least 1. Received: {name}={value!r}"
        )


def _check_dtype(dtype):
    """Returns the name of `dtype` if it is one of `DTYPES`."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise ValueError(
            f"`dtype` must be one of {DTYPES}. Received: dtype={dtype!r}"
        )
    return name


def _singular_values(scale, width):
    """Returns the `(width,)` float64 singular values that `scale` means.

    A scalar `k` stands for `k * ones(width)`; a vector must hold exactly
    one value per singular value.
    """
    try:
        values = np.asarray(scale, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            "`scale` must be a number or a vector of numbers. "
            f"Received: scale={scale!r}"
        ) from None
    if values.ndim == 0:
        values = np.full((width,), float(values))
    elif values.shape != (width,):
        raise ValueError(
            "`scale` must be a scalar or a vector of `width` singular "
            f"values, i.e. of shape ({width},). Received: scale with shape "
            f"{values.shape}"
        )
    if not np.all(np.isfinite(values)):
        raise ValueError(f"`scale` must be finite. Received: scale={scale!r}")
    return values


# ---------------------------------------------------------------------------
# The deep linear network.
# ---------------------------------------------------------------------------


def _random_orthogonal(rng, width):
    """Returns a random `(width, width)` orthogonal matrix in float64.

    The Q of a Gaussian matrix's QR decomposition is orthogonal; flipping
    each column by the sign of R's diagonal makes it uniformly (Haar)
    distributed rather than biased by the QR routine's sign convention
    (Mezzadri 2007, "How to generate random matrices from the classical
    compact groups"). Built in float64, so that once cast to float32 it is
    orthogonal to float32 precision: `|Q^T Q - I| ~ 1e-7`.
    """
    q, r = np.linalg.qr(rng.standard_normal((width, width)))
    return q * np.where(np.diag(r) < 0.0, -1.0, 1.0)


def _unit_vector(rng, width):
    vector = rng.standard_normal(width)
    return vector / np.linalg.norm(vector)


def _power_text(base, depth):
    """`base ** depth` as text, even where float64 would overflow."""
    exponent = depth * math.log10(base)
    if abs(exponent) < 300:
        return f"{base:g}**{depth} = {base**depth:.3g}"
    return f"{base:g}**{depth} = 10**{exponent:.1f}"


def _predicted_range_problems(singular_values, depth, dtype):
    """Says what of the gradients `dtype` cannot hold, from `|sigma|`.

    The gradient norm after m <= depth layers lies between
    `min|sigma| ** m` and `max|sigma| ** m`, and its `width` elements are
    about `norm / sqrt(width)` each. Compared in logarithms so that the
    check itself cannot overflow float64.
    """
    info = np.finfo(dtype)
    magnitudes = np.abs(singular_values)
    problems = []

    largest = magnitudes.max()
    if largest > 1.0 and depth * math.log(largest) > math.log(info.max):
        problems.append(
            f"overflow: {_power_text(largest, depth)} exceeds the largest "
            f"finite {dtype}, {float(info.max):.6g}"
        )

    # Below the smallest *normal* number (float16: 6.1e-5) an element
    # keeps fewer significant bits the smaller it gets, then flushes to
    # zero: at 0.75 ** 57 in float16 the measured norm is already 2.5
    # times too large, before any element reaches 0.
    positive = magnitudes[magnitudes > 0.0]
    width = len(magnitudes)
    smallest_normal = float(info.tiny)
    if positive.size:
        log_element = depth * math.log(positive.min()) - 0.5 * math.log(width)
        if log_element < math.log(smallest_normal):
            problems.append(
                f"underflow: {_power_text(positive.min(), depth)} spread "
                f"over {width} elements puts them below the smallest normal "
                f"{dtype}, {smallest_normal:.3g}, where they lose precision "
                "and then flush to zero"
            )
    return problems


def _observed_range_problems(norms, singular_values, dtype):
    """Says which measured norms came out infinite or flushed to zero."""
    problems = []
    if not np.all(np.isfinite(norms)):
        layers = np.flatnonzero(~np.isfinite(norms)).tolist()
        problems.append(
            f"gradients at layers {layers} overflowed to inf or nan in {dtype}"
        )
    # With every singular value non-zero, W is invertible and no gradient
    # can be exactly zero: a zero norm is an underflow.
    if np.all(singular_values != 0.0) and np.any(norms == 0.0):
        layers = np.flatnonzero(norms == 0.0).tolist()
        problems.append(
            f"gradients at layers {layers} underflowed to 0 in {dtype}"
        )
    return problems


def _backpropagate(weight, inputs, direction, depth, dtype):
    """Runs h_l = W h_{l-1} for `depth` layers and returns dE/dh_l for
    l = 0..depth as NumPy arrays, with E = <h_depth, direction>."""
    # On the CPU: GPUs may run float32 matmuls in TensorFloat-32 (10-bit
    # mantissa), which would swamp the 1e-7 effects this experiment
    # resolves; vectors of 64 are faster on the CPU anyway.
    with tf.device("/CPU:0"):
        weight = tf.constant(weight, dtype=dtype)  # (width, width)
        direction = tf.constant(direction, dtype=dtype)  # (width,)
        hidden = tf.constant(inputs, dtype=dtype)  # h_0 = x, (width,)
        activations = [hidden]
        with tf.GradientTape() as tape:
            tape.watch(hidden)
            for _ in range(depth):
                hidden = tf.linalg.matvec(weight, hidden)  # (width,)
                tape.watch(hidden)
                activations.append(hidden)
            energy = tf.reduce_sum(hidden * direction)  # E = <y, v>
        gradients = tape.gradient(energy, activations)
    return [gradient.numpy() for gradient in gradients]


def deep_linear_gradient_norms(
    depth=51, width=64, scale=1.0, seed=0, dtype="float32"
):
    """Measures ‖dE/dh_l‖ through a deep linear network with one shared W.

    The network has `depth` layers `h_l = W h_{l-1}` (`h_0 = x`) that share
    one `(width, width)` weight `W = U diag(sigma) V^T`, with `U`, `V`
    random orthogonal matrices. The error is `E = <y, v>` with `y =
    h_depth` and `v` a random unit vector, so `dE/dy = v` has norm 1 and
    `dE/dh_l = (W^T) ** (depth - l) v`. The gradients are computed by
    `tf.GradientTape` on the intermediate activations (not by formula); in
    theory `‖dE/dh_l‖ = |k| ** (depth - l)` when `sigma = k` everywhere,
    and lies between `min sigma ** (depth - l)` and
    `max sigma ** (depth - l)` otherwise.

    `U`, `V`, `x` and `v` are drawn in float64 from `seed`; the matrix
    products run in `dtype`, on the CPU. In float32 the measured norms
    match the theory to a relative error below 1e-6 after 50 layers
    (4.6e-7 at worst over 20 seeds; 4e-15 in float64).

    Args:
        depth: Number of layers, at least 1.
        width: Number of units of every layer, at least 1.
        scale: The singular values of `W`: a number `k` (all equal to
            `k`, so `W` is `k` times an orthogonal matrix) or a vector of
            `width` finite values.
        seed: Integer seed of `U`, `V`, `x` and `v`.
        dtype: One of `DTYPES`, the precision of the forward and backward
            passes.

    Returns:
        A float64 array `g` of shape `(depth + 1,)` with
        `g[l] = ‖dE/dh_l‖_2` for `l = 0..depth`; `g[depth] = ‖v‖ = 1` up
        to rounding.

    Raises:
        TypeError: If `depth`, `width` or `seed` is not an integer, or
            `scale` is not numeric.
        ValueError: If `depth` or `width` is below 1, `scale` has the
            wrong length or a non-finite value, or `dtype` is unknown.

    Warns:
        NumericRangeWarning: If `dtype` cannot hold the gradients
            (float16 overflows at `2 ** 50 > 65504` and loses `2 ** -50`
            below its smallest normal number, 6.1e-5), predicted from
            `|sigma| ** depth` before running, or else seen as inf, nan or
            0 in the result.

    Example:

    >>> g = deep_linear_gradient_norms(depth=51, scale=0.5)
    >>> bool(abs(g[1] / 2.0**-50 - 1.0) < 1e-5)
    True
    """
    _check_positive_int(depth, "depth")
    _check_positive_int(width, "width")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"`seed` must be an integer. Received: seed={seed!r}")
    dtype = _check_dtype(dtype)
    singular_values = _singular_values(scale, width)

    predicted = _predicted_range_problems(singular_values, depth, dtype)
    if predicted:
        warnings.warn(
            f"{dtype} cannot hold these gradients: " + "; ".join(predicted),
            NumericRangeWarning,
            stacklevel=2,
        )

    rng = np.random.default_rng(seed)
    left = _random_orthogonal(rng, width)  # U
    right = _random_orthogonal(rng, width)  # V
    weight = (left * singular_values) @ right.T  # U diag(sigma) V^T
    inputs = _unit_vector(rng, width)  # x
    direction = _unit_vector(rng, width)  # v = dE/dy
    gradients = _backpropagate(weight, inputs, direction, depth, dtype)

    # Norms in float64: squaring a float16 gradient of 300 already
    # overflows float16.
    norms = np.array(
        [np.linalg.norm(gradient.astype(np.float64)) for gradient in gradients]
    )
    observed = _observed_range_problems(norms, singular_values, dtype)
    if observed and not predicted:
        warnings.warn("; ".join(observed), NumericRangeWarning, stacklevel=2)
    logger.info(
        "depth=%d width=%d dtype=%s: g[0]=%.6g g[depth]=%.6g",
        depth,
        width,
        dtype,
        norms[0],
        norms[-1],
    )
    return norms


def expected_gradient_norms(depth, scale):
    """Returns the theory `|k| ** (depth - l)` for `l = 0..depth`.

    Args:
        depth: Number of layers, at least 1.
        scale: The number `k`, the common singular value of `W`.

    Returns:
        A float64 array of shape `(depth + 1,)`; `inf` where float64
        overflows.

    Raises:
        TypeError: If `depth` is not an integer.
        ValueError: If `depth` is below 1.

    Example:

    >>> expected_gradient_norms(3, 2.0).tolist()
    [8.0, 4.0, 2.0, 1.0]
    """
    _check_positive_int(depth, "depth")
    exponents = np.arange(depth, -1, -1, dtype=np.float64)  # depth - l
    with np.errstate(over="ignore"):
        return np.power(abs(float(scale)), exponents)


def relative_errors(measured, expected):
    """Returns `|measured - expected| / expected`, elementwise.

    Where `expected` is 0 the error is 0 if `measured` is 0 too, else inf.

    Args:
        measured: Array of measured values.
        expected: Array of the same shape with the theoretical values.

    Returns:
        A float64 array of the same shape.

    Example:

    >>> relative_errors([1.0, 0.0], [2.0, 0.0]).tolist()
    [0.5, 0.0]
    """
    measured = np.asarray(measured, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    difference = np.abs(measured - expected)
    with np.errstate(divide="ignore", invalid="ignore"):
        errors = difference / np.abs(expected)
    at_zero = np.where(difference == 0.0, 0.0, np.inf)
    return np.where(expected == 0.0, at_zero, errors)


# ---------------------------------------------------------------------------
# Any Keras model.
# ---------------------------------------------------------------------------


def _check_tensorflow_backend():
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "Measuring layer output gradients uses tf.GradientTape and "
            "needs the TensorFlow backend; set KERAS_BACKEND=tensorflow "
            f"before importing Keras. Received: backend="
            f"{keras.backend.backend()!r}"
        )


def _is_functional(model):
    # `_standardize_inputs` and `_run_through_graph` are Keras internals of
    # functional models (keras.Model(inputs, outputs)); there is no public
    # way to run a functional graph node by node.
    return hasattr(model, "_run_through_graph") and hasattr(
        model, "_standardize_inputs"
    )


def _check_model(model):
    if isinstance(model, keras.Sequential) or _is_functional(model):
        return
    raise TypeError(
        "`model` must be a keras.Sequential or a functional keras.Model "
        "(built as keras.Model(inputs, outputs)); subclassed models hide "
        "their layer graph inside `call`. Received: "
        f"model of type {type(model).__name__}"
    )


def _floating_tensors(outputs):
    return [
        tensor
        for tensor in tf.nest.flatten(outputs)
        if tf.is_tensor(tensor) and tensor.dtype.is_floating
    ]


class _Recorder:
    """Watches the tensors each layer outputs, keyed by the layer's name.

    A layer called twice (shared weights) gets `name`, then `name:1`, ...
    Outputs without a floating dtype (token ids) carry no gradient and are
    skipped.
    """

    def __init__(self, tape):
        self.tape = tape
        self.tensors = collections.OrderedDict()

    def record(self, name, outputs):
        tensors = _floating_tensors(outputs)
        if not tensors:
            return
        key, count = name, 0
        while key in self.tensors:
            count += 1
            key = f"{name}:{count}"
        for tensor in tensors:
            self.tape.watch(tensor)
        self.tensors[key] = tensors


def _run_sequential(model, inputs, recorder, training):
    hidden = tf.convert_to_tensor(inputs)
    if hidden.dtype.is_floating:
        hidden = tf.cast(hidden, model.compute_dtype)
    recorder.record("inputs", hidden)
    for layer in model.layers:
        hidden = layer(hidden, training=training)
        recorder.record(layer.name, hidden)
    return hidden


def _run_functional(model, inputs, recorder, training):
    flat_inputs = model._standardize_inputs(inputs)
    input_names = {
        id(layer.output): layer.name
        for layer in model.layers
        if isinstance(layer, keras.layers.InputLayer)
    }
    for index, (symbolic, tensor) in enumerate(zip(model.inputs, flat_inputs)):
        recorder.record(
            input_names.get(id(symbolic), f"inputs:{index}"), tensor
        )

    def operation_fn(operation):
        def call(*args, **kwargs):
            is_layer = isinstance(operation, keras.layers.Layer)
            if is_layer:
                kwargs["training"] = training
            outputs = operation(*args, **kwargs)
            if is_layer:
                recorder.record(operation.name, outputs)
            return outputs

        return call

    # The returned tensors are the very ones the recorder watched, so the
    # tape sees every path from each layer output to E.
    outputs = model._run_through_graph(flat_inputs, operation_fn=operation_fn)
    # A one-element list of outputs stands for the tensor itself, as in
    # `model(inputs)`.
    if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
        return outputs[0]
    return outputs


def _without_cached_logits(outputs):
    """Copies `outputs` so a loss cannot bypass the final softmax.

    On TensorFlow, Keras caches the logits on a softmax's output tensor and
    its crossentropy reads them instead of the probabilities, so no
    gradient would reach the softmax layer's output. A copy carries no
    cache: the loss is then taken on the probabilities, as the maths says.
    """
    return tf.nest.map_structure(tf.identity, outputs)


def _resolve_loss(model, targets, loss):
    """Returns `E(inputs, outputs)` as a function, from the arguments."""
    if loss is not None:
        if targets is None:
            raise ValueError(
                "`targets` are needed to evaluate a `loss`. Received: "
                f"targets=None, loss={loss!r}"
            )
        function = keras.losses.get(loss) if isinstance(loss, str) else loss
        if not callable(function):
            raise TypeError(
                "`loss` must be a loss name or a callable "
                f"loss(y_true, y_pred). Received: loss={loss!r}"
            )
        # A per-example loss (e.g. keras.losses.mean_squared_error) is
        # averaged, as Keras does with reduction="sum_over_batch_size".
        return lambda inputs, outputs: tf.reduce_mean(
            function(targets, _without_cached_logits(outputs))
        )
    if targets is not None:
        if getattr(model, "loss", None) is None:
            raise ValueError(
                "`targets` were given but `model` was not compiled with a "
                "loss; pass `loss=` or compile the model. Received: "
                "loss=None"
            )
        # TODO: for a model with several outputs, Keras' compiled loss
        # also updates its per-output loss metrics, so measuring between
        # batches nudges the per-output losses that `fit` reports; a
        # side-effect-free compiled loss has no public API yet.
        return lambda inputs, outputs: model.compute_loss(
            x=inputs, y=targets, y_pred=_without_cached_logits(outputs)
        )
    return lambda inputs, outputs: tf.add_n(
        [tf.reduce_sum(tensor) for tensor in _floating_tensors(outputs)]
    )


def _global_norm(gradients):
    """‖g‖_2 over several tensors, in float64 so it cannot overflow."""
    squares = sum(
        float(np.sum(np.square(gradient.numpy().astype(np.float64))))
        for gradient in gradients
    )
    return math.sqrt(squares)


def layer_output_gradient_norms(
    model, inputs, targets=None, loss=None, training=False
):
    """Measures ‖dE/d(layer output)‖_2 for every layer of a Keras model.

    The forward pass is re-run layer by layer under a `tf.GradientTape`
    that watches each layer's output, then the tape differentiates `E`
    with respect to all of them at once. `E` is `loss(targets, outputs)`
    if a `loss` is given, else the model's compiled loss (plus its
    regularization losses) if `targets` are given, else the sum of all
    outputs.

    Supported models: `keras.Sequential`, and functional models
    (`keras.Model(inputs, outputs)`) of any graph shape, including
    branches, merges, several inputs or outputs and shared layers (a
    layer called twice appears as `name` and `name:1`). A nested model
    counts as one layer. Subclassed models are not supported: their layer
    graph only exists inside `call`. Needs the TensorFlow backend.

    Args:
        model: A built or buildable `keras.Sequential` or functional
            `keras.Model`.
        inputs: A batch of inputs, as `model(inputs)` takes them.
        targets: Optional batch of targets for the loss.
        loss: Optional loss name (`"mse"`) or callable
            `loss(y_true, y_pred)`; a per-example result is averaged.
        training: Passed to every layer call (`False`: dropout off, batch
            normalization uses its moving statistics).

    Returns:
        An ordered dict, in forward order: the model's floating inputs
        (key `"inputs"` for a Sequential, the input layer's name for a
        functional model), then each layer's name, mapped to the float
        gradient norm. Layers whose output does not reach `E` get 0.0.

    Raises:
        TypeError: If `model` is not Sequential or functional, or `loss`
            is not callable.
        ValueError: If `loss` is given without `targets`, or `targets`
            without a loss to use them.
        RuntimeError: If Keras does not run on TensorFlow.

    Example:

    >>> model = keras.Sequential(
    ...     [keras.Input((3,)), keras.layers.Dense(2, name="head")]
    ... )
    >>> norms = layer_output_gradient_norms(model, np.ones((4, 3)))
    >>> list(norms)
    ['inputs', 'head']
    >>> round(norms["head"], 4)  # E = sum of outputs: sqrt(4 * 2)
    2.8284
    """
    _check_tensorflow_backend()
    _check_model(model)
    energy_fn = _resolve_loss(model, targets, loss)
    if isinstance(model, keras.Sequential):
        run = _run_sequential
    else:
        run = _run_functional

    with tf.GradientTape() as tape:
        recorder = _Recorder(tape)
        outputs = run(model, inputs, recorder, training)
        energy = energy_fn(inputs, outputs)

    names = list(recorder.tensors)
    flat = [tensor for name in names for tensor in recorder.tensors[name]]
    gradients = tape.gradient(
        energy, flat, unconnected_gradients=tf.UnconnectedGradients.ZERO
    )
    norms = collections.OrderedDict()
    start = 0
    for name in names:
        stop = start + len(recorder.tensors[name])
        norms[name] = _global_norm(gradients[start:stop])
        start = stop
    return norms


# ---------------------------------------------------------------------------
# During training.
# ---------------------------------------------------------------------------


def _sample_batch(sample):
    """Returns `(inputs, targets)` from `(x, y)`, `(x,)`, `x` or a
    `tf.data.Dataset` (its first batch)."""
    if isinstance(sample, tf.data.Dataset):
        sample = next(iter(sample))
    if isinstance(sample, (tuple, list)) and len(sample) in (1, 2):
        return sample[0], (sample[1] if len(sample) == 2 else None)
    if isinstance(sample, (tuple, list)):
        raise ValueError(
            "`sample` must be (inputs, targets), (inputs,) or inputs. "
            f"Received: sample of length {len(sample)}"
        )
    return sample, None


def _first_over_last(norms):
    """The vanishing/exploding indicator: ‖dE/d first‖ / ‖dE/d last‖."""
    values = list(norms.values())
    first, last = values[0], values[-1]
    if last > 0.0:
        return first / last
    return math.inf if first > 0.0 else math.nan


def _summary_name(name):
    # TensorBoard tag characters: `:` (shared layers, "dense:1") is not
    # allowed in TensorFlow names.
    return "grad_norm/" + name.replace(":", "_")


class GradientNormMonitor(keras.callbacks.Callback):
    """Tracks per-layer output gradient norms during `fit`.

    Every `every_n_batches` training batches (or at the end of every epoch
    when `every_n_batches` is `None`) it measures
    `layer_output_gradient_norms` on one fixed batch, logs them at INFO
    level, appends them to `history` and, if `log_dir` is given, writes
    one TensorBoard scalar per layer (`grad_norm/<layer>`) plus the ratio
    (`grad_norm_ratio/first_over_last`).

    The ratio ‖dE/d first‖ / ‖dE/d last‖ between the first entry (the
    inputs, or the first layer where the inputs are integer) and the last
    layer's output is the vanishing/exploding indicator: it is
    `|k| ** depth` for the deep linear network. When it leaves
    `[1 / ratio_threshold, ratio_threshold]` the monitor logs a *warning*
    through `logging` (not `warnings.warn`, so that a test suite that
    turns warnings into errors does not stop training at the first bad
    batch).

    Keras 3 does not hand validation data to callbacks, so the batch is
    given as `sample`; pass a validation `tf.data.Dataset` to use its
    first batch.

    Args:
        sample: The fixed batch: `(inputs, targets)`, `(inputs,)`,
            `inputs`, or a `tf.data.Dataset` whose first batch is used.
            With targets, `E` is the compiled loss (or `loss`); without,
            the sum of the outputs.
        every_n_batches: Measure every this many training batches
            (counted across epochs), or `None` to measure once per epoch.
        log_dir: Optional folder for TensorBoard event files.
        ratio_threshold: Warn when the first/last ratio exceeds this or
            falls below its inverse; greater than 1.
        loss: Optional loss for `layer_output_gradient_norms`, used
            instead of the compiled one.

    Attributes:
        history: A list of dicts, one per measurement, with keys `"epoch"`
            (0-based), `"step"` (training batches seen so far), `"norms"`
            (layer name to norm) and `"ratio"` (first over last).

    Raises:
        ValueError: If `every_n_batches` is not a positive integer or
            `None`, or `ratio_threshold` is not above 1.

    Example:

    >>> x = np.random.rand(32, 4).astype("float32")
    >>> y = np.random.rand(32, 1).astype("float32")
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> monitor = GradientNormMonitor(sample=(x[:8], y[:8]))
    >>> _ = model.fit(x, y, epochs=2, verbose=0, callbacks=[monitor])
    >>> len(monitor.history)
    2
    """

    def __init__(
        self,
        sample,
        every_n_batches=None,
        log_dir=None,
        ratio_threshold=1e3,
        loss=None,
    ):
        super().__init__()
        if every_n_batches is not None:
            _check_positive_int(every_n_batches, "every_n_batches")
        if not ratio_threshold > 1.0:
            raise ValueError(
                "`ratio_threshold` must be greater than 1. Received: "
                f"ratio_threshold={ratio_threshold!r}"
            )
        self.inputs, self.targets = _sample_batch(sample)
        self.every_n_batches = every_n_batches
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.ratio_threshold = float(ratio_threshold)
        self.loss = loss
        self.history = []
        self._writer = None
        self._step = 0
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self._step = 0
        if self.log_dir is not None:
            self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self.every_n_batches and self._step % self.every_n_batches == 0:
            self.measure()

    def on_epoch_end(self, epoch, logs=None):
        if self.every_n_batches is None:
            self.measure()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def measure(self):
        """Measures, records, logs and writes the norms once; returns the
        new `history` entry."""
        norms = layer_output_gradient_norms(
            self.model, self.inputs, self.targets, loss=self.loss
        )
        ratio = _first_over_last(norms)
        record = {
            "epoch": self._epoch,
            "step": self._step,
            "norms": dict(norms),
            "ratio": ratio,
        }
        self.history.append(record)
        self._log(record)
        self._write_summaries(record)
        return record

    def _log(self, record):
        listing = ", ".join(
            f"{name}={value:.3g}" for name, value in record["norms"].items()
        )
        logger.info(
            "epoch %d step %d: gradient norms %s; first/last=%.3g",
            record["epoch"],
            record["step"],
            listing,
            record["ratio"],
        )
        ratio = record["ratio"]
        if ratio > self.ratio_threshold:
            logger.warning(
                "Exploding gradients at epoch %d step %d: the first "
                "layer's gradient is %.3g times the last one's (threshold "
                "%.3g).",
                record["epoch"],
                record["step"],
                ratio,
                self.ratio_threshold,
            )
        elif ratio < 1.0 / self.ratio_threshold:
            logger.warning(
                "Vanishing gradients at epoch %d step %d: the first "
                "layer's gradient is %.3g times the last one's (threshold "
                "1/%.3g).",
                record["epoch"],
                record["step"],
                ratio,
                self.ratio_threshold,
            )

    def _write_summaries(self, record):
        if self._writer is None:
            return
        with self._writer.as_default(step=record["step"]):
            for name, value in record["norms"].items():
                tf.summary.scalar(_summary_name(name), value)
            tf.summary.scalar(
                "grad_norm_ratio/first_over_last", record["ratio"]
            )
        self._writer.flush()


# ---------------------------------------------------------------------------
# The plot.
# ---------------------------------------------------------------------------


def _check_png_path(path):
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(
            f"`path` must be a str or os.PathLike. Received: path={path!r}"
        ) from None
    if not str(path).lower().endswith(".png"):
        raise ValueError(
            f"`path` must end with `.png`. Received: path={path!r}"
        )
    return path


def _save_atomically(figure, path):
    """Writes the PNG to a temporary file beside `path`, then renames it,
    so a reader never sees a half-written image."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=folder, prefix=".tmp-", suffix=".png"
    )
    os.close(handle)
    try:
        figure.savefig(temporary, format="png", dpi=150)
        # mkstemp makes the file private (0600); give it the permissions
        # an ordinary `open(path, "w")` would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        os.remove(temporary)
        raise


def plot_gradient_norms(
    results, path, expected=None, title=None, expected_label="theory"
):
    """Plots gradient norm against layer on a log scale and saves a PNG.

    Each measured curve is drawn as dots; its theoretical curve, if given
    in `expected` under the same label, as a dashed line in the same
    colour. Uses matplotlib's Agg renderer directly (no display, no
    change to pyplot's global backend) and writes atomically.

    Args:
        results: Mapping from a label (e.g. `"k = 0.5"`) to a 1-D array
            `g` with `g[l]` the gradient norm at layer `l`.
        path: Where to write the PNG; must end with `.png`. Missing
            folders are created.
        expected: Optional mapping from some of the same labels to the
            theoretical norms, e.g. `expected_gradient_norms(depth, k)`.
        title: Optional title; by default it names the depth.
        expected_label: Legend text of the dashed theory lines (matplotlib
            mathtext such as `"$|k|^{51-l}$"` is allowed).

    Returns:
        `path`, as a string.

    Raises:
        TypeError: If `results` or `expected` is not a mapping, or `path`
            is not a path.
        ValueError: If `results` is empty, a curve is not 1-D, an
            `expected` label is not in `results`, or `path` does not end
            with `.png`.

    Example:

    >>> results = {"k = 2": deep_linear_gradient_norms(depth=5, scale=2)}
    >>> plot_gradient_norms(results, "/tmp/norms.png")
    '/tmp/norms.png'
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    path = _check_png_path(path)
    expected = {} if expected is None else expected
    for name, value in (("results", results), ("expected", expected)):
        if not isinstance(value, collections.abc.Mapping):
            raise TypeError(
                f"`{name}` must be a mapping from label to array. "
                f"Received: {name}={value!r}"
            )
    if not results:
        raise ValueError("`results` must not be empty. Received: results={}")
    unknown = sorted(map(str, set(expected) - set(results)))
    if unknown:
        raise ValueError(
            "Every label of `expected` must be a label of `results`. "
            f"Received: expected labels {unknown} not in results"
        )

    figure = Figure(figsize=(7.5, 4.8), layout="constrained")
    axes = figure.add_subplot()
    depth = 0
    for index, (label, values) in enumerate(results.items()):
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 1:
            raise ValueError(
                "Every curve in `results` must be 1-D. Received: "
                f"results[{label!r}] with shape {values.shape}"
            )
        depth = max(depth, len(values) - 1)
        colour = f"C{index}"
        layers = np.arange(len(values))
        axes.plot(
            layers, values, "o", color=colour, markersize=3.5, label=label
        )
        if label in expected:
            theory = np.asarray(expected[label], dtype=np.float64)
            axes.plot(np.arange(len(theory)), theory, "--", color=colour)

    axes.set_yscale("log", nonpositive="mask")
    axes.set_xlabel(f"layer $l$ (0 = input, {depth} = output)")
    axes.set_ylabel(r"gradient norm $\|\partial E / \partial h_l\|_2$")
    axes.set_title(title or f"Gradient norm through {depth} layers")
    axes.grid(True, which="major", alpha=0.3)
    handles, _ = axes.get_legend_handles_labels()
    if expected:
        handles.append(
            Line2D([], [], linestyle="--", color="0.3", label=expected_label)
        )
    axes.legend(handles=handles, loc="best")

    _save_atomically(figure, path)
    logger.info("Wrote the gradient-norm plot to %s", path)
    return path
