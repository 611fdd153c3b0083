"""Gradient checking: compare a backward pass with finite differences.

`check_gradients` takes a function, a `keras.layers.Layer` or a whole
`keras.Model`, records its backward pass with `tf.GradientTape` (whether
hand-written through `custom_gradient` or derived by autodiff) and compares
it with central finite differences. Everything is done in float64: inputs
are up-cast and layers and models are rebuilt as float64 twins carrying
the same weights, so the comparison is sharp enough to catch a gradient
that is wrong in the fifth digit.

The scalar objective is `E = sum(w * y)` over every output `y`, with a
fixed random `w` (seeded) so that every output element matters and no two
elements cancel by symmetry.

Full mode compares every element of the gradient. The central differences
`(E(t + h e_i) - E(t - h e_i)) / 2h` for many elements `i` are evaluated at
once: a `tf.function` applies `tf.vectorized_map` to a batch of perturbed
copies of the checked tensors (the `+h` rows, the `-h` rows and one
unperturbed row), so 1,000 elements cost one vectorised forward pass
instead of 2,001 Python calls. This works for any target, elementwise or
not, since each copy is a separate evaluation. Batches hold at most 2 ** 22
perturbed values (big tensors go in chunks) and come in powers of two, so
a few traces serve every tensor; where vectorisation fails, `tf.map_fn`
loops over the same batch inside the compiled graph.

Fast mode compares directional derivatives along random unit directions
`u`: `<grad E, u>` against `(E(t + h u) - E(t - h u)) / 2h`. One projection
per checked tensor (so a failure names a tensor) plus a few over all
tensors at once; a model with millions of weights checks in seconds. A
projection cannot say which element is wrong: rerun in full mode for that.

Errors. For an analytic value `a` and a numerical value `n`, the absolute
error is `|a - n|`, the relative error `|a - n| / max(|a|, |n|, tiny)`, and
an element passes when `|a - n| <= atol + rtol * |n|` (the rule of
`numpy.allclose`). The reported largest relative error skips elements
where both `|a|` and `|n|` are below `atol`: there the relative error of
float64 rounding noise (a derivative of 1e-17 against 0) says nothing, and
the absolute test decides.

Kinks. At a point where the function is not differentiable (ReLU or `abs`
at 0, a max-pool tie), or within `step` of one, the central difference is
the average of two different slopes and disagrees with any correct
gradient. Such elements are detected and skipped (counted in
`num_kinks`): an element is a kink when it fails the test above, its
one-sided differences `(E(t + h) - E(t)) / h` and `(E(t) - E(t - h)) / h`
disagree by more than `atol + kink_tolerance * max(|forward|, |backward|)`
(a smooth function makes them differ only by about `h * E''`), and the
analytic value lies between the two one-sided slopes (it is one of the
legitimate subgradients). A wrong gradient at a kink that is not between
the slopes is still reported; one that is between them cannot be told
from a right one by finite differences. At a symmetric kink (`abs` at
exactly 0) the central difference is 0, which agrees with TensorFlow's
choice, so the element simply passes.
"""

import contextlib
import dataclasses
import functools
import logging
import math
import numbers

import keras
import numpy as np
import tensorflow as tf

logger = logging.getLogger(__name__)

WRT_CHOICES = ("inputs", "weights", "all")

# Name of the fast-mode row that holds the projections over all tensors.
GLOBAL_PROJECTIONS = "(all tensors)"

# Perturbed copies evaluated by one vectorised call are capped at this many
# elements in total (2 ** 22 float64 values = 32 MiB), so full mode on a big
# tensor proceeds in chunks instead of exhausting memory.
_CHUNK_ELEMENTS = 2**22

# Full mode on more elements than this is slow; fast mode is the tool.
_FULL_MODE_ADVICE_ELEMENTS = 200_000

_TINY = np.finfo(np.float64).tiny


class GradientCheckError(AssertionError):
    """Raised by `assert_gradients_close` when a gradient check fails."""


@dataclasses.dataclass(frozen=True)
class WorstElement:
    """The element (or projection) that is furthest outside tolerance.

    Attributes:
        tensor: Name of the tensor, e.g. `"inputs"` or `"dense/kernel"`.
        index: Index of the element in that tensor, or `None` in fast mode
            where a projection mixes every element of the tensor.
        analytic: The backward pass's value (float64).
        numerical: The central finite difference (float64).
        abs_error: `|analytic - numerical|`.
        rel_error: `abs_error / max(|analytic|, |numerical|, tiny)`.
        projection: In fast mode, the number of the projection; else
            `None`.
    """

    tensor: str
    index: tuple[int, ...] | None
    analytic: float
    numerical: float
    abs_error: float
    rel_error: float
    projection: int | None = None

    def location(self) -> str:
        """Returns `tensor[i, j]`, or the projection in fast mode."""
        if self.index == ():
            return self.tensor  # a scalar
        if self.index is not None:
            return f"{self.tensor}[{', '.join(map(str, self.index))}]"
        return f"{self.tensor} (projection {self.projection})"


