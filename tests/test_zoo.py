"""Tests of kerasdl.zoo: the registry, the six models and their cards."""

import dataclasses
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdl import gradcheck
from kerasdl import zoo
from kerasdl.cli import main as cli_main

# Overrides that keep each model small enough for a fast test; models not
# listed (e.g. registered by a user) are built with their defaults.
SMALL = {
    "text_cnn_kim": {
        "vocabulary_size": 60,
        "sequence_length": 12,
        "embedding_dim": 8,
        "filters": 4,
    },
    "rnn_language_model": {
        "vocabulary_size": 40,
        "sequence_length": 8,
        "embedding_dim": 8,
        "units": 6,
    },
    "image_cnn_valid": {"input_shape": (16, 16, 3)},
    "image_cnn_same": {"input_shape": (8, 8, 3)},
}


def _small_model(name):
    return zoo.build(name, **SMALL.get(name, {}))


def _assert_same_outputs(model, other, inputs):
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(other(inputs)),
        keras.ops.convert_to_numpy(model(inputs)),
        rtol=1e-6,
        atol=1e-7,
    )


# --- Every registered model ---


@pytest.mark.parametrize("name", zoo.list_models())
def test_model_forward_backward_config_and_save(name, tmp_path):
    model = _small_model(name)
    inputs, _ = zoo.random_batch(model, batch_size=4)

    # Forward: probabilities that sum to 1 over the last axis.
    outputs = keras.ops.convert_to_numpy(model(inputs))
    assert outputs.shape[0] == 4
    assert outputs.dtype == np.float32
    np.testing.assert_allclose(outputs.sum(axis=-1), 1.0, rtol=1e-5)

    # Backward: a random weighting of the outputs, because the plain sum
    # of probabilities is constant and would give zero gradients.
    weighting = np.random.default_rng(1).standard_normal(outputs.shape)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(inputs) * weighting.astype("float32"))
    gradients = tape.gradient(loss, model.trainable_weights)
    assert model.trainable_weights
    for variable, gradient in zip(model.trainable_weights, gradients):
        assert gradient is not None, variable.path
        gradient = tf.convert_to_tensor(gradient).numpy()
        assert np.all(np.isfinite(gradient)), variable.path
        assert np.any(gradient != 0), variable.path

    # Config round trip: same architecture, same outputs once weights match.
    clone = type(model).from_config(model.get_config())
    if not clone.built:
        clone.build_from_config(model.get_build_config())
    clone.set_weights(model.get_weights())
    _assert_same_outputs(model, clone, inputs)

    # .keras file round trip.
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert type(reloaded) is type(model)
    _assert_same_outputs(model, reloaded, inputs)


@pytest.mark.parametrize("name", zoo.list_models())
def test_model_passes_fast_gradient_check(name):
    # The whole model, token ids included: integer inputs are held fixed
    # and every weight (the embedding's too) is checked.
    model = _small_model(name)
    inputs, _ = zoo.random_batch(model, batch_size=2)
    result = gradcheck.check_gradients(model, inputs, fast=True)
    assert result.ok, str(result)
    assert result.num_checked >= len(model.trainable_weights)


# --- text_cnn and text_cnn_kim ---


def test_text_cnn_shapes_and_parameter_count():
    model = zoo.build("text_cnn")

    assert tuple(model.inputs[0].shape) == (None, 10, 300)
    lengths = [
        model.get_layer(f"conv_region_{k}").output.shape[1]
        for k in (6, 5, 4, 3, 2)
    ]
    assert lengths == [5, 6, 7, 8, 9]
    assert tuple(model.get_layer("sentence_features").output.shape) == (
        None,
        5,
    )
    assert tuple(model.output.shape) == (None, 3)
    assert model.count_params() == 6023


def test_text_cnn_with_vocabulary_starts_with_an_embedding():
    model = zoo.build("text_cnn", vocabulary_size=100)

    assert model.inputs[0].dtype == "int32"
    assert tuple(model.inputs[0].shape) == (None, 10)
    assert isinstance(model.layers[1], keras.layers.Embedding)
    assert model.count_params() == 6023 + 100 * 300


