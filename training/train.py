"""Train a kerasdl zoo model, evaluate it and export a SavedModel.

With no arguments this is the project's main job: `text_cnn_kim` on the
offline demo question corpus, then a SavedModel in
`saved_models/text_cnn_kim/<version>/`:

    python training/train.py
    python training/train.py image_cnn_same --epochs 3
    python training/train.py text_cnn --data questions.tsv \
        --validation-split 0.1 --early-stopping 3 --set embedding_dim=50

Running the same command again with the same `--output-dir` after a crash
resumes from the last backed-up epoch.
"""

import argparse
import importlib.util
import logging
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if importlib.util.find_spec("kerasdl") is None:
    # Run from a checkout without `pip install -e .`: the package sits one
    # folder up from this script.
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from kerasdl import data  # noqa: E402
from kerasdl import training  # noqa: E402

DEFAULT_MODEL = "text_cnn_kim"

# The main job's defaults: a few epochs of Kim's CNN on the demo corpus
# train to high accuracy well inside three minutes on two CPU cores.
DEFAULT_EPOCHS = 4
DEFAULT_BATCH_SIZE = 50


def build_parser() -> argparse.ArgumentParser:
    """Returns the argument parser of `training/train.py`."""
    parser = argparse.ArgumentParser(
        description="Train a kerasdl zoo model, evaluate it on the test "
        "split and export it as a SavedModel.",
    )
    parser.add_argument(
        "model",
        nargs="?",
        default=DEFAULT_MODEL,
        help=f"zoo model name (default: {DEFAULT_MODEL})",
    )
    _add_data_arguments(parser)
    _add_optimization_arguments(parser)
    _add_model_arguments(parser)
    _add_output_arguments(parser)
    _add_scale_arguments(parser)
    return parser


def _add_data_arguments(parser):
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data",
        metavar="SPEC",
        help="a file, folder, tfds:NAME or train=PATH,test=PATH "
        "(default: the offline default for the model's task)",
    )
    group.add_argument("--data-dir", help="where TFDS datasets are kept")
    group.add_argument(
        "--validation-split",
        type=float,
        default=0.0,
        help="fraction of the training data held out for validation",
    )
    group.add_argument(
        "--encoding",
        default="utf-8",
        help="text encoding of the data files (e.g. latin-1)",
    )
    group.add_argument(
        "--test-split",
        type=float,
        default=0.1,
        help="fraction of a single data file held out for testing",
    )


def _add_optimization_arguments(parser):
    group = parser.add_argument_group("optimization")
    group.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    group.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    group.add_argument(
        "--learning-rate",
        type=float,
        help="default: adam 1e-3, sgd 1e-2, rmsprop 1e-3, adadelta 1.0",
    )
    group.add_argument(
        "--optimizer", choices=training.OPTIMIZERS, default="adam"
    )
    group.add_argument("--seed", type=int, default=0)
    group.add_argument(
        "--nondeterministic",
        action="store_true",
        help="skip TensorFlow op determinism (faster on GPUs)",
    )
    group.add_argument(
        "--early-stopping",
        type=int,
        metavar="PATIENCE",
        help="stop after PATIENCE epochs without validation improvement "
        "and restore the best weights",
    )


def _add_model_arguments(parser):
    group = parser.add_argument_group("model")
    group.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model builder override, e.g. --set num_classes=6 "
        "(repeatable; values are Python literals)",
    )
    group.add_argument("--embeddings", metavar="PATH", help="word vectors")
    group.add_argument(
        "--static-embeddings",
        action="store_true",
        help="keep the embeddings fixed during training",
    )
    group.add_argument("--vocabulary-size", type=int)
    group.add_argument("--sequence-length", type=int)


def _add_output_arguments(parser):
    group = parser.add_argument_group("output")
    group.add_argument(
        "--output-dir",
        help="run directory (default: runs/<model>-<timestamp>); reuse it "
        "to resume a killed run",
    )
    group.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="N",
        help="back up the training state every N steps (default: every epoch)",
    )
    group.add_argument("--no-export", action="store_true")
    group.add_argument("--export-dir", default="saved_models")
    group.add_argument("--version", type=int, help="export version")
    group.add_argument(
        "-q", "--quiet", action="store_true", help="log warnings only"
    )


def _add_scale_arguments(parser):
    group = parser.add_argument_group("accelerators and scale")
    group.add_argument("--mixed-precision", action="store_true")
    group.add_argument("--jit-compile", action="store_true")
    group.add_argument(
        "--distribute", choices=training.DISTRIBUTE_MODES, default="none"
    )


def config_from_args(args: argparse.Namespace) -> training.TrainConfig:
    """Turns parsed arguments into a validated `TrainConfig`.

    Raises:
        ValueError: If an option has an invalid value.
    """
    return training.TrainConfig(
        model=args.model,
        data=args.data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        optimizer=args.optimizer,
        seed=args.seed,
        validation_split=args.validation_split,
        early_stopping_patience=args.early_stopping,
        overrides=training.parse_overrides(args.set),
        output_dir=args.output_dir,
        mixed_precision=args.mixed_precision,
        jit_compile=args.jit_compile,
        distribute=args.distribute,
        embeddings=args.embeddings,
        trainable_embeddings=not args.static_embeddings,
        vocabulary_size=args.vocabulary_size,
        sequence_length=args.sequence_length,
        export=not args.no_export,
        export_dir=args.export_dir,
        version=args.version,
        data_dir=args.data_dir,
        checkpoint_every=args.checkpoint_every,
        test_split=args.test_split,
        encoding=args.encoding,
        deterministic=not args.nondeterministic,
    )


def print_summary(result: training.TrainResult) -> None:
    """Prints where the run went and its test metrics."""
    metrics = result.metrics
    if not result.chief:
        print("worker done; the chief wrote the run directory and export")
        return
    print(f"run directory: {result.run_dir}")
    if metrics.get("resumed_from_epoch"):
        print(f"resumed from epoch {metrics['resumed_from_epoch']}")
    print(
        f"epochs run: {metrics['epochs_run']}, "
        f"{metrics['examples_per_second']:.0f} examples/s, "
        f"wall time {metrics['wall_time_seconds']:.1f} s"
    )
    for key in ("test_accuracy", "test_perplexity", "test_loss"):
        if key in metrics:
            print(f"{key}: {metrics[key]:.4f}")
    if result.export_path is not None:
        print(f"SavedModel: {result.export_path}")
    else:
        print(f"trained model: {result.run_dir / 'model.keras'}")


def main(argv=None) -> int:
    """Entry point; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        config = config_from_args(args)
        # An unknown model name fails here, before any data is read.
        training.zoo.get_model_info(config.model)
    except (ValueError, TypeError) as error:
        parser.error(str(error))
    try:
        result = training.train(config)
    except data.DataError as error:
        # Bad data is the user's to fix: the file and line, no traceback.
        parser.error(str(error))
    print_summary(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
