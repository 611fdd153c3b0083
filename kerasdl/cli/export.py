"""`kerasdl export RUN_DIR`: export a trained model as a SavedModel.

Examples:

    kerasdl export runs/text_cnn-20260101-120000
    kerasdl export runs/text_cnn-20260101-120000/best.keras --name trec
    kerasdl export runs/lenet --base-dir /srv/models --version 3 --overwrite

It prints the version directory written, e.g. `saved_models/text_cnn/1`,
ready for TF Serving (see saved_models/README.md).
"""

import sys

HELP = "export a trained .keras model as a SavedModel"


def add_arguments(parser):
    """Adds the `export` arguments to `parser`."""
    parser.add_argument(
        "run_dir",
        metavar="RUN_DIR_OR_KERAS_FILE",
        help="a training run directory (holding model.keras) or a .keras "
        "file inside one",
    )
    parser.add_argument(
        "--name",
        help="the exported model's name (default: the run's zoo model)",
    )
    parser.add_argument(
        "--base-dir",
        default="saved_models",
        help="folder of exported models (default: %(default)s)",
    )
    parser.add_argument(
        "--version",
        type=int,
        help="version number to write (default: the next free one)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the version if it exists",
    )
    parser.add_argument(
        "--fold-embeddings",
        action="store_true",
        help="text CNNs: serve an inference-only form with the embedding "
        "multiplied into the convolutions (faster, larger; no gradients)",
    )


def run(args):
    """Exports the run and prints the version directory; returns 0 or 2."""
    from kerasdl import export

    try:
        path = export.export_run(
            args.run_dir,
            name=args.name,
            base_dir=args.base_dir,
            version=args.version,
            overwrite=args.overwrite,
            fold_embeddings=args.fold_embeddings,
        )
    except (OSError, TypeError, ValueError) as error:
        print(f"kerasdl export: error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0
