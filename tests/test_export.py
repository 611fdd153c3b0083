"""Tests for kerasdl.export, kerasdl.serving and their CLI subcommands.

Exporting is slow, so every zoo model is trained for one step and
exported once per module (`zoo_exports`); a single fresh Python process
(`reloaded`, which imports only TensorFlow and NumPy) then reloads every
export, runs each signature on known inputs and takes the gradient of the
hand-written-activation model. The tests below assert on its report.
"""

import io
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
from tensorflow.core.protobuf import saved_model_pb2

from kerasdl import data
from kerasdl import export
from kerasdl import serving
from kerasdl import zoo
from kerasdl.cli import main as cli_main
from kerasdl.layers import Tanh

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

# Keras' TensorFlow backend calls np.array(tensor) when saving .keras
# files and converting outputs; NumPy 2 warns about its `copy` keyword.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword"
    ":DeprecationWarning"
)

SENTENCES = [
    "what is the capital of peru ?",
    "who wrote the novel hamlet ?",
    "how many feet are in a mile ?",
    "the film is a charming and moving tale",
    "a dull , lifeless movie",
    "where is the eiffel tower ?",
]
# An unseen word, an empty sentence and one longer than any sequence.
PROBE_SENTENCES = [
    "who is the capital of the novel ?",
    "zzqx qwerty unseen words",
    "",
    " ".join(SENTENCES * 3),
]
VOCABULARY_SIZE = 40

# Ops whose placement TF Serving's GPU build must be free to choose.
COMPUTE_OPS = (
    "MatMul",
    "BatchMatMul",
    "BatchMatMulV2",
    "BatchMatMulV3",
    "Conv2D",
    "Conv",
    "Conv1D",
    "Conv3D",
    "Relu",
    "Sigmoid",
    "Tanh",
    "Softmax",
    "GatherV2",
    "ResourceGather",
)


def _environment():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), env.get("PYTHONPATH", "")]
    )
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


# ---------------------------------------------------------------------------
# Models: one training step, then export
# ---------------------------------------------------------------------------


def _train_one_step(model, inputs, targets):
    """One eager SGD step, so exported weights differ from initial ones."""
    optimizer = keras.optimizers.SGD(learning_rate=0.1)
    loss_function = keras.losses.SparseCategoricalCrossentropy()
    with tf.GradientTape() as tape:
        loss = loss_function(targets, model(inputs, training=True))
    variables = model.trainable_variables
    gradients = tape.gradient(loss, variables)
    optimizer.apply_gradients(zip(gradients, variables))


def _vectorizer(sequence_length):
    return data.make_vectorizer(
        tf.data.Dataset.from_tensor_slices(SENTENCES),
        vocabulary_size=VOCABULARY_SIZE,
        sequence_length=sequence_length,
    )


def _text_case(name, base_dir, rng, policy=None):
    info = zoo.get_model_info(name)
    length = info.defaults["sequence_length"]
    vectorizer = _vectorizer(length)
    if policy is not None:
        keras.config.set_dtype_policy(policy)
    try:
        model = zoo.build(name, vocabulary_size=VOCABULARY_SIZE)
    finally:
        keras.config.set_dtype_policy("float32")
    token_ids = vectorizer(tf.constant(SENTENCES))
    if info.task == "language_model":
        targets = np.roll(token_ids.numpy(), -1, axis=1)
        class_names = None
    else:
        num_classes = info.defaults["num_classes"]
        targets = rng.integers(0, num_classes, size=len(SENTENCES))
        class_names = [f"class_{index}" for index in range(num_classes)]
    _train_one_step(model, token_ids, targets)

    export_name = name if policy is None else f"{name}_mixed"
    path = export.export_model(
        model,
        export_name,
        task=info.task,
        base_dir=base_dir,
        vectorizer=vectorizer,
        class_names=class_names,
        model_card={"model": name, "data": "six example sentences"},
        examples=SENTENCES[:3],
    )
    probe_ids = vectorizer(tf.constant(PROBE_SENTENCES)).numpy()
    if info.task == "language_model":
        expected = _language_model_expectation(model, probe_ids)
    else:
        expected = {"probabilities": _numpy(model(probe_ids, training=False))}
    return {
        "name": export_name,
        "task": info.task,
        "path": str(path),
        "model": model,
        "vectorizer": vectorizer,
        "sequence_length": length,
        "token_ids": probe_ids,
        "expected": expected,
        "tolerance": 1e-5 if policy is None else 2e-3,
    }


def _numpy(tensor):
    return keras.ops.convert_to_numpy(tensor)


