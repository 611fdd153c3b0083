"""`kerasdl describe NAME`: print a zoo model's card.

Examples:

    kerasdl describe                      # list the registered models
    kerasdl describe text_cnn
    kerasdl describe text_cnn_kim --set vocabulary_size=5000 --json
    kerasdl describe image_cnn_valid --set "input_shape=(28, 28, 1)"
"""

import ast
import json
import sys

HELP = "print a zoo model's card: every tensor and weight size"


def add_arguments(parser):
    """Adds the `describe` arguments to `parser`."""
    parser.add_argument(
        "name",
        nargs="?",
        help="a registered model name; omit it to list them all",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a builder argument, e.g. --set num_classes=2 "
        "(values are Python literals; anything else is a string); "
        "repeat for several",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the card as JSON"
    )


def parse_overrides(pairs):
    """Returns `{key: value}` from `["key=value", ...]`.

    Values are read with `ast.literal_eval` (so `2`, `None`, `(28, 28, 1)`
    keep their types); a value that is not a literal stays a string, so
    `--set padding=same` works without quotes.

    Raises:
        ValueError: If a pair has no `=` or an empty key.
    """
    overrides = {}
    for pair in pairs:
        key, separator, text = pair.partition("=")
        key = key.strip()
        if not separator or not key:
            raise ValueError(
                "Argument `--set` must look like key=value. "
                f"Received: --set {pair}"
            )
        try:
            overrides[key] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            overrides[key] = text.strip()
    return overrides


def run(args):
    """Prints the model card (or the model list); returns the exit code."""
    from kerasdl import zoo

    if args.name is None:
        for name in zoo.list_models():
            info = zoo.get_model_info(name)
            print(f"{name:<24}{info.task}")
        return 0

    try:
        overrides = parse_overrides(args.overrides)
        card = zoo.describe(args.name, **overrides)
    except (TypeError, ValueError) as error:
        print(f"kerasdl describe: error: {error}", file=sys.stderr)
        return 2

    if args.json:
        print(json.dumps(card.to_dict(), indent=2))
    else:
        print(card.to_table())
    return 0