@dataclasses.dataclass(frozen=True)
class TensorSummary:
    """How one checked tensor fared.

    Attributes:
        name: Name of the tensor.
        shape: Its shape.
        num_checked: Elements compared (full mode) or projections (fast).
        num_kinks: Elements or projections skipped as kinks.
        num_failed: Elements or projections outside tolerance.
        max_abs_error: Largest absolute error among those checked.
        max_rel_error: Largest relative error among those checked whose
            analytic or numerical value exceeds `atol`.
        low_precision_rel_error: Largest relative error of the gradient
            computed in the target's own precision (float32 for most)
            against the float64 one, or `None` when not computed. For
            information only: it never fails a check.
    """

    name: str
    shape: tuple[int, ...]
    num_checked: int
    num_kinks: int
    num_failed: int
    max_abs_error: float
    max_rel_error: float
    low_precision_rel_error: float | None = None

    @property
    def ok(self) -> bool:
        return self.num_failed == 0


@dataclasses.dataclass(frozen=True)
class GradientCheckResult:
    """The verdict of `check_gradients`.

    Attributes:
        ok: `True` when every checked element or projection is within
            tolerance.
        max_abs_error: Largest absolute error over all tensors.
        max_rel_error: Largest relative error over all tensors.
        worst: The element furthest outside tolerance (relative to
            `atol + rtol * |numerical|`), or `None` if nothing was checked.
            In fast mode, a projection: a failing per-tensor one if any
            (it names the tensor), else a failing global one.
        tensors: One `TensorSummary` per checked tensor; in fast mode a
            last row named `"(all tensors)"` holds the global projections.
        num_checked: Elements (full mode) or projections (fast mode)
            compared.
        num_kinks: Elements or projections skipped as kinks.
        num_failed: Elements or projections outside tolerance.
        mode: `"full"` or `"fast"`.
        order: 1 for the gradient, 2 for the Hessian-vector product.
        atol: Absolute tolerance used.
        rtol: Relative tolerance used.
        step: Finite-difference step used.
        kink_tolerance: Kink-detection threshold used.
    """

    ok: bool
    max_abs_error: float
    max_rel_error: float
    worst: WorstElement | None
    tensors: tuple[TensorSummary, ...]
    num_checked: int
    num_kinks: int
    num_failed: int
    mode: str
    order: int
    atol: float
    rtol: float
    step: float
    kink_tolerance: float

    def __str__(self) -> str:
        order = "first order" if self.order == 1 else "second order"
        verdict = "PASSED" if self.ok else "FAILED"
        unit = "elements" if self.mode == "full" else "projections"
        lines = [
            f"Gradient check ({self.mode} mode, {order}): {verdict}",
            f"  atol={self.atol:g} rtol={self.rtol:g} step={self.step:g}; "
            f"{self.num_checked} {unit} checked, {self.num_failed} failed, "
            f"{self.num_kinks} skipped as kinks",
            "",
        ]
        lines += _format_table(self.tensors)
        lines.append("")
        if self.worst is None:
            lines.append("  worst: nothing checked (every point a kink)")
        else:
            lines.append("  worst: " + _describe_worst(self.worst))
        if self.mode == "fast":
            lines.append(
                "  (a projection mixes every element of a tensor; rerun "
                "with fast=False to find the element)"
            )
        return "\n".join(lines)


def check_gradients(
    target,
    inputs,
    *,
    wrt: str = "all",
    atol: float = 1e-6,
    rtol: float = 1e-5,
    step: float = 1e-5,
    fast: bool = False,
    num_projections: int = 6,
    second_order: bool = False,
    seed: int = 0,
    kink_tolerance: float = 1e-2,
    compare_low_precision: bool = True,
) -> GradientCheckResult:
    """Checks a backward pass against central finite differences in float64.

    The target's output `y` is reduced to `E = sum(w * y)` with a fixed
    random `w`; the gradient of `E` recorded by `tf.GradientTape` is
    compared with central differences of `E`, element by element (full
    mode) or along random directions (fast mode). Float inputs and weights
    are up-cast to float64 first; integer inputs (token ids) are held fixed.
    Elements at or near a non-differentiable point are skipped as kinks
    (see the module docstring for the rule).

    Args:
        target: A callable on tensors, a `keras.layers.Layer` or a
            `keras.Model`. A tuple or list `inputs` is unpacked into
            positional arguments of a callable or layer; a model receives
            `inputs` as one argument, as in `model(inputs)`.
        inputs: A tensor or array, or a list, tuple or dict of them (a list
            is a structure: pass `np.array([1.0, 2.0])`, not `[1.0, 2.0]`,
            for one tensor).
        wrt: What to differentiate with respect to: `"inputs"` (the float
            inputs), `"weights"` (every trainable weight of a layer or
            model) or `"all"`.
        atol: Absolute tolerance, `>= 0`.
        rtol: Relative tolerance, `>= 0`; `atol + rtol` must be positive.
        step: Finite-difference step `h`, `> 0`. In float64 the default
            `1e-5` keeps both the truncation error (about
            `h ** 2 * |E'''| / 6`, ~1e-11) and the rounding error (about
            `1e-16 * sum(|w * y|) / h`, ~1e-9 for 1,000 outputs) far
            below `atol`.
        fast: If `True`, check random projections instead of every element.
        num_projections: Global projections in fast mode (one per tensor is
            always added), `>= 1`.
        second_order: If `True`, check the gradient of
            `g = <grad E, v>` for a fixed random `v`, i.e. the
            Hessian-vector product from nested tapes, against central
            differences of `g`. Gradients that do not exist (a tensor that
            does not reach the output, ReLU's second derivative) count as
            zeros.
        seed: Seed of `w`, `v` and the projection directions.
        kink_tolerance: How far the one-sided slopes may disagree, relative
            to their size, before an element counts as a kink; `> 0`.
        compare_low_precision: If `True`, also compute the analytic
            gradient in the target's own precision (float32 for most) and
            report its relative error against the float64 one.

    Returns:
        A `GradientCheckResult`; `str(result)` is a readable report.

    Raises:
        ValueError: On an unknown `wrt`, a non-positive `step`, negative
            tolerances, nothing to differentiate, a layer that cannot be
            rebuilt in float64, or a layer under a Keras backend other than
            TensorFlow.
        TypeError: If `target` is not callable or `inputs` is not numeric.

    Example:

    >>> import numpy as np
    >>> from kerasdl.layers import Tanh
    >>> x = np.linspace(-3.0, 3.0, 50).astype("float32")
    >>> check_gradients(Tanh(), x).ok
    True
    """
    _validate_arguments(
        target,
        wrt=wrt,
        atol=atol,
        rtol=rtol,
        step=step,
        num_projections=num_projections,
        kink_tolerance=kink_tolerance,
    )
    problem = _Problem(target, inputs, wrt=wrt, seed=seed)
    objective = problem.objective
    if second_order:
        objective = problem.second_order_objective()

    analytic = _analytic_gradients(objective, problem.values)
    low_precision = None
    if compare_low_precision:
        low_precision = problem.low_precision_gradients(second_order)

    settings = _Settings(atol, rtol, step, kink_tolerance)
    if fast:
        rows, worst = _check_fast(
            objective, problem, analytic, settings, num_projections, seed
        )
    else:
        rows, worst = _check_full(objective, problem, analytic, settings)
    rows = _add_low_precision(rows, analytic, low_precision)
    return _assemble_result(rows, worst, settings, fast, second_order)