def test_text_cnn_kim_follows_the_paper(shared_data):
    model = zoo.build("text_cnn_kim")

    assert model.get_layer("sentence_features").output.shape[-1] == 300
    assert model.get_layer("dropout").rate == 0.5
    constraint = model.get_layer("logits").kernel_constraint
    assert isinstance(constraint, keras.constraints.MaxNorm)
    assert constraint.max_value == 3.0
    assert model.get_layer("token_embedding").input_dim == 20000

    # The default sequence length fits every benchmark sentence.
    # Bytes, not text: a few MR lines are not valid UTF-8.
    longest = max(
        len(line.split()) - 1
        for path in (shared_data / "text").iterdir()
        for line in path.read_bytes().splitlines()
    )
    info = zoo.get_model_info("text_cnn_kim")
    assert longest <= info.defaults["sequence_length"] < 2 * longest


def test_max_norm_caps_each_class_weight_vector():
    model = zoo.build("text_cnn_kim", **SMALL["text_cnn_kim"], max_norm=0.5)
    model.compile(
        optimizer=keras.optimizers.SGD(10.0),
        loss="sparse_categorical_crossentropy",
    )
    inputs, targets = zoo.random_batch(model, batch_size=8)
    model.train_on_batch(inputs, targets)

    kernel = model.get_layer("logits").kernel.numpy()
    # One weight vector per class: the columns of the (300, classes) kernel.
    assert np.linalg.norm(kernel, axis=0).max() <= 0.5 + 1e-5


def test_text_cnn_with_one_region_size():
    model = zoo.build("text_cnn", region_sizes=[3], filters=7)
    assert tuple(model.get_layer("sentence_features").output.shape) == (
        None,
        7,
    )


def test_pretrained_embeddings_are_loaded_and_can_stay_static(rng):
    matrix = rng.standard_normal((50, 8)).astype("float32")
    model = zoo.build(
        "text_cnn",
        vocabulary_size=50,
        embedding_dim=8,
        embeddings=matrix,
        trainable_embeddings=False,
    )
    embedding = model.get_layer("token_embedding")

    np.testing.assert_array_equal(embedding.embeddings.numpy(), matrix)
    assert not embedding.trainable
    card = zoo.describe_model(model)
    assert card.non_trainable_count == 50 * 8


# --- simple_rnn ---


def test_simple_rnn_shapes_and_parameter_count():
    model = zoo.build("simple_rnn")
    rnn = model.get_layer("rnn")

    assert tuple(model.inputs[0].shape) == (None, 10, 300)
    shapes = [tuple(w.shape) for w in rnn.weights]
    assert shapes == [(300, 50), (50, 50), (50,)]
    assert tuple(rnn.output.shape) == (None, 50)
    assert model.get_layer("logits").units == 4
    assert model.count_params() == 17754


def test_simple_rnn_activation_choice_survives_saving(tmp_path):
    hand_written = zoo.build("simple_rnn")
    built_in = zoo.build("simple_rnn", hand_written_activations=False)
    assert hand_written.get_layer("rnn").activation is zoo.rnn.hand_written_tanh
    assert built_in.get_layer("rnn").activation is keras.activations.tanh

    path = tmp_path / "rnn.keras"
    hand_written.save(path)
    reloaded = keras.saving.load_model(path)
    assert reloaded.get_layer("rnn").activation is zoo.rnn.hand_written_tanh


def test_simple_rnn_ignores_padding():
    model = zoo.build("simple_rnn", vocabulary_size=30, sequence_length=6)
    short = zoo.build("simple_rnn", vocabulary_size=30, sequence_length=3)
    short.set_weights(model.get_weights())
    ids = np.array([[5, 6, 7, 0, 0, 0], [8, 9, 10, 11, 12, 13]], "int32")

    padded = model(ids).numpy()
    np.testing.assert_allclose(short(ids[:1, :3]).numpy(), padded[:1])
    assert not np.allclose(padded[0], padded[1])