def _language_model_expectation(model, token_ids):
    """Sentence vector and next-token distribution, computed in NumPy."""
    probabilities = _numpy(model(token_ids, training=False))
    lengths = (token_ids != 0).sum(axis=1)
    last = np.maximum(lengths - 1, 0)
    rows = np.arange(len(token_ids))
    return {
        "sentence_vector": _numpy(zoo.sentence_encoder(model)(token_ids)),
        "next_token_probabilities": probabilities[rows, last],
    }


def _image_case(name, base_dir, rng, input_shape):
    model = zoo.build(name, input_shape=input_shape, num_classes=4)
    height, width, channels = input_shape
    pixels = rng.integers(0, 256, size=(3, *input_shape), dtype=np.uint8)
    images = pixels.astype("float32") / 255.0
    _train_one_step(model, images, np.array([0, 1, 2]))
    class_names = ["cat", "dog", "ship", "truck"]
    path = export.export_model(
        model,
        name,
        task="image_classification",
        base_dir=base_dir,
        class_names=class_names,
        model_card={"model": name, "metrics": {"test_accuracy": 0.25}},
    )

    # PNG is lossless, so the graph decodes these to exactly `images`.
    files = []
    for index, image in enumerate(pixels):
        files.append(base_dir / f"{name}_{index}.png")
        files[-1].write_bytes(tf.io.encode_png(image).numpy())
    # A colour image of another size: decoded, converted to the model's
    # channels and resized inside the graph.
    other = rng.integers(0, 256, size=(40, 36, 3), dtype=np.uint8)
    files.append(base_dir / f"{name}_other.png")
    files[-1].write_bytes(tf.io.encode_png(other).numpy())
    converted = other.astype("float32") / 255.0
    if channels == 1:
        converted = tf.image.rgb_to_grayscale(converted)
    resized = tf.image.resize(converted, (height, width))[None]
    batch = np.concatenate([images, resized.numpy()])
    return {
        "name": name,
        "task": "image_classification",
        "path": str(path),
        "model": model,
        "images": images,
        "files": [str(file) for file in files],
        "class_names": class_names,
        "expected": {
            "images": _numpy(model(images, training=False)),
            "image_bytes": _numpy(model(batch, training=False)),
        },
        "tolerance": 1e-5,
    }


def _saturated_tanh_model():
    """Flatten -> Dense(2) -> kerasdl Tanh -> Dense(3) -> softmax.

    The first kernel is 1.125 everywhere, so a (4, 4, 1) image of 0.5
    gives both tanh units the pre-activation 16 * 0.5 * 1.125 = 9 exactly.
    There float32 tanh(9) rounds to 1 - 2**-24 and autodiff's
    `1 - tanh(x)**2` gives 1.19e-7, while the hand-written backward pass
    gives the true 6.09e-8: the two differ by a factor of two.
    """
    inputs = keras.Input((4, 4, 1))
    hidden = keras.layers.Flatten()(inputs)
    hidden = keras.layers.Dense(
        2, kernel_initializer=keras.initializers.Constant(1.125)
    )(hidden)
    hidden = Tanh()(hidden)
    outputs = keras.layers.Dense(3, activation="softmax")(hidden)
    return keras.Model(inputs, outputs)