def assert_gradients_close(target, inputs, **kwargs) -> GradientCheckResult:
    """Like `check_gradients`, but raises when the check fails.

    Args:
        target: See `check_gradients`.
        inputs: See `check_gradients`.
        **kwargs: Any keyword argument of `check_gradients`.

    Returns:
        The passing `GradientCheckResult`.

    Raises:
        GradientCheckError: If the check fails; the message names the
            worst tensor and index, the analytic and numerical values, the
            errors and the tolerances, followed by the full report.

    Example:

    >>> import numpy as np
    >>> from kerasdl.layers import Sigmoid
    >>> x = np.linspace(-20.0, 20.0, 41).astype("float32")
    >>> assert_gradients_close(Sigmoid(), x).num_checked
    41
    """
    result = check_gradients(target, inputs, **kwargs)
    if not result.ok:
        raise GradientCheckError(
            f"Gradient check failed: {result.num_failed} of "
            f"{result.num_checked} "
            f"{'elements' if result.mode == 'full' else 'projections'} "
            f"outside tolerance (atol={result.atol:g}, "
            f"rtol={result.rtol:g}). Worst: "
            f"{_describe_worst(result.worst)}.\n\n{result}"
        )
    return result


# --- Argument checks -------------------------------------------------------


def _validate_arguments(
    target, *, wrt, atol, rtol, step, num_projections, kink_tolerance
):
    if not callable(target):
        raise TypeError(
            "Expected `target` to be a callable, a keras.layers.Layer or a "
            f"keras.Model. Received: target={target!r}"
        )
    backend = keras.backend.backend()
    if isinstance(target, keras.layers.Layer) and backend != "tensorflow":
        raise ValueError(
            "Expected the TensorFlow Keras backend to check a Keras layer or "
            "model (gradients are recorded with tf.GradientTape); set "
            "KERAS_BACKEND=tensorflow. Received: "
            f"keras.backend.backend()={backend!r}"
        )
    if wrt not in WRT_CHOICES:
        raise ValueError(
            f"Expected `wrt` to be one of {WRT_CHOICES}. Received: wrt={wrt!r}"
        )
    for name, value in (("atol", atol), ("rtol", rtol)):
        if not isinstance(value, numbers.Real) or not value >= 0:
            raise ValueError(
                f"Expected `{name}` to be a number >= 0. "
                f"Received: {name}={value!r}"
            )
    if atol + rtol <= 0:
        raise ValueError(
            "Expected `atol` or `rtol` to be positive (both 0 would demand "
            f"bit-exact agreement). Received: atol={atol!r}, rtol={rtol!r}"
        )
    for name, value in (("step", step), ("kink_tolerance", kink_tolerance)):
        if not isinstance(value, numbers.Real) or not value > 0:
            raise ValueError(
                f"Expected `{name}` to be a number > 0. "
                f"Received: {name}={value!r}"
            )
    if not isinstance(num_projections, int) or num_projections < 1:
        raise ValueError(
            "Expected `num_projections` to be an integer >= 1. "
            f"Received: num_projections={num_projections!r}"
        )


# --- The problem in float64 ------------------------------------------------