# --- rnn_language_model, sentence_encoder, sentence_classifier ---


def test_language_model_predicts_every_position():
    model = _small_model("rnn_language_model")
    ids, targets = zoo.random_batch(model, batch_size=4)

    assert tuple(model.output.shape) == (None, 8, 40)
    assert zoo.get_model_info("rnn_language_model").task == "language_model"
    # Token ids in [2, 40), the second half of rows 1 and 3 padded.
    assert ids.dtype == np.int32 and ids.shape == (4, 8)
    assert ids[0].min() >= 2 and ids.max() < 40
    assert not ids[1::2, 4:].any()
    assert targets.shape == (4, 8) and targets.max() < 40


def test_sentence_encoder_returns_the_last_real_hidden_state():
    model = _small_model("rnn_language_model")
    encoder = zoo.sentence_encoder(model)
    hidden_states = keras.Model(model.input, model.get_layer("rnn").output)
    ids, _ = zoo.random_batch(model, batch_size=4)

    vectors = encoder(ids).numpy()
    states = hidden_states(ids).numpy()
    last = (ids != 0).sum(axis=1) - 1
    # Rows 1 and 3 are padded, so h_T is not the state at the last column.
    assert last[1] < ids.shape[1] - 1
    np.testing.assert_allclose(vectors, states[np.arange(4), last], atol=1e-6)
    # Shared weights, not copies.
    assert encoder.get_layer("token_embedding") is model.get_layer(
        "token_embedding"
    )


@pytest.mark.parametrize("trainable", [False, True])
def test_sentence_classifier_freezes_or_fine_tunes(trainable):
    model = _small_model("rnn_language_model")
    classifier = zoo.sentence_classifier(
        model, num_classes=3, trainable=trainable
    )
    encoder_weights = [w.numpy() for w in model.get_layer("rnn").weights]
    head_weights = classifier.get_layer("logits").kernel.numpy()

    classifier.compile(
        optimizer=keras.optimizers.SGD(1.0),
        loss="sparse_categorical_crossentropy",
    )
    ids, _ = zoo.random_batch(model, batch_size=8)
    classifier.train_on_batch(ids, np.arange(8) % 3)

    unchanged = [
        np.array_equal(before, after.numpy())
        for before, after in zip(
            encoder_weights, model.get_layer("rnn").weights
        )
    ]
    assert all(unchanged) is not trainable
    assert not np.array_equal(
        head_weights, classifier.get_layer("logits").kernel.numpy()
    )


def test_sentence_encoder_rejects_other_models():
    with pytest.raises(ValueError, match="rnn_language_model"):
        zoo.sentence_encoder(zoo.build("text_cnn"))


@pytest.mark.parametrize("name", ["text_cnn", "image_cnn_valid"])
def test_activation_choice_picks_kerasdl_or_keras_layers(name):
    def relu_classes(model):
        return {
            type(layer).__name__
            for layer in model.layers
            if layer.name.startswith("relu")
        }

    assert relu_classes(zoo.build(name)) == {"ReLU"}
    built_in = zoo.build(name, hand_written_activations=False)
    assert relu_classes(built_in) == {"Activation"}


# --- image_cnn_valid and image_cnn_same ---

VALID_SHAPES = [
    (None, 28, 28, 6),
    (None, 14, 14, 6),
    (None, 10, 10, 16),
    (None, 5, 5, 16),
    (None, 400),
    (None, 120),
    (None, 84),
    (None, 10),
]
SAME_SHAPES = [
    (None, 32, 32, 6),
    (None, 16, 16, 6),
    (None, 16, 16, 16),
    (None, 8, 8, 16),
    (None, 1024),
    (None, 120),
    (None, 84),
    (None, 10),
]


def _lenet_shapes(card):
    # The shapes after each conv, pool, flatten and dense layer.
    kinds = ("Conv2D", "MaxPooling2D", "Flatten", "Dense")
    return [row.output_shape for row in card.layers if row.class_name in kinds]


