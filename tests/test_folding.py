"""Tests of kerasdl/folding.py: text CNNs with the embedding folded in."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdl import export
from kerasdl import folding
from kerasdl import zoo
from kerasdl.cli import main as cli_main


def _randomize(model, rng):
    """Weights of a trained-looking scale, biases that make ReLU cut."""
    model.set_weights(
        [
            rng.normal(0.0, 0.3, w.shape).astype("float32")
            for w in model.get_weights()
        ]
    )
    return model


def _text_cnn_reference(model, ids):
    """The text CNN in float64 NumPy, from its layers' weights."""
    table = model.get_layer("token_embedding").get_weights()[0].astype(float)
    vectors = table[ids]  # (batch, length, dim)
    features = []
    concatenated = model.get_layer("sentence_features")
    for tensor in concatenated._inbound_nodes[0].input_tensors:
        size = tensor._keras_history.operation.name.rsplit("_", 1)[1]
        kernel, bias = (
            w.astype(float)
            for w in model.get_layer(f"conv_region_{size}").get_weights()
        )
        k = kernel.shape[0]
        positions = ids.shape[1] - k + 1
        maps = np.stack(
            [
                np.einsum("bjd,jdf->bf", vectors[:, t : t + k], kernel) + bias
                for t in range(positions)
            ],
            axis=1,
        )
        features.append(np.maximum(maps, 0.0).max(axis=1))
    kernel, bias = (
        w.astype(float) for w in model.get_layer("logits").get_weights()
    )
    logits = np.concatenate(features, axis=-1) @ kernel + bias
    logits -= logits.max(axis=-1, keepdims=True)
    return np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)


@pytest.mark.parametrize(
    "arguments",
    [
        {"region_sizes": (3, 4, 5)},
        {"region_sizes": (5, 2), "hand_written_activations": False},
        {"region_sizes": (4,)},
        {"region_sizes": (1, 3), "dropout": 0.0, "max_norm": None},
    ],
    ids=["kim", "unsorted", "single", "size-1"],
)
def test_folded_text_cnn_equals_a_float64_reference(arguments, rng):
    model = zoo.build(
        "text_cnn_kim",
        vocabulary_size=50,
        sequence_length=9,
        embedding_dim=16,
        filters=7,
        num_classes=4,
        **arguments,
    )
    _randomize(model, rng)
    ids = rng.integers(0, 50, (32, 9))
    folded = folding.fold_text_cnn(model)
    got = folded(ids).numpy()
    np.testing.assert_allclose(got, _text_cnn_reference(model, ids), atol=1e-6)
    sizes = arguments["region_sizes"]
    assert tuple(folded.table.shape) == (50, 7 * sum(sizes))


def test_folded_seed_preset_is_smaller_than_its_embedding(rng):
    model = _randomize(zoo.build("text_cnn", vocabulary_size=200), rng)
    folded = folding.fold_text_cnn(model)
    # 1 filter for each region size 2..6: 20 columns against 300.
    assert tuple(folded.table.shape) == (200, 20)
    ids = rng.integers(0, 200, (8, 10))
    np.testing.assert_allclose(
        folded(ids).numpy(), _text_cnn_reference(model, ids), atol=1e-6
    )


@pytest.mark.parametrize(
    "name, arguments, message",
    [
        ("text_cnn", {}, "no token embedding"),
        ("simple_rnn", {"vocabulary_size": 40}, "has no folded form"),
        ("image_cnn_same", {}, "has no folded form"),
    ],
)
def test_models_without_the_structure_are_refused(name, arguments, message):
    with pytest.raises(ValueError, match=message) as error:
        folding.fold_text_cnn(zoo.build(name, **arguments))
    assert "Received: model=" in str(error.value)