class _Problem:
    """The target as a pure float64 function of the checked tensors.

    Holds `names` and float64 `values` of the checked tensors (float inputs
    and/or trainable weights) and `objective(values) -> E`, a scalar, with
    everything else (integer inputs, unchecked tensors) held fixed.
    """

    def __init__(self, target, inputs, *, wrt, seed):
        self.target = target
        self.is_layer = isinstance(target, keras.layers.Layer)
        self.is_model = isinstance(target, keras.Model)
        self.seed = seed
        self._prepare_inputs(inputs)
        self._prepare_weights()
        self._choose_checked(wrt)
        self._prepare_output_weights()

    # Inputs: flatten the structure, up-cast the float leaves.
    def _prepare_inputs(self, inputs):
        self.structure = inputs
        leaves = tf.nest.flatten(inputs)
        paths = _leaf_names(inputs)
        self.original_inputs = []
        self.inputs64 = []
        self.float_slots = []
        for position, (path, leaf) in enumerate(zip(paths, leaves)):
            tensor = _as_tensor(leaf, path)
            self.original_inputs.append(tensor)
            if tensor.dtype.is_floating:
                self.float_slots.append((position, path))
                tensor = tf.cast(tensor, tf.float64)
            self.inputs64.append(tensor)

    def _prepare_weights(self):
        self.twin = None
        self.weight_names = []
        self.weights64 = []
        self.non_trainable64 = []
        if not self.is_layer:
            return
        if not self.target.built:
            # Building needs one call in the target's own precision.
            self._call_structure(self.target, self.original_inputs)
        if not self.target.trainable_variables and not self.float_slots:
            return
        self.twin = _float64_twin(self.target, self._call_args())
        self.weight_names = [v.path for v in self.target.trainable_variables]
        self.weights64 = [
            tf.convert_to_tensor(v.value) for v in self.twin.trainable_variables
        ]
        self.non_trainable64 = [
            tf.convert_to_tensor(v.value)
            for v in self.twin.non_trainable_variables
        ]

    def _choose_checked(self, wrt):
        self.check_inputs = wrt in ("inputs", "all")
        self.check_weights = wrt in ("weights", "all") and bool(self.weights64)
        if wrt == "weights" and not self.weights64:
            raise ValueError(
                "Expected a keras.layers.Layer or keras.Model with trainable "
                "weights when `wrt='weights'`. Received: "
                f"target={_short_repr(self.target)}, wrt={wrt!r}"
            )
        if wrt == "inputs" and not self.float_slots:
            raise ValueError(
                "Expected at least one float input when `wrt='inputs'` "
                "(integer inputs such as token ids are held fixed). "
                f"Received: inputs with dtypes {self._input_dtypes()}"
            )
        self.names = []
        self.values = []
        if self.check_inputs:
            self.names += [path for _, path in self.float_slots]
            self.values += [self.inputs64[i] for i, _ in self.float_slots]
        if self.check_weights:
            self.names += self.weight_names
            self.values += self.weights64
        if not self.values:
            raise ValueError(
                "Expected something to differentiate: float inputs or "
                "trainable weights. Received: inputs with dtypes "
                f"{self._input_dtypes()} and target="
                f"{_short_repr(self.target)} without trainable weights"
            )

    def _prepare_output_weights(self):
        outputs = tf.nest.flatten(self.forward(self.values))
        for output in outputs:
            if output.dtype != tf.float64 and self.twin is not None:
                raise ValueError(
                    "Could not up-cast the target to float64: its float64 "
                    f"copy still returns {output.dtype.name} (a cast inside "
                    "`call`?). Pass a callable that computes in float64. "
                    f"Received: target={_short_repr(self.target)}"
                )
            if output.dtype != tf.float64:
                logger.warning(
                    "The target returned %s, not float64: finite "
                    "differences lose precision; cast inside the target "
                    "or pass a layer so that it can be rebuilt in float64.",
                    output.dtype.name,
                )
        rng = np.random.default_rng(self.seed)
        self.output_weights = [
            tf.constant(rng.standard_normal(output.shape), tf.float64)
            for output in outputs
        ]

    def _input_dtypes(self):
        return [t.dtype.name for t in self.original_inputs]

    # Forward passes.
    def _split(self, values):
        """Returns (flat inputs, trainable weights) with `values` placed."""
        inputs = list(self.inputs64)
        weights = list(self.weights64)
        position = 0
        if self.check_inputs:
            for slot, _ in self.float_slots:
                inputs[slot] = values[position]
                position += 1
        if self.check_weights:
            weights = list(values[position:])
        return inputs, weights

    def _call_args(self, flat_inputs=None):
        flat_inputs = self.inputs64 if flat_inputs is None else flat_inputs
        structure = tf.nest.pack_sequence_as(self.structure, flat_inputs)
        if self.is_model or not isinstance(structure, (list, tuple)):
            return (structure,)
        return tuple(structure)

    def _call_structure(self, function, flat_inputs):
        return function(*self._call_args(flat_inputs))

    def forward(self, values):
        inputs, weights = self._split(values)
        if self.twin is None:
            return self._call_structure(self.target, inputs)
        outputs, _ = self.twin.stateless_call(
            weights, self.non_trainable64, *self._call_args(inputs)
        )
        return outputs

    def objective(self, values):
        outputs = tf.nest.flatten(self.forward(values))
        total = tf.constant(0.0, tf.float64)
        for output, weight in zip(outputs, self.output_weights):
            total += tf.reduce_sum(tf.cast(output, tf.float64) * weight)
        return total

    def second_order_objective(self):
        """Returns `values -> <grad E(values), v>` for a fixed random `v`."""
        rng = np.random.default_rng(self.seed + 1)
        directions = [
            tf.constant(rng.standard_normal(v.shape), tf.float64)
            for v in self.values
        ]

        def gradient_projection(values):
            with tf.GradientTape() as tape:
                tape.watch(values)
                energy = self.objective(values)
            gradients = tape.gradient(
                energy,
                values,
                unconnected_gradients=tf.UnconnectedGradients.ZERO,
            )
            return tf.add_n(
                [
                    tf.reduce_sum(_dense(g) * d)
                    for g, d in zip(gradients, directions)
                ]
            )

        self.second_order_directions = directions
        return gradient_projection

    def low_precision_gradients(self, second_order):
        """The analytic gradient in the target's own precision, or `None`."""
        if self.twin is None and not any(
            self.original_inputs[i].dtype != tf.float64
            for i, _ in self.float_slots
        ):
            return None
        # Keras variables are watched by the tapes automatically; calling
        # the target itself (not `stateless_call`) keeps its dtype policy's
        # casts, e.g. float16 compute under mixed_float16.
        inputs = list(self.original_inputs)
        watched = []
        if self.check_inputs:
            watched += [inputs[i] for i, _ in self.float_slots]
        sources = list(watched)
        if self.check_weights:
            sources += list(self.target.trainable_variables)

        def energy():
            outputs = tf.nest.flatten(self._call_structure(self.target, inputs))
            return tf.add_n(
                [
                    tf.reduce_sum(tf.cast(o, tf.float64) * w)
                    for o, w in zip(outputs, self.output_weights)
                ]
            )

        zero = tf.UnconnectedGradients.ZERO
        with tf.GradientTape() as outer:
            outer.watch(watched)
            with tf.GradientTape() as inner:
                inner.watch(watched)
                total = energy()
            gradients = inner.gradient(
                total, sources, unconnected_gradients=zero
            )
            if second_order:
                projection = tf.add_n(
                    [
                        tf.reduce_sum(tf.cast(_dense(g), tf.float64) * d)
                        for g, d in zip(gradients, self.second_order_directions)
                    ]
                )
        if second_order:
            gradients = outer.gradient(
                projection, sources, unconnected_gradients=zero
            )
        return [_dense_numpy(g) for g in gradients]