@pytest.mark.parametrize(
    "name, shapes, count",
    [
        ("image_cnn_valid", VALID_SHAPES, 62006),
        ("image_cnn_same", SAME_SHAPES, 136886),
    ],
)
def test_lenet_shapes_and_parameter_counts(name, shapes, count):
    card = zoo.describe(name)
    model = zoo.build(name)

    assert isinstance(model, zoo.LeNet)
    assert _lenet_shapes(card) == shapes
    assert card.total_count == count == model.count_params()
    assert model(np.zeros((2, 32, 32, 3), "float32")).shape == (2, 10)


def test_lenet_works_on_mnist_and_returns_its_arguments():
    model = zoo.build("image_cnn_valid", input_shape=(28, 28, 1))

    assert model(np.zeros((3, 28, 28, 1), "float32")).shape == (3, 10)
    assert model.count_params() == 44426
    config = model.get_config()
    assert config["num_classes"] == 10
    assert config["padding"] == "valid"
    assert tuple(config["input_shape"]) == (28, 28, 1)
    assert config["hand_written_activations"] is True


def test_reloaded_lenet_can_be_exported(tmp_path):
    # Keras exports a subclassed model only once it has been called.
    zoo.build("image_cnn_same", **SMALL["image_cnn_same"]).save(
        tmp_path / "lenet.keras"
    )
    reloaded = keras.saving.load_model(tmp_path / "lenet.keras")
    reloaded.export(tmp_path / "saved_model", verbose=False)
    assert (tmp_path / "saved_model" / "saved_model.pb").is_file()


@pytest.mark.parametrize(
    "padding, size, minimum", [("valid", 15, 16), ("same", 3, 4)]
)
def test_lenet_rejects_too_small_images(padding, size, minimum):
    zoo.build("image_cnn_valid", padding=padding, input_shape=(minimum,) * 3)
    with pytest.raises(ValueError, match=f"at least {minimum}") as error:
        zoo.build(
            "image_cnn_valid", padding=padding, input_shape=(size, size, 1)
        )
    assert f"Received: input_shape=({size}, {size}, 1)" in str(error.value)


# --- Registry ---


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError) as error:
        zoo.build("text_cnnn")
    message = str(error.value)
    assert "'text_cnn'" in message
    assert "kerasdl.zoo.list_models()" in message
    assert message.endswith("Received: name='text_cnnn'")


def test_unknown_keyword_lists_the_accepted_ones():
    with pytest.raises(TypeError) as error:
        zoo.build("text_cnn", fliters=2)
    message = str(error.value)
    assert "'fliters'" in message
    assert "filters, " in message and "region_sizes" in message
    assert message.endswith("Received: fliters=2")


@pytest.mark.parametrize(
    "name, overrides, argument",
    [
        ("text_cnn", {"num_classes": 1}, "num_classes"),
        ("text_cnn", {"sequence_length": 5}, "sequence_length"),
        ("text_cnn", {"region_sizes": (3, 3)}, "region_sizes"),
        ("text_cnn", {"filters": 0}, "filters"),
        ("text_cnn_kim", {"dropout": 1.0}, "dropout"),
        ("text_cnn_kim", {"max_norm": 0}, "max_norm"),
        ("text_cnn_kim", {"vocabulary_size": 2}, "vocabulary_size"),
        ("simple_rnn", {"units": -1}, "units"),
        ("simple_rnn", {"embeddings": np.zeros((5, 300))}, "embeddings"),
        (
            "simple_rnn",
            {"vocabulary_size": 5, "embeddings": np.zeros((5, 30))},
            "embeddings",
        ),
        ("rnn_language_model", {"vocabulary_size": None}, "vocabulary_size"),
        ("image_cnn_valid", {"padding": "full"}, "padding"),
        ("image_cnn_same", {"num_classes": 0}, "num_classes"),
    ],
)
def test_invalid_values_name_the_argument(name, overrides, argument):
    with pytest.raises(ValueError, match=f"`{argument}`") as error:
        zoo.build(name, **overrides)
    assert "Received: " in str(error.value)


