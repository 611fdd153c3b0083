"""Optimizers that fix problems of Keras' own on sentence models."""

import keras


def _dense_gradient(gradient, variable):
    """An embedding's sparse gradient as a dense tensor of static shape."""
    # Imported here so that `import kerasdl` (which registers this class
    # for loading saved models) does not load TensorFlow under JAX.
    import tensorflow as tf

    if not isinstance(gradient, tf.IndexedSlices):
        return gradient
    rows = variable.shape[0] if variable is not None else None
    if rows is None:
        return tf.convert_to_tensor(gradient)
    # Rows outside the batch get zeros and repeated ids are summed; the
    # row count is a Python int, so XLA sees a compile-time constant.
    return tf.math.unsorted_segment_sum(
        gradient.values, gradient.indices, num_segments=rows
    )


@keras.saving.register_keras_serializable(package="kerasdl")
class DenseGradientAdadelta(keras.optimizers.Adadelta):
    """Adadelta that applies embedding gradients as dense tensors.

    Keras' Adadelta updates a sparse (`tf.IndexedSlices`) embedding
    gradient row by row. Two things go wrong with that: under
    `jit_compile=True` XLA cannot size the update, so compiling a text
    model with an `Embedding` fails or stalls; and for an id that occurs
    twice in a batch it accumulates the sum of the squared per-occurrence
    gradients, where Adadelta (Zeiler, 2012) squares the summed gradient.
    Densifying the gradient first fixes both, and matches Kim's (2014)
    Theano code, which updated the whole embedding matrix every step: rows
    outside the batch see a zero gradient and their accumulators decay.

    Takes the arguments of `keras.optimizers.Adadelta`.

    Example:

    >>> optimizer = DenseGradientAdadelta(learning_rate=1.0, rho=0.95)
    >>> optimizer.get_config()["rho"]
    0.95
    """

    def apply(self, grads, trainable_variables=None):
        variables = trainable_variables or [None] * len(grads)
        grads = [
            _dense_gradient(gradient, variable)
            for gradient, variable in zip(grads, variables)
        ]
        return super().apply(grads, trainable_variables)


@keras.saving.register_keras_serializable(package="kerasdl")
class SparseAdadelta(keras.optimizers.Adadelta):
    """Adadelta whose embedding updates touch only the rows in the batch.

    Dense Adadelta (Zeiler, 2012; Kim's Theano code) updates the whole
    embedding matrix every step, though a batch of 50 short sentences
    touches a few hundred of its rows: for a row outside the batch the
    gradient is zero, the update is zero and both accumulators are only
    multiplied by `rho`. That decay needs no work at the time: this
    optimizer records the step at which each row was last updated and,
    when the row next occurs, multiplies its accumulators by `rho` to the
    power of the steps it missed before applying the usual update. The
    weights and accumulators then equal dense Adadelta's (to float32
    rounding) at every row as it is used, at a cost proportional to the
    batch rather than to the vocabulary. Ids repeated in a batch have
    their gradients summed first, as in dense Adadelta.

    Only sparse (`tf.IndexedSlices`) gradients, which the TensorFlow
    backend gives an `Embedding`, take the row-wise path; a dense
    gradient first applies the decay every row still owes, then updates
    as `keras.optimizers.Adadelta`. The rows' last steps are optimizer
    variables, so a checkpointed run resumes exactly. The accumulators of
    rows not seen since their last update are stale in the saved state
    (their weights are not), which matters only to code that reads
    Adadelta's accumulators directly.

    It also compiles under `jit_compile=True` (XLA bounds the size of
    `tf.unique`'s output by its input) and gives the same weights there;
    its speed under XLA has not been measured against
    `DenseGradientAdadelta`.

    Takes the arguments of `keras.optimizers.Adadelta`.

    Example:

    >>> optimizer = SparseAdadelta(learning_rate=1.0, rho=0.95)
    >>> optimizer.get_config()["rho"]
    0.95
    """

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        # For every matrix-shaped variable (the only kind an IndexedSlices
        # gradient can come for): how many updates it has had, and the
        # update count at which each row was last brought up to date.
        self._update_counts = []
        self._row_steps = []
        for variable in var_list:
            if len(variable.shape) < 2:
                self._update_counts.append(None)
                self._row_steps.append(None)
                continue
            name = variable.path.replace("/", "_")
            self._update_counts.append(
                self.add_variable((), dtype="int64", name=f"{name}_updates")
            )
            self._row_steps.append(
                self.add_variable(
                    (variable.shape[0],),
                    dtype="int64",
                    name=f"{name}_row_steps",
                )
            )

    def update_step(self, grad, variable, learning_rate):
        index = self._get_variable_index(variable)
        count = self._update_counts[index]
        if count is None or keras.backend.backend() != "tensorflow":
            # Other backends give dense gradients only: plain Adadelta.
            return super().update_step(grad, variable, learning_rate)
        import tensorflow as tf

        row_steps = self._row_steps[index]
        step = count + 1  # this update's number, 1-based
        accumulated_grad = self._accumulated_grads[index]
        accumulated_delta = self._accumulated_delta_vars[index]
        if not isinstance(grad, tf.IndexedSlices):
            # Rows last updated before the previous step still owe
            # rho ** (missed steps); pay it, then update densely.
            missed = tf.cast(step - 1 - row_steps.value, variable.dtype)
            decay = tf.reshape(
                tf.pow(tf.cast(self.rho, variable.dtype), missed),
                [-1] + [1] * (len(variable.shape) - 1),
            )
            self.assign(accumulated_grad, accumulated_grad * decay)
            self.assign(accumulated_delta, accumulated_delta * decay)
            super().update_step(grad, variable, learning_rate)
            self.assign(row_steps, tf.fill(tf.shape(row_steps), step))
            self.assign(count, step)
            return
        rows, positions = tf.unique(grad.indices)
        # (unique rows, ...): the batch's gradient of each row, summed.
        summed = tf.math.unsorted_segment_sum(
            tf.cast(grad.values, variable.dtype),
            positions,
            tf.shape(rows)[0],
        )
        rho = tf.cast(self.rho, variable.dtype)
        epsilon = tf.cast(self.epsilon, variable.dtype)
        # Steps since each row's last update (>= 1); the accumulators
        # decayed once per step in between.
        lag = tf.cast(step - tf.gather(row_steps.value, rows), variable.dtype)
        shape = tf.concat([tf.shape(rows), [1] * (len(variable.shape) - 1)], 0)
        decay = tf.reshape(tf.pow(rho, lag), shape)
        previous_delta = tf.reshape(tf.pow(rho, lag - 1), shape) * tf.gather(
            accumulated_delta.value, rows
        )
        new_grad = decay * tf.gather(accumulated_grad.value, rows) + (
            1 - rho
        ) * tf.square(summed)
        delta = (
            -tf.sqrt(previous_delta + epsilon)
            / tf.sqrt(new_grad + epsilon)
            * summed
        )
        new_delta = rho * previous_delta + (1 - rho) * tf.square(delta)
        lr = tf.cast(learning_rate, variable.dtype)
        self.assign(accumulated_grad, tf.IndexedSlices(new_grad, rows))
        self.assign(accumulated_delta, tf.IndexedSlices(new_delta, rows))
        self.assign_add(variable, tf.IndexedSlices(lr * delta, rows))
        self.assign(
            row_steps, tf.IndexedSlices(tf.fill(tf.shape(rows), step), rows)
        )
        self.assign(count, step)