def _small_image_model():
    inputs = keras.Input((4, 4, 1))
    hidden = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(hidden)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def zoo_exports(tmp_path_factory):
    """Every zoo model (and a mixed-precision one), trained and exported."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    base_dir = tmp_path_factory.mktemp("saved_models")
    cases = {}
    for name in zoo.list_models():
        task = zoo.get_model_info(name).task
        if task == "image_classification":
            shape = (32, 32, 3) if name == "image_cnn_same" else (28, 28, 1)
            cases[name] = _image_case(name, base_dir, rng, shape)
        else:
            cases[name] = _text_case(name, base_dir, rng)
    mixed = _text_case("text_cnn", base_dir, rng, policy="mixed_float16")
    cases[mixed["name"]] = mixed

    model = _saturated_tanh_model()
    path = export.export_model(
        model, "tanh_net", task="image_classification", base_dir=base_dir
    )
    np.savez(base_dir / "tanh_net.npz", *[w.numpy() for w in model.weights])
    cases["tanh_net"] = {
        "name": "tanh_net",
        "task": "gradient",
        "path": str(path),
        "weights": str(base_dir / "tanh_net.npz"),
    }
    return base_dir, cases


# ---------------------------------------------------------------------------
# The fresh process that reloads everything
# ---------------------------------------------------------------------------

RELOAD_SCRIPT = textwrap.dedent(
    """
    import json
    import sys

    import numpy as np
    import tensorflow as tf

    manifest = json.load(open(sys.argv[1]))
    arrays = np.load(sys.argv[2])
    report = {}


    def describe(specs):
        return {k: [v.dtype.name, v.shape.as_list()] for k, v in specs.items()}


    def tanh_net_gradient(loaded, weights_file):
        weights = np.load(weights_file)
        kernel, bias, kernel_2, bias_2 = (
            weights[f"arr_{i}"].astype("float64") for i in range(4)
        )
        images = tf.fill((1, 4, 4, 1), 0.5)
        with tf.GradientTape() as tape:
            tape.watch(images)
            outputs = loaded.signatures["serving_default"](images=images)
            first = outputs["probabilities"][:, 0]
        gradient = tape.gradient(first, images).numpy().reshape(-1)

        # The same gradient by hand, in float64, with each tanh'.
        pre = np.full(16, 0.5) @ kernel + bias  # (2,), both 9
        logits = np.tanh(pre) @ kernel_2 + bias_2
        p = np.exp(logits - logits.max())
        p /= p.sum()
        d_logits = p[0] * ((np.arange(3) == 0) - p)  # d p0 / d logits
        d_hidden = kernel_2 @ d_logits
        e = np.exp(-2 * np.abs(pre))
        exact = kernel @ (d_hidden * 4 * e / (1 + e) ** 2)
        tanh32 = np.tanh(pre.astype("float32"))
        naive = kernel @ (d_hidden * (1 - tanh32.astype("float64") ** 2))
        return {
            "pre_activation": pre.tolist(),
            "loaded": gradient.tolist(),
            "hand_written": exact.tolist(),
            "autodiff_float32": naive.tolist(),
        }


    for case in manifest:
        loaded = tf.saved_model.load(case["path"])
        entry = {"signatures": list(loaded.signatures), "io": {}}
        for name, function in loaded.signatures.items():
            entry["io"][name] = {
                "inputs": describe(function.structured_input_signature[1]),
                "outputs": describe(
                    {
                        k: v if isinstance(v, tf.TensorSpec)
                        else tf.TensorSpec.from_tensor(v)
                        for k, v in function.structured_outputs.items()
                    }
                ),
            }
        entry["results"] = {}
        for call in case.get("calls", []):
            inputs = {}
            for key, value in call["inputs"].items():
                if value["kind"] == "array":
                    inputs[key] = tf.constant(arrays[value["key"]])
                elif value["kind"] == "strings":
                    inputs[key] = tf.constant(value["values"])
                else:
                    contents = [open(p, "rb").read() for p in value["paths"]]
                    inputs[key] = tf.constant(contents)
            outputs = loaded.signatures[call["signature"]](**inputs)
            result = {}
            for key, expected_key in call["expected"].items():
                got = outputs[key].numpy()
                result[key] = {
                    "dtype": got.dtype.name,
                    "max_abs_diff": float(
                        np.max(np.abs(got - arrays[expected_key]))
                    ),
                }
            for key in ("class_id", "class_name"):
                if key in outputs:
                    values = outputs[key].numpy().tolist()
                    result[key] = [
                        v.decode() if isinstance(v, bytes) else v
                        for v in values
                    ]
            entry["results"][call["label"]] = result
        if case.get("weights"):
            try:
                entry["gradient"] = tanh_net_gradient(loaded, case["weights"])
            except LookupError as error:
                # What a SavedModel without its custom gradients raises.
                entry["gradient"] = {"error": str(error)[:500]}
        report[case["name"]] = entry

    report["kerasdl_imported"] = "kerasdl" in sys.modules
    json.dump(report, open(sys.argv[3], "w"))
    """
)


def _array_input(arrays, key, value):
    arrays[key] = value
    return {"kind": "array", "key": key}


def _calls_for(case, arrays):
    name = case["name"]
    calls = []
    expected = {}
    for output, value in case["expected"].items():
        expected[output] = f"{name}/expected/{output}"
        arrays[expected[output]] = value
    if case["task"] == "image_classification":
        calls.append(
            {
                "label": "images",
                "signature": "serving_default",
                "inputs": {
                    "images": _array_input(
                        arrays, f"{name}/images", case["images"]
                    )
                },
                "expected": {"probabilities": expected["images"]},
            }
        )
        calls.append(
            {
                "label": "image_bytes",
                "signature": "image_bytes",
                "inputs": {
                    "image_bytes": {"kind": "files", "paths": case["files"]}
                },
                "expected": {"probabilities": expected["image_bytes"]},
            }
        )
        return calls
    outputs = {key: expected[key] for key in case["expected"]}
    calls.append(
        {
            "label": "sentences",
            "signature": "serving_default",
            "inputs": {
                "sentences": {"kind": "strings", "values": PROBE_SENTENCES}
            },
            "expected": outputs,
        }
    )
    calls.append(
        {
            "label": "token_ids",
            "signature": "token_ids",
            "inputs": {
                "token_ids": _array_input(
                    arrays, f"{name}/token_ids", case["token_ids"]
                )
            },
            "expected": outputs,
        }
    )
    return calls


@pytest.fixture(scope="module")
def reloaded(zoo_exports):
    """Fresh processes: the reload report, saved_model_cli, predict."""
    base_dir, cases = zoo_exports
    arrays = {}
    manifest = []
    for case in cases.values():
        entry = {"name": case["name"], "path": case["path"]}
        if "expected" in case:
            entry["calls"] = _calls_for(case, arrays)
        if "weights" in case:
            entry["weights"] = case["weights"]
        manifest.append(entry)
    (base_dir / "manifest.json").write_text(json.dumps(manifest))
    np.savez(base_dir / "arrays.npz", **arrays)
    (base_dir / "reload.py").write_text(RELOAD_SCRIPT)

    # saved_model_cli runs beside the reload process, to share the wait.
    cli = subprocess.Popen(
        [
            "bash",
            "-c",
            f"{sys.executable} -m tensorflow.python.tools.saved_model_cli "
            f"show --all --dir {cases['text_cnn_kim']['path']} && echo "
            f"=== && {sys.executable} -m "
            "tensorflow.python.tools.saved_model_cli show --all --dir "
            f"{cases['image_cnn_same']['path']}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_environment(),
    )
    # `kerasdl predict` reads two sentences from stdin, also alongside.
    predict = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kerasdl.cli",
            "predict",
            "text_cnn",
            "-",
            "--base-dir",
            str(base_dir),
            "--json",
            "--top-k",
            "2",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_environment(),
        cwd=base_dir,
    )
    completed = subprocess.run(
        [
            sys.executable,
            str(base_dir / "reload.py"),
            str(base_dir / "manifest.json"),
            str(base_dir / "arrays.npz"),
            str(base_dir / "report.json"),
        ],
        capture_output=True,
        text=True,
        env=_environment(),
        timeout=300,
    )
    cli_output, cli_errors = cli.communicate(timeout=300)
    predict_output = predict.communicate(
        "\n".join(PROBE_SENTENCES[:2]) + "\n", timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert cli.returncode == 0, cli_errors[-3000:]
    report = json.loads((base_dir / "report.json").read_text())
    return {
        "report": report,
        "saved_model_cli": cli_output,
        "predict": (predict.returncode, *predict_output),
    }


# ---------------------------------------------------------------------------
# Every zoo model: signatures and outputs after reloading
# ---------------------------------------------------------------------------

SIGNATURES = {
    "text_classification": {
        "serving_default": ("sentences", ["string", [None]]),
        "token_ids": ("token_ids", ["int64", [None, "length"]]),
    },
    "language_model": {
        "serving_default": ("sentences", ["string", [None]]),
        "token_ids": ("token_ids", ["int64", [None, "length"]]),
    },
    "image_classification": {
        "serving_default": ("images", ["float32", [None, "H", "W", "C"]]),
        "image_bytes": ("image_bytes", ["string", [None]]),
    },
}


def _expected_spec(case, spec):
    dtype, shape = spec
    image_shape = list(case["images"].shape[1:]) if "images" in case else []
    sizes = {"length": case.get("sequence_length")}
    sizes.update(zip(("H", "W", "C"), image_shape))
    return [dtype, [sizes.get(size, size) for size in shape]]


@pytest.mark.subprocess
@pytest.mark.parametrize("name", zoo.list_models())
def test_reloaded_signatures_are_named_and_typed(name, zoo_exports, reloaded):
    _, cases = zoo_exports
    report = reloaded["report"]
    case = cases[name]
    entry = report[name]
    wanted = SIGNATURES[case["task"]]
    assert sorted(entry["signatures"]) == sorted(wanted)
    for signature, (input_name, spec) in wanted.items():
        io = entry["io"][signature]
        assert io["inputs"] == {input_name: _expected_spec(case, spec)}
        if case["task"] == "language_model":
            units = case["expected"]["sentence_vector"].shape[-1]
            assert io["outputs"] == {
                "sentence_vector": ["float32", [None, units]],
                "next_token_probabilities": [
                    "float32",
                    [None, VOCABULARY_SIZE],
                ],
            }
        else:
            num_classes = case["expected"][next(iter(case["expected"]))]
            assert io["outputs"] == {
                "probabilities": ["float32", [None, num_classes.shape[-1]]],
                "class_id": ["int64", [None]],
                "class_name": ["string", [None]],
            }


@pytest.mark.subprocess
@pytest.mark.parametrize("name", [*zoo.list_models(), "text_cnn_mixed"])
def test_reloaded_outputs_match_the_keras_model(name, zoo_exports, reloaded):
    _, cases = zoo_exports
    report = reloaded["report"]
    case = cases[name]
    results = report[name]["results"]
    assert set(results) in (
        {"sentences", "token_ids"},
        {"images", "image_bytes"},
    )
    for label, outputs in results.items():
        for output in case["expected"]:
            if output not in outputs:
                continue
            assert outputs[output]["dtype"] == "float32", (label, output)
            assert outputs[output]["max_abs_diff"] <= case["tolerance"], (
                label,
                output,
            )
        if "class_id" in outputs:
            # The class name is the constant lookup of the class id.
            names = case.get("class_names") or [
                f"class_{i}" for i in range(100)
            ]
            assert outputs["class_name"] == [
                names[i] for i in outputs["class_id"]
            ]
    assert report["kerasdl_imported"] is False


@pytest.mark.subprocess
def test_saved_model_cli_lists_named_inputs_and_outputs(reloaded):
    output = reloaded["saved_model_cli"]
    text, image = output.split("===")
    for signature in ("serving_default", "token_ids"):
        assert f"signature_def['{signature}']" in text
    assert "inputs['sentences'] tensor_info:" in text
    assert "inputs['token_ids'] tensor_info:" in text
    assert "shape: (-1, 64)" in text
    for signature in ("serving_default", "image_bytes"):
        assert f"signature_def['{signature}']" in image
    assert "inputs['images'] tensor_info:" in image
    assert "shape: (-1, 32, 32, 3)" in image
    assert "inputs['image_bytes'] tensor_info:" in image
    for name in ("probabilities", "class_id", "class_name"):
        assert f"outputs['{name}'] tensor_info:" in text
        assert f"outputs['{name}'] tensor_info:" in image


@pytest.mark.subprocess
def test_hand_written_gradient_survives_reload(reloaded):
    gradient = reloaded["report"]["tanh_net"]["gradient"]
    assert "error" not in gradient, gradient.get("error")
    assert gradient["pre_activation"] == pytest.approx([9.0, 9.0])
    loaded = np.array(gradient["loaded"])
    hand_written = np.array(gradient["hand_written"])
    autodiff = np.array(gradient["autodiff_float32"])
    assert np.all(np.abs(hand_written) > 1e-10)
    # The reloaded graph applies the saved custom gradient ...
    np.testing.assert_allclose(loaded, hand_written, rtol=1e-3)
    # ... which this input tells apart from autodiff's float32 formula.
    assert np.all(np.abs(loaded - autodiff) > 0.4 * np.abs(autodiff))


# ---------------------------------------------------------------------------
# The files of a version directory
# ---------------------------------------------------------------------------


def _graph_nodes(saved_model):
    meta_graph = saved_model.meta_graphs[0]
    yield from meta_graph.graph_def.node
    for function in meta_graph.graph_def.library.function:
        yield from function.node_def


@pytest.mark.parametrize("name", zoo.list_models())
def test_no_device_pins_and_no_xla(name, zoo_exports):
    _, cases = zoo_exports
    saved_model = saved_model_pb2.SavedModel()
    path = pathlib.Path(cases[name]["path"]) / "saved_model.pb"
    saved_model.ParseFromString(path.read_bytes())
    compute_nodes = 0
    for node in _graph_nodes(saved_model):
        if node.op in COMPUTE_OPS:
            compute_nodes += 1
            assert node.device == "", (node.name, node.device)
        xla = node.attr.get("_XlaMustCompile")
        assert not (xla is not None and xla.b), node.name
    for function in saved_model.meta_graphs[0].graph_def.library.function:
        xla = function.attr.get("_XlaMustCompile")
        assert not (xla is not None and xla.b), function.signature.name
    assert compute_nodes > 0


def test_custom_gradients_are_saved(zoo_exports):
    _, cases = zoo_exports
    saved_model = saved_model_pb2.SavedModel()
    path = pathlib.Path(cases["tanh_net"]["path"]) / "saved_model.pb"
    saved_model.ParseFromString(path.read_bytes())
    library = saved_model.meta_graphs[0].graph_def.library
    assert len(library.registered_gradients) > 0


@pytest.mark.parametrize("name", ["text_cnn_kim", "image_cnn_same"])
def test_warmup_requests_parse_as_prediction_logs(name, zoo_exports):
    prediction_log_pb2 = pytest.importorskip(
        "tensorflow_serving.apis.prediction_log_pb2"
    )
    _, cases = zoo_exports
    path = pathlib.Path(cases[name]["path"]) / "assets.extra"
    records = tf.data.TFRecordDataset(str(path / export.WARMUP_FILE))
    seen = {}
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        assert request.model_spec.name == name
        tensors = {
            key: tf.make_ndarray(value) for key, value in request.inputs.items()
        }
        seen.setdefault(request.model_spec.signature_name, []).append(
            {key: value.shape for key, value in tensors.items()}
        )
    if name == "text_cnn_kim":
        assert seen == {
            "serving_default": [{"sentences": (1,)}, {"sentences": (3,)}],
            "token_ids": [{"token_ids": (1, 64)}, {"token_ids": (3, 64)}],
        }
    else:
        assert seen["serving_default"] == [
            {"images": (1, 32, 32, 3)},
            {"images": (3, 32, 32, 3)},
        ]
        assert seen["image_bytes"] == [
            {"image_bytes": (1,)},
            {"image_bytes": (3,)},
        ]


def test_model_card_and_readme(zoo_exports):
    _, cases = zoo_exports
    extra = pathlib.Path(cases["image_cnn_same"]["path"]) / "assets.extra"
    card = json.loads((extra / export.MODEL_CARD_FILE).read_text())
    assert card["name"] == "image_cnn_same"
    assert card["version"] == 1
    assert card["model"] == "image_cnn_same"
    assert card["task"] == "image_classification"
    assert card["class_names"] == ["cat", "dog", "ship", "truck"]
    assert card["metrics"] == {"test_accuracy": 0.25}
    assert card["hand_written_gradients"] == ["ReLU"]
    assert card["signatures"]["image_bytes"]["inputs"] == {
        "image_bytes": {"dtype": "string", "shape": [None]}
    }
    assert list(card["signatures"]) == ["serving_default", "image_bytes"]
    readme = (extra / export.README_FILE).read_text()
    assert "| `serving_default` | `images` float32 [None, 32, 32, 3]" in readme
    assert "| test_accuracy | 0.25 |" in readme


# ---------------------------------------------------------------------------
# Versions, atomicity, overwrite
# ---------------------------------------------------------------------------


@pytest.fixture
def small_model():
    return _small_image_model()


def _export_small(model, base_dir, **kwargs):
    return export.export_model(
        model,
        "small",
        task="image_classification",
        base_dir=base_dir,
        warmup=False,
        **kwargs,
    )


def test_versions_increment_and_overwrite_rules(small_model, tmp_path):
    assert export.latest_version(tmp_path / "small") is None
    first = _export_small(small_model, tmp_path)
    second = _export_small(small_model, tmp_path)
    assert (first.name, second.name) == ("1", "2")
    assert export.latest_version(tmp_path / "small") == 2
    assert (second / "saved_model.pb").is_file()

    with pytest.raises(FileExistsError, match="Received: version=1"):
        _export_small(small_model, tmp_path, version=1)

    replaced = _export_small(
        small_model,
        tmp_path,
        version=1,
        overwrite=True,
        class_names=["left", "right"],
    )
    card = json.loads(
        (replaced / "assets.extra" / export.MODEL_CARD_FILE).read_text()
    )
    assert card["class_names"] == ["left", "right"]
    assert _export_small(small_model, tmp_path, version=7).name == "7"
    assert _export_small(small_model, tmp_path).name == "8"
    assert sorted(p.name for p in (tmp_path / "small").iterdir()) == [
        "1",
        "2",
        "7",
        "8",
    ]


def test_crash_mid_export_leaves_nothing(small_model, tmp_path, monkeypatch):
    def crash(obj, export_dir, **kwargs):
        # Write part of a SavedModel, as a real crash would, then fail.
        pathlib.Path(export_dir).mkdir(parents=True)
        (pathlib.Path(export_dir) / "saved_model.pb").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        _export_small(small_model, tmp_path)
    assert list((tmp_path / "small").iterdir()) == []
    assert export.latest_version(tmp_path / "small") is None


def test_failed_overwrite_keeps_the_old_version(
    small_model, tmp_path, monkeypatch
):
    original = _export_small(small_model, tmp_path)
    before = (original / "saved_model.pb").read_bytes()
    monkeypatch.setattr(
        export, "_write_assets_extra", _raise(RuntimeError("killed"))
    )
    with pytest.raises(RuntimeError, match="killed"):
        _export_small(small_model, tmp_path, version=1, overwrite=True)
    assert [p.name for p in (tmp_path / "small").iterdir()] == ["1"]
    assert (original / "saved_model.pb").read_bytes() == before


def _raise(error):
    def function(*args, **kwargs):
        raise error

    return function


def test_stale_temporaries_are_cleaned_but_live_ones_kept(
    small_model, tmp_path
):
    model_dir = tmp_path / "small"
    # pid 2**22 + 1 is above Linux's pid_max default: a dead exporter.
    stale = model_dir / f".tmp-1-{2**22 + 1}-abc"
    live = model_dir / f".tmp-1-{os.getppid()}-def"
    orphan = model_dir / f".old-3-{2**22 + 1}-abc"
    for directory in (stale, live, orphan):
        directory.mkdir(parents=True)
        (directory / "saved_model.pb").write_bytes(b"x")
    path = _export_small(small_model, tmp_path)
    # The overwrite killed between its renames is restored as version 3,
    # so the new export is version 4.
    assert sorted(p.name for p in model_dir.iterdir()) == [
        live.name,
        "3",
        "4",
    ]
    assert path.name == "4"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"task": "speech"}, ValueError, "Received: task='speech'"),
        ({"version": 0}, ValueError, "Received: version=0"),
        ({"version": "2"}, TypeError, "Received: version='2'"),
        ({"name": "a/b"}, ValueError, "Received: name='a/b'"),
        ({"class_names": ["one"]}, ValueError, "Received: class_names"),
        ({"image_shape": (5, 5, 1)}, ValueError, "Received: image_shape"),
    ],
)
def test_bad_arguments_are_rejected(
    small_model, tmp_path, kwargs, error, match
):
    arguments = {
        "name": "small",
        "task": "image_classification",
        "base_dir": tmp_path,
    }
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        export.export_model(small_model, **arguments)
    assert not (tmp_path / "small").exists() or not any(
        (tmp_path / "small").iterdir()
    )


def test_text_export_rejects_a_mismatched_vectorizer(tmp_path):
    model = zoo.build("text_cnn", vocabulary_size=VOCABULARY_SIZE)
    with pytest.raises(ValueError, match="output_sequence_length=12"):
        export.export_model(
            model,
            "text_cnn",
            task="text_classification",
            base_dir=tmp_path,
            vectorizer=_vectorizer(12),
        )


# ---------------------------------------------------------------------------
# export_run and `kerasdl export`
# ---------------------------------------------------------------------------


def _write_run_dir(run_dir, case):
    run_dir.mkdir()
    case["model"].save(run_dir / "model.keras")
    vocabulary = [str(t) for t in case["vectorizer"].get_vocabulary()]
    (run_dir / "vocabulary.txt").write_text("\n".join(vocabulary) + "\n")
    (run_dir / "vectorizer.json").write_text(
        json.dumps(
            {
                "sequence_length": case["sequence_length"],
                "standardize": data.STANDARDIZE_NAME,
            }
        )
    )
    (run_dir / "class_names.json").write_text(
        json.dumps([f"class_{i}" for i in range(3)])
    )
    (run_dir / "metrics.json").write_text(json.dumps({"test_accuracy": 0.5}))
    (run_dir / "config.json").write_text(
        json.dumps({"model": "text_cnn", "data": "trec", "epochs": 1})
    )


def test_export_run_cli_round_trip(zoo_exports, tmp_path, capsys):
    _, cases = zoo_exports
    case = cases["text_cnn"]
    run_dir = tmp_path / "run"
    _write_run_dir(run_dir, case)

    code = cli_main(["export", str(run_dir), "--base-dir", str(tmp_path)])
    out, _ = capsys.readouterr()
    assert code == 0
    path = pathlib.Path(out.strip())
    assert path == tmp_path / "text_cnn" / "1"

    card = json.loads((path / "assets.extra" / "model_card.json").read_text())
    assert card["metrics"] == {"test_accuracy": 0.5}
    assert card["data"] == "trec"
    assert card["class_names"] == ["class_0", "class_1", "class_2"]
    served = serving.load_export(path)
    outputs = served.predict_sentences(PROBE_SENTENCES)
    np.testing.assert_allclose(
        outputs["probabilities"],
        case["expected"]["probabilities"],
        atol=1e-5,
    )

    code = cli_main(["export", str(tmp_path / "missing")])
    _, err = capsys.readouterr()
    assert code == 2
    assert "Received: run_dir=" in err


def test_export_run_from_a_bare_keras_file(zoo_exports, tmp_path):
    _, cases = zoo_exports
    case = cases["image_cnn_same"]
    case["model"].save(tmp_path / "best.keras")

    # No config.json: the task is read off the input shape, the name off
    # the file.
    path = export.export_run(tmp_path / "best.keras", base_dir=tmp_path)
    assert path == tmp_path / "best" / "1"
    served = serving.load_export(path)
    assert served.task == "image_classification"
    np.testing.assert_allclose(
        served.predict_images(case["images"])["probabilities"],
        case["expected"]["images"],
        atol=1e-5,
    )


# ---------------------------------------------------------------------------
# Serving: `kerasdl predict` and the request checks
# ---------------------------------------------------------------------------


@pytest.mark.subprocess
def test_predict_cli_reads_sentences_from_stdin(zoo_exports, reloaded):
    _, cases = zoo_exports
    returncode, stdout, stderr = reloaded["predict"]
    assert returncode == 0, stderr[-2000:]
    results = json.loads(stdout)
    expected = cases["text_cnn"]["expected"]["probabilities"]
    assert [r["input"] for r in results] == PROBE_SENTENCES[:2]
    for result, row in zip(results, expected):
        best = int(np.argmax(row))
        assert result["class_id"] == best
        assert result["class_name"] == f"class_{best}"
        assert result["top_k"][0] == [
            f"class_{best}",
            pytest.approx(row[best], abs=1e-5),
        ]
        assert len(result["top_k"]) == 2


def test_predict_cli_on_image_files(zoo_exports, capsys):
    base_dir, cases = zoo_exports
    case = cases["image_cnn_valid"]
    code = cli_main(["predict", case["path"], *case["files"], "--top-k", "4"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.strip().split("\n")
    assert len(lines) == len(case["files"])
    expected = case["expected"]["image_bytes"]
    for line, file, row in zip(lines, case["files"], expected):
        path, class_name, best = line.split("\t")
        assert path == file
        assert class_name == case["class_names"][int(np.argmax(row))]
        assert len(best.split()) == 4


def test_predict_cli_on_the_language_model(zoo_exports, capsys):
    base_dir, cases = zoo_exports
    case = cases["rnn_language_model"]
    code = cli_main(
        [
            "predict",
            "rnn_language_model",
            PROBE_SENTENCES[0],
            "--base-dir",
            str(base_dir),
            "--json",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    (result,) = json.loads(out)
    vector = case["expected"]["sentence_vector"][0]
    assert result["sentence_vector_norm"] == pytest.approx(
        np.linalg.norm(vector), abs=1e-4
    )
    # Ids past the adapted vocabulary (the model has room for more) are
    # shown as their id.
    vocabulary = case["vectorizer"].get_vocabulary()
    labels = vocabulary + [str(i) for i in range(len(vocabulary), 100)]
    row = case["expected"]["next_token_probabilities"][0]
    best = np.argsort(-row, kind="stable")[:3]
    assert [token for token, _ in result["top_k"]] == [labels[i] for i in best]
    assert [p for _, p in result["top_k"]] == pytest.approx(row[best], abs=1e-5)


@pytest.mark.parametrize(
    ("make_inputs", "message"),
    [
        (lambda d: [str(d / "missing.png")], "No such image file"),
        (lambda d: [str(d / "broken.png")], "Cannot decode the image file"),
        (lambda d: ["a sentence"], "classifies image files"),
        (lambda d: [], "Give at least one"),
    ],
)
def test_predict_cli_bad_requests_exit_2(
    zoo_exports, tmp_path, capsys, make_inputs, message
):
    _, cases = zoo_exports
    (tmp_path / "broken.png").write_bytes(b"this is not a PNG file")
    case = cases["image_cnn_same"]
    code = cli_main(["predict", case["path"], *make_inputs(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert out == ""


def test_predict_cli_unknown_model_exits_2(tmp_path, capsys):
    code = cli_main(["predict", "nothing", "hi", "--base-dir", str(tmp_path)])
    _, err = capsys.readouterr()
    assert code == 2
    assert "Received: path='nothing'" in err


def test_predict_cli_empty_stdin_exits_2(zoo_exports, capsys, monkeypatch):
    _, cases = zoo_exports
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n\n"))
    code = cli_main(["predict", cases["text_cnn"]["path"], "-"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "Give at least one" in err


@pytest.fixture
def served_small(small_model, tmp_path):
    return serving.load_export(_export_small(small_model, tmp_path))


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"images": np.zeros((2, 4, 4, 1), "uint8")}, "not 0-255 integers"),
        ({"images": np.full((2, 4, 4, 1), "x")}, "must be floating-point"),
        ({"images": np.zeros((4, 4, 1), "float32")}, "must have rank 4"),
        ({"images": np.zeros((0, 4, 4, 1), "float32")}, "empty batch"),
        ({"images": np.zeros((1, 5, 4, 1), "float32")}, "shape=(1, 5, 4, 1)"),
        ({"pictures": np.zeros((1, 4, 4, 1))}, "Received: inputs=['pic"),
    ],
)
def test_served_model_rejects_bad_requests(served_small, inputs, message):
    with pytest.raises(serving.RequestError) as raised:
        served_small(inputs)
    assert message in str(raised.value)


def test_served_model_answers_good_requests(served_small, small_model):
    images = np.random.default_rng(0).uniform(size=(3, 4, 4, 1))
    outputs = served_small.predict_images(images)
    np.testing.assert_allclose(
        outputs["probabilities"],
        small_model(images.astype("float32")),
        atol=1e-6,
    )
    assert served_small.task == "image_classification"
    assert served_small.class_names == ["0", "1"]
    assert list(served_small.signatures) == ["serving_default", "image_bytes"]


def test_top_k_orders_and_caps():
    probabilities = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    assert serving.top_k(probabilities, 5, ["a", "b", "c"]) == [
        [("b", 0.5), ("c", 0.3), ("a", 0.2)],
        [("a", 0.6), ("c", 0.3), ("b", 0.1)],
    ]
    with pytest.raises(ValueError, match="Received: k=0"):
        serving.top_k(probabilities, 0)