def test_sequence_length_error_gives_the_largest_region_size():
    with pytest.raises(ValueError, match="largest region size, 6"):
        zoo.build("text_cnn", sequence_length=5)


def test_flags_must_be_booleans():
    with pytest.raises(TypeError, match="hand_written_activations"):
        zoo.build("simple_rnn", hand_written_activations="False")


def test_list_models_takes_wildcards():
    assert zoo.list_models("text_*") == ["text_cnn", "text_cnn_kim"]
    assert zoo.list_models("image_cnn_*") == [
        "image_cnn_same",
        "image_cnn_valid",
    ]
    assert {
        "text_cnn",
        "text_cnn_kim",
        "simple_rnn",
        "rnn_language_model",
        "image_cnn_valid",
        "image_cnn_same",
    } <= set(zoo.list_models())


def test_model_info_gives_task_source_and_defaults():
    info = zoo.get_model_info("simple_rnn")

    assert info.task == "text_classification"
    assert "Elman" in info.source
    assert info.defaults["units"] == 50
    assert info.defaults["hand_written_activations"] is True
    assert info.builder is zoo.rnn.simple_rnn
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.task = "language_model"


@pytest.fixture
def user_model():
    """Registers `test_user_mlp` for one test, then removes it."""

    @zoo.register(task="image_classification", source="a test")
    def test_user_mlp(units=4, num_classes=2):
        inputs = keras.Input((3,))
        hidden = keras.layers.Dense(units, activation="relu")(inputs)
        outputs = keras.layers.Dense(num_classes, activation="softmax")(hidden)
        return keras.Model(inputs, outputs, name="test_user_mlp")

    yield test_user_mlp
    zoo.unregister("test_user_mlp")


def test_registered_model_is_listed_built_and_described(user_model):
    assert zoo.list_models("test_user_*") == ["test_user_mlp"]
    model = zoo.build("test_user_mlp", units=5)
    assert model.count_params() == (3 * 5 + 5) + (5 * 2 + 2)
    assert zoo.get_model_info("test_user_mlp").defaults == {
        "units": 4,
        "num_classes": 2,
    }
    assert "Total params: 26" in str(zoo.describe("test_user_mlp"))


def test_duplicate_registration_needs_overwrite(user_model):
    with pytest.raises(ValueError, match="already registered"):
        zoo.register("test_user_mlp", task="image_classification")(user_model)
    zoo.register("test_user_mlp", task="language_model", overwrite=True)(
        user_model
    )
    assert zoo.get_model_info("test_user_mlp").task == "language_model"


def test_registration_rejects_unknown_tasks_and_required_arguments():
    with pytest.raises(ValueError, match="Received: task='detection'"):
        zoo.register(task="detection")

    def needs_units(units):
        return None

    with pytest.raises(TypeError, match="default value"):
        zoo.register(task="image_classification")(needs_units)
    assert "needs_units" not in zoo.list_models()


# --- Model cards and the describe command ---


def test_text_cnn_card():
    card = zoo.describe("text_cnn")
    table = str(card)

    for length in (5, 6, 7, 8, 9):
        assert f"(None, {length}, 1)" in table
    assert "Total params: 6,023" in table
    assert "(6, 300, 1)" in table
    assert card.to_table() == table
    data = json.loads(json.dumps(card.to_dict()))
    assert data["total_count"] == 6023
    assert data["arguments"]["region_sizes"] == [6, 5, 4, 3, 2]
    conv = next(row for row in data["layers"] if row["name"] == "conv_region_6")
    assert conv["output_shape"] == [None, 5, 1]
    assert conv["count"] == 6 * 300 + 1


def test_simple_rnn_card_explains_the_missing_cell_state():
    card = zoo.describe("simple_rnn")
    table = str(card)

    assert "Total params: 17,754" in table
    assert "no cell state" in card.note
    assert "num_classes = 4 units, not 50" in card.note
    assert card.note in table
    rows = {row.name: row for row in card.layers}
    assert [w.shape for w in rows["rnn"].weights] == [
        (300, 50),
        (50, 50),
        (50,),
    ]
    assert rows["logits"].output_shape == (None, 4)


