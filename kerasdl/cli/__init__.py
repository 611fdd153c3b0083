"""The `kerasdl` command line: one subcommand per module.

Each subcommand lives in its own module of this package, which defines
`HELP` (one line), `add_arguments(parser)` and `run(args) -> int`. They are
imported only when chosen, so `kerasdl --help` answers at once.
"""

import argparse
import importlib
import logging
import os
import sys

SUBCOMMANDS = ("gradcheck", "dynamics", "describe", "export", "predict")

_HELP = {
    "gradcheck": "check the hand-written activation gradients",
    "dynamics": "run the vanishing/exploding-gradient experiment",
    "describe": "print a zoo model's card: every tensor and weight size",
    "export": "export a trained .keras model as a SavedModel",
    "predict": "classify sentences or images with an exported SavedModel",
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="kerasdl",
        description="kerasdl: models and tools for the foundations of "
        "deep learning.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log at INFO level"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        subparsers.add_parser(name, help=_HELP[name], add_help=False)
    return parser


def main(argv=None):
    """Entry point of the `kerasdl` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2

    module = importlib.import_module(f"kerasdl.cli.{args.command}")
    sub = argparse.ArgumentParser(
        prog=f"kerasdl {args.command}", description=_HELP[args.command]
    )
    module.add_arguments(sub)
    # Intermixed, so options may follow the inputs: `predict NAME "a b" --json`.
    sub_args = sub.parse_intermixed_args(rest)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    return module.run(sub_args)


if __name__ == "__main__":
    sys.exit(main())