def _float64_twin(layer, call_args):
    """Rebuilds `layer` (or a model) in float64 with the same weights."""
    try:
        if isinstance(layer, keras.Model):
            twin = _float64_model(layer, call_args)
        else:
            twin = _float64_layer(layer)
        if not twin.built:
            twin(*call_args)
    except (ValueError, TypeError, NotImplementedError) as error:
        reason = str(error).strip().splitlines()[0] if str(error) else ""
        raise ValueError(
            f"Could not rebuild {_short_repr(layer)} in float64 ({reason}). "
            "Give it a `get_config` that round-trips, or pass a function "
            "that builds and calls a float64 copy. Received: "
            f"target={_short_repr(layer)}"
        ) from error

    _copy_weights(layer, twin)
    return twin


def _float64_layer(layer):
    with _global_dtype_policy("float64"):
        config = {**layer.get_config(), "dtype": "float64"}
        return layer.__class__.from_config(config)


def _float64_model(model, call_args):
    # Sequential and functional models clone layer by layer; a subclassed
    # model has no graph of layers, so it is rebuilt from its config while
    # the global policy is float64 (its sub-layers, created in `__init__`
    # with no dtype, pick the policy up).
    def clone_layer(layer):
        if not isinstance(layer, keras.layers.Layer):
            # A bare operation in the graph (the `NotEqual` that builds an
            # embedding's mask): it has no weights and no dtype to change.
            return layer
        if isinstance(layer, keras.Model):
            return _float64_model(layer, None)
        return _float64_layer(layer)

    is_graph = isinstance(model, keras.Sequential) or hasattr(
        model, "_operations"
    )
    if is_graph:
        # Input layers keep their dtype through `clone_model` unless given
        # new input tensors: float64 ones for every float input.
        input_tensors = keras.tree.map_structure(
            _float64_input, _model_inputs(model, call_args)
        )
        with _global_dtype_policy("float64"):
            return keras.models.clone_model(
                model, input_tensors=input_tensors, clone_function=clone_layer
            )
    return _float64_layer(model)


def _model_inputs(model, call_args):
    """The model's symbolic inputs, or the given inputs if it has none."""
    try:
        return model.input
    except (AttributeError, ValueError):
        # A Sequential model built by calling it on data has no Input.
        if call_args is None:
            raise
        return call_args[0]


def _float64_input(tensor):
    dtype = keras.backend.standardize_dtype(tensor.dtype)
    return keras.Input(
        batch_shape=tuple(tensor.shape),
        dtype="float64" if "float" in dtype else dtype,
        name=tensor.name if isinstance(tensor, keras.KerasTensor) else None,
    )


def _copy_weights(layer, twin):
    weights = layer.get_weights()
    twin_variables = twin.weights
    if len(weights) != len(twin_variables):
        raise ValueError(
            f"The float64 copy of {_short_repr(layer)} has "
            f"{len(twin_variables)} weights, the original {len(weights)}: "
            "its config does not rebuild the same layer. Received: "
            f"target={_short_repr(layer)}"
        )
    twin.set_weights(
        [
            w.astype(np.float64) if np.issubdtype(w.dtype, np.floating) else w
            for w in weights
        ]
    )
    for variable in twin.trainable_variables:
        if variable.dtype != "float64":
            raise ValueError(
                f"Could not up-cast weight {variable.path} of "
                f"{_short_repr(layer)} to float64 (it stays "
                f"{variable.dtype}). Received: target={_short_repr(layer)}"
            )