def test_describe_model_handles_any_keras_model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    card = zoo.describe_model(model)
    assert card.total_count == 15
    assert card.layers[-1].output_shape == (None, 3)

    with pytest.raises(TypeError, match="keras.Model"):
        zoo.describe_model(keras.layers.Dense(3))


def test_describe_command_prints_table_and_json(capsys):
    assert cli_main(["describe", "text_cnn", "--set", "num_classes=2"]) == 0
    assert "Total params: 6,017" in capsys.readouterr().out

    argv = ["describe", "image_cnn_same", "--json"]
    assert cli_main(argv + ["--set", "input_shape=(28, 28, 1)"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["arguments"]["input_shape"] == [28, 28, 1]
    assert data["layers"][0]["output_shape"] == [None, 28, 28, 6]

    argv = ["describe", "image_cnn_valid", "--set", "padding=same"]
    assert cli_main(argv) == 0
    assert "(None, 32, 32, 6)" in capsys.readouterr().out


def test_describe_command_reports_errors(capsys):
    assert cli_main(["describe", "text_cnnn"]) == 2
    assert "Did you mean 'text_cnn'" in capsys.readouterr().err
    assert cli_main(["describe", "text_cnn", "--set", "filters"]) == 2
    assert "key=value" in capsys.readouterr().err
    assert cli_main(["describe"]) == 0
    assert "rnn_language_model" in capsys.readouterr().out


# --- Mixed precision and the JAX backend ---


@pytest.mark.parametrize("name", ["text_cnn", "image_cnn_valid", "simple_rnn"])
def test_softmax_stays_float32_under_mixed_precision(name):
    keras.config.set_dtype_policy("mixed_float16")
    model = _small_model(name)
    inputs, _ = zoo.random_batch(model)

    assert model.get_layer("logits").compute_dtype == "float16"
    assert keras.backend.standardize_dtype(model(inputs).dtype) == "float32"


XLA_FAST_COMPILE = "--xla_backend_optimization_level=0"

JAX_SCRIPT = textwrap.dedent(
    """
    import json
    import sys

    import keras
    from kerasdl import zoo

    assert keras.backend.backend() == "jax", keras.backend.backend()
    small = json.loads(sys.argv[1])
    for name in zoo.list_models():
        model = zoo.build(name, **small.get(name, {}))
        inputs, targets = zoo.random_batch(model, batch_size=2)
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        loss = float(model.train_on_batch(inputs, targets))
        probabilities = model.predict_on_batch(inputs)
        assert probabilities.shape[0] == 2 and loss == loss, name
        print("OK", name, round(loss, 4))
    """
)


@pytest.mark.subprocess
def test_every_model_trains_and_predicts_under_jax():
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed (pip install kerasdl[jax])")
    repository = pathlib.Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        # Tiny models: XLA's compile time (each new weight shape compiles
        # its initializer) dominates, and unoptimised CPU code halves it.
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": " ".join(
            [os.environ.get("XLA_FLAGS", ""), XLA_FAST_COMPILE]
        ).strip(),
        # The checkout first, whether or not kerasdl is pip-installed.
        "PYTHONPATH": os.pathsep.join(
            [str(repository), os.environ.get("PYTHONPATH", "")]
        ),
    }
    small = {name: dict(value) for name, value in SMALL.items()}
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT, json.dumps(small)],
        env=env,
        cwd=repository,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    trained = [
        line.split()[1]
        for line in result.stdout.splitlines()
        if line.startswith("OK ")
    ]
    assert trained == zoo.list_models()


def test_random_batch_finds_an_embedding_inside_a_nested_encoder():
    language_model = zoo.build(
        "rnn_language_model", vocabulary_size=40, sequence_length=6
    )
    classifier = zoo.sentence_classifier(language_model, num_classes=3)

    inputs, targets = zoo.random_batch(classifier, batch_size=4)

    assert inputs.shape == (4, 6) and targets.shape == (4,)
    assert inputs.max() < 40 and targets.max() < 3