def test_a_fold_that_disagrees_with_the_model_is_refused(rng):
    model = _randomize(
        zoo.build("text_cnn", vocabulary_size=30, num_classes=3), rng
    )
    folded = folding.fold_text_cnn(model)
    folded.table.assign(folded.table + 1.0)
    with pytest.raises(ValueError, match="differ from the model's"):
        folding._check_agreement(model, folded, batch=16, seed=0)


def test_folded_export_serves_the_plain_export_answers(tmp_path, rng):
    import kerasdl.data as data

    sentences = ["what is a cat", "who wrote this", "where is paris"]
    vectorizer = data.make_vectorizer(
        tf.data.Dataset.from_tensor_slices(sentences),
        vocabulary_size=40,
        sequence_length=12,
    )
    model = _randomize(
        zoo.build(
            "text_cnn_kim",
            vocabulary_size=40,
            sequence_length=12,
            embedding_dim=8,
            filters=5,
            num_classes=3,
        ),
        rng,
    )
    names = ["a", "b", "c"]
    paths = {
        fold: export.export_model(
            model,
            "folded" if fold else "plain",
            task="text_classification",
            base_dir=tmp_path,
            vectorizer=vectorizer,
            class_names=names,
            fold_embeddings=fold,
        )
        for fold in (False, True)
    }
    plain, folded = (tf.saved_model.load(str(paths[f])) for f in (0, 1))
    ids = tf.constant(rng.integers(0, 40, (6, 12)), tf.int64)
    for signature, inputs in (
        ("token_ids", {"token_ids": ids}),
        ("serving_default", {"sentences": tf.constant(sentences)}),
    ):
        want = plain.signatures[signature](**inputs)
        got = folded.signatures[signature](**inputs)
        np.testing.assert_allclose(
            got["probabilities"].numpy(),
            want["probabilities"].numpy(),
            atol=1e-6,
        )
        np.testing.assert_array_equal(got["class_id"], want["class_id"])
    card = json.loads(
        (paths[True] / "assets.extra" / "model_card.json").read_text()
    )
    assert card["folded_embeddings"] is True
    assert card["hand_written_gradients"] == []
    assert (
        "Folded embeddings"
        in (paths[True] / "assets.extra" / "README.md").read_text()
    )
    # The folded SavedModel carries the table, not the embedding.
    assert not folded.signatures["token_ids"].trainable_variables


def test_fold_embeddings_needs_a_text_classifier(tmp_path):
    with pytest.raises(ValueError, match="needs a text classifier"):
        export.export_model(
            zoo.build("image_cnn_same"),
            "images",
            task="image_classification",
            base_dir=tmp_path,
            fold_embeddings=True,
        )


def test_export_cli_folds_a_run(tmp_path, capsys, rng):
    model = _randomize(
        zoo.build("text_cnn", vocabulary_size=30, num_classes=3), rng
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    model.save(run_dir / "model.keras")
    (run_dir / "config.json").write_text(json.dumps({"model": "text_cnn"}))
    tokens = ["", "[UNK]"] + [f"word{i}" for i in range(28)]
    (run_dir / "vocabulary.txt").write_text("\n".join(tokens) + "\n")
    (run_dir / "vectorizer.json").write_text(
        json.dumps({"sequence_length": 10, "standardize": None})
    )
    code = cli_main(
        [
            "export",
            str(run_dir),
            "--base-dir",
            str(tmp_path / "exports"),
            "--fold-embeddings",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    card = json.loads(
        (
            tmp_path
            / "exports"
            / "text_cnn"
            / "1"
            / "assets.extra"
            / "model_card.json"
        ).read_text()
    )
    assert card["folded_embeddings"] is True
    served = tf.saved_model.load(out.strip())
    ids = rng.integers(0, 30, (4, 10))
    np.testing.assert_allclose(
        served.signatures["token_ids"](token_ids=tf.constant(ids, tf.int64))[
            "probabilities"
        ].numpy(),
        keras.ops.convert_to_numpy(model(ids, training=False)),
        atol=1e-6,
    )