@contextlib.contextmanager
def _global_dtype_policy(name):
    """Sets the global Keras dtype policy, and restores it afterwards."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _leaf_names(inputs):
    if not isinstance(inputs, (list, tuple, dict)):
        return ["inputs"]
    paths = []
    for path, _ in _flatten_with_paths(inputs):
        paths.append("inputs" + "".join(f"[{p!r}]" for p in path))
    return paths


def _flatten_with_paths(structure, prefix=()):
    if isinstance(structure, dict):
        for key in sorted(structure):
            yield from _flatten_with_paths(structure[key], prefix + (key,))
    elif isinstance(structure, (list, tuple)):
        for i, item in enumerate(structure):
            yield from _flatten_with_paths(item, prefix + (i,))
    else:
        yield prefix, structure


def _as_tensor(leaf, path):
    try:
        tensor = tf.convert_to_tensor(leaf)
    except (ValueError, TypeError) as error:
        raise TypeError(
            f"Expected `{path}` to be a tensor or array. Received: "
            f"{path}={_short_repr(leaf)}"
        ) from error
    if not (tensor.dtype.is_floating or tensor.dtype.is_integer):
        raise TypeError(
            f"Expected `{path}` to have a float or integer dtype. "
            f"Received: {path}.dtype={tensor.dtype.name}"
        )
    return tensor


def _short_repr(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- Analytic side ---------------------------------------------------------


def _analytic_gradients(objective, values):
    """The gradient of `objective` at `values`, from `tf.GradientTape`."""
    with tf.GradientTape() as tape:
        tape.watch(values)
        energy = objective(values)
    gradients = tape.gradient(
        energy, values, unconnected_gradients=tf.UnconnectedGradients.ZERO
    )
    return [_dense_numpy(g) for g in gradients]


def _dense(gradient):
    """A dense tensor from a gradient, dense or `tf.IndexedSlices`."""
    if isinstance(gradient, tf.IndexedSlices):
        # Embedding lookups give sparse rows; duplicate ids add up.
        gradient = tf.math.unsorted_segment_sum(
            gradient.values, gradient.indices, gradient.dense_shape[0]
        )
    return gradient


def _dense_numpy(gradient):
    return np.asarray(_dense(gradient), np.float64)


# --- Comparison rules ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Settings:
    atol: float
    rtol: float
    step: float
    kink_tolerance: float


def _compare(analytic, plus, minus, center, settings):
    """Element-wise verdicts from E(t + h), E(t - h) and E(t).

    Returns:
        `(abs_error, rel_error, failed, kink, numerical)` arrays.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        return _compare_unguarded(analytic, plus, minus, center, settings)


def _compare_unguarded(analytic, plus, minus, center, settings):
    h = settings.step
    numerical = (plus - minus) / (2.0 * h)
    forward = (plus - center) / h
    backward = (center - minus) / h
    abs_error = np.abs(analytic - numerical)
    scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numerical)), _TINY)
    rel_error = abs_error / scale
    # Written as "not within" so that a NaN or infinite value fails.
    outside = ~(abs_error <= settings.atol + settings.rtol * np.abs(numerical))

    # A kink: one-sided slopes disagree far beyond the h * E'' of a smooth
    # function, and the analytic value is one of the slopes in between.
    slope_size = np.maximum(np.abs(forward), np.abs(backward))
    disagree = np.abs(forward - backward) > (
        settings.atol + settings.kink_tolerance * slope_size
    )
    slack = settings.atol + settings.rtol * slope_size
    low = np.minimum(forward, backward) - slack
    high = np.maximum(forward, backward) + slack
    between = (analytic >= low) & (analytic <= high)
    kink = outside & disagree & between
    failed = outside & ~kink
    return abs_error, rel_error, failed, kink, numerical


def _above_atol(analytic, numerical, settings):
    """Where a relative error means something: either value above atol.

    NaN counts as above, so that a NaN error shows in the maxima.
    """
    size = np.maximum(np.abs(analytic), np.abs(numerical))
    return ~(size <= settings.atol)


def _badness(abs_error, numerical, settings):
    """How far outside tolerance: > 1 fails, used to rank the worst."""
    allowed = settings.atol + settings.rtol * np.abs(numerical)
    with np.errstate(invalid="ignore", over="ignore"):
        badness = abs_error / np.maximum(allowed, _TINY)
    # NaN (a NaN gradient) ranks as the worst of all.
    return np.where(np.isnan(badness), np.inf, badness)


# --- Full mode -------------------------------------------------------------


def _check_full(objective, problem, analytic, settings):
    total = sum(int(np.prod(v.shape)) for v in problem.values)
    if total > _FULL_MODE_ADVICE_ELEMENTS:
        logger.warning(
            "Full mode on %d elements needs %d forward passes; "
            "fast=True checks random projections in seconds.",
            total,
            2 * total,
        )
    evaluate = _make_batched_objective(objective, problem.values)
    rows = []
    candidates = []
    for k, name in enumerate(problem.names):
        energies = _perturbed_objectives(
            evaluate, problem.values, k, settings.step
        )
        row, candidate = _full_row(name, analytic[k], energies, settings)
        rows.append(row)
        candidates += [candidate] if candidate else []
    worst = max(candidates, key=lambda c: c[0], default=(0, None))[1]
    return rows, worst


def _full_row(name, analytic, energies, settings):
    """A tensor's summary and its worst element as `(badness, element)`."""
    flat_analytic = analytic.reshape(-1)
    abs_error, rel_error, failed, kink, numerical = _compare(
        flat_analytic, *energies, settings
    )
    checked = ~kink
    meaningful = checked & _above_atol(flat_analytic, numerical, settings)
    row = TensorSummary(
        name=name,
        shape=analytic.shape,
        num_checked=int(checked.sum()),
        num_kinks=int(kink.sum()),
        num_failed=int(failed.sum()),
        max_abs_error=_masked_max(abs_error, checked),
        max_rel_error=_masked_max(rel_error, meaningful),
    )
    if not checked.any():
        return row, None
    badness = np.where(checked, _badness(abs_error, numerical, settings), -1)
    i = int(np.argmax(badness))
    element = WorstElement(
        tensor=name,
        index=tuple(int(j) for j in np.unravel_index(i, analytic.shape)),
        analytic=float(flat_analytic[i]),
        numerical=float(numerical[i]),
        abs_error=float(abs_error[i]),
        rel_error=float(rel_error[i]),
    )
    return row, (float(badness[i]), element)


def _masked_max(values, mask):
    return float(values[mask].max()) if mask.any() else 0.0


def _perturbed_objectives(evaluate, values, k, step):
    """E(t + h e_i), E(t - h e_i) for every element i of tensor k, and E(t).

    Returns:
        `(plus, minus, center)`: three arrays of shape `(size_k,)`. The
        center comes from the same vectorised graph as the perturbed values
        so that their rounding matches.
    """
    shape = tuple(values[k].shape)
    size = int(np.prod(shape))
    total = sum(int(np.prod(v.shape)) for v in values)
    chunk = max(1, min(size, _CHUNK_ELEMENTS // max(total, 1)))
    plus = np.empty(size)
    minus = np.empty(size)
    center = 0.0
    for start in range(0, size, chunk):
        count = min(chunk, size - start)
        # Batches come in powers of two so that a handful of traces of the
        # compiled objective serve every tensor and chunk.
        rows_per_sign = 2 ** math.ceil(math.log2(count))
        indices = tf.range(start, start + count)
        # (rows_per_sign, size): row r moves element start + r by +h; the
        # padding rows are zero.
        rows = step * tf.one_hot(indices, size, dtype=tf.float64)
        rows = tf.pad(rows, [[0, rows_per_sign - count], [0, 0]])
        rows = tf.concat([rows, -rows, tf.zeros((1, size), tf.float64)], 0)
        # One delta per checked tensor, each (2 * rows_per_sign + 1,
        # *shape_j): the +h rows, the -h rows, then the unperturbed center;
        # zero for j != k.
        deltas = [
            tf.reshape(rows, (-1, *shape))
            if j == k
            else tf.zeros((2 * rows_per_sign + 1, *v.shape), tf.float64)
            for j, v in enumerate(values)
        ]
        energies = np.asarray(evaluate(deltas), np.float64)
        plus[start : start + count] = energies[:count]
        minus[start : start + count] = energies[
            rows_per_sign : rows_per_sign + count
        ]
        center = float(energies[-1])
    return plus, minus, np.full(size, center)


def _make_batched_objective(objective, values):
    """A compiled `deltas -> [E(values + delta) for each delta row]`.

    One `tf.function` serves every tensor and chunk: `deltas` holds one
    batch per checked tensor, so the graph is traced once per batch size.
    """

    def single(delta):
        return objective([v + d for v, d in zip(values, delta)])

    vectorised = _compile(_vectorised_map, single)
    looped = _compile(_looped_map, single)

    def evaluate(deltas):
        nonlocal vectorised
        if vectorised is not None:
            try:
                return vectorised(deltas)
            except (ValueError, TypeError, NotImplementedError) as error:
                # Some ops (e.g. stateful ones) resist vectorisation.
                logger.info("Vectorised map failed (%s); looping.", error)
                vectorised = None
        return looped(deltas)

    return evaluate


def _vectorised_map(single, deltas):
    return tf.vectorized_map(single, deltas, fallback_to_while_loop=True)


def _looped_map(single, deltas):
    return tf.map_fn(single, deltas, fn_output_signature=tf.float64)


def _compile(function, *args):
    """`tf.function` of `function` with its leading arguments bound.

    TensorFlow warns about "frequent retracing" when functions sharing one
    code object are traced often; every check compiles fresh closures by
    design, so each gets a `functools.partial` (no code object of its own)
    and is counted on its own.
    """
    return tf.function(
        functools.partial(function, *args), reduce_retracing=True
    )


# --- Fast mode -------------------------------------------------------------


def _check_fast(objective, problem, analytic, settings, num_projections, seed):
    rng = np.random.default_rng(seed + 2)
    compiled = _compile(_call, objective)
    values = problem.values
    shapes = [tuple(v.shape) for v in values]

    # One direction per tensor (zero elsewhere) then global ones; each is
    # a unit vector over all checked elements together.
    projections = []
    for k, name in enumerate(problem.names):
        directions = [np.zeros(s) for s in shapes]
        directions[k] = rng.standard_normal(shapes[k])
        projections.append((name, _unit(directions)))
    for _ in range(num_projections):
        directions = [rng.standard_normal(s) for s in shapes]
        projections.append((GLOBAL_PROJECTIONS, _unit(directions)))

    center = float(compiled(values))
    outcomes = {}
    for number, (name, directions) in enumerate(projections):
        exact = sum(float(np.sum(g * u)) for g, u in zip(analytic, directions))
        plus = float(compiled(_shift(values, directions, settings.step)))
        minus = float(compiled(_shift(values, directions, -settings.step)))
        verdict = _compare(
            np.array([exact]),
            np.array([plus]),
            np.array([minus]),
            np.array([center]),
            settings,
        )
        outcomes.setdefault(name, []).append((number, exact, verdict))
    return _fast_rows(outcomes, dict(zip(problem.names, shapes)), settings)


def _call(function, values):
    return function(values)


def _unit(directions):
    norm = math.sqrt(sum(float(np.sum(d * d)) for d in directions))
    if norm == 0.0:  # only tensors with no elements
        return directions
    return [d / norm for d in directions]


def _shift(values, directions, step):
    return [
        v + tf.constant(step * d, tf.float64)
        for v, d in zip(values, directions)
    ]


def _fast_rows(outcomes, shapes, settings):
    rows = []
    candidates = []
    for name, entries in outcomes.items():
        abs_errors, rel_errors, failed, kinks = [], [], 0, 0
        for number, exact, verdict in entries:
            abs_error, rel_error, fail, kink, numerical = verdict
            kinks += int(kink[0])
            failed += int(fail[0])
            if kink[0]:
                continue
            abs_errors.append(float(abs_error[0]))
            if _above_atol(exact, numerical, settings)[0]:
                rel_errors.append(float(rel_error[0]))
            worst = WorstElement(
                tensor=name,
                index=None,
                analytic=exact,
                numerical=float(numerical[0]),
                abs_error=float(abs_error[0]),
                rel_error=float(rel_error[0]),
                projection=number,
            )
            badness = float(_badness(abs_error, numerical, settings)[0])
            per_tensor = name != GLOBAL_PROJECTIONS
            candidates.append((badness > 1, per_tensor, badness, worst))
        rows.append(
            TensorSummary(
                name=name,
                shape=shapes.get(name, ()),
                num_checked=len(entries) - kinks,
                num_kinks=kinks,
                num_failed=failed,
                max_abs_error=max(abs_errors, default=0.0),
                max_rel_error=max(rel_errors, default=0.0),
            )
        )
    # The worst names a tensor where it can: among failing projections (or,
    # if none fails, among passing ones) the per-tensor ones rank first.
    worst = max(candidates, key=lambda c: c[:3], default=(0, 0, 0, None))[3]
    return rows, worst


# --- Report ----------------------------------------------------------------


def _add_low_precision(rows, analytic, low_precision):
    # Rows follow the checked tensors' order; fast mode appends the global
    # projections' row, which has no gradient of its own.
    if low_precision is None:
        return rows
    updated = list(rows)
    for k, (exact, rough) in enumerate(zip(analytic, low_precision)):
        error = np.abs(rough - exact) / np.maximum(
            np.maximum(np.abs(rough), np.abs(exact)), _TINY
        )
        largest = float(error.max()) if error.size else 0.0
        updated[k] = dataclasses.replace(
            rows[k], low_precision_rel_error=largest
        )
    return updated


def _assemble_result(rows, worst, settings, fast, second_order):
    checked = [row for row in rows if row.num_checked]
    return GradientCheckResult(
        ok=all(row.ok for row in rows),
        max_abs_error=max((r.max_abs_error for r in checked), default=0.0),
        max_rel_error=max((r.max_rel_error for r in checked), default=0.0),
        worst=worst,
        tensors=tuple(rows),
        num_checked=sum(r.num_checked for r in rows),
        num_kinks=sum(r.num_kinks for r in rows),
        num_failed=sum(r.num_failed for r in rows),
        mode="fast" if fast else "full",
        order=2 if second_order else 1,
        atol=settings.atol,
        rtol=settings.rtol,
        step=settings.step,
        kink_tolerance=settings.kink_tolerance,
    )


def _describe_worst(worst):
    if worst is None:
        return "nothing checked"
    return (
        f"{worst.location()} analytic={worst.analytic:.10g} "
        f"numerical={worst.numerical:.10g} abs err={worst.abs_error:.3g} "
        f"rel err={worst.rel_error:.3g}"
    )


def _format_table(rows):
    header = (
        "tensor",
        "shape",
        "checked",
        "kinks",
        "failed",
        "max abs err",
        "max rel err",
        "low-prec rel err",
    )
    body = [
        (
            row.name,
            str(row.shape),
            str(row.num_checked),
            str(row.num_kinks),
            str(row.num_failed),
            f"{row.max_abs_error:.3g}",
            f"{row.max_rel_error:.3g}",
            "-"
            if row.low_precision_rel_error is None
            else f"{row.low_precision_rel_error:.3g}",
        )
        for row in rows
    ]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(8)]
    return [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(line, widths))
        for line in [header, *body]
    ]
