"""`kerasdl gradcheck`: check the hand-written activation gradients.

Runs `kerasdl.gradcheck.check_gradients` on the Sigmoid, Tanh and ReLU
layers at ordinary points (normal, scale 3) and at extreme ones (±9, ±20,
±1e4, where naive float32 formulas round the derivative to zero, and 0,
ReLU's kink), prints one table row per check and exits with status 1 if
any check fails.

Example:

    kerasdl gradcheck --size 1000 --second-order
"""

import argparse
import time

import numpy as np

HELP = "check the hand-written activation gradients"

LAYER_NAMES = ("sigmoid", "tanh", "relu")

# Where float32 `1 - tanh(x) ** 2` and `s * (1 - s)` round to zero (9, 20),
# where exp overflows (1e4), and ReLU's kink (0).
EXTREME_POINTS = (-1e4, -20.0, -9.0, 0.0, 9.0, 20.0, 1e4)


def add_arguments(parser):
    parser.add_argument(
        "--size",
        type=_positive_int,
        default=1000,
        help="ordinary points per layer (default: 1000)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed (default: 0)"
    )
    parser.add_argument(
        "--second-order",
        action="store_true",
        help="also check second derivatives (Hessian-vector products)",
    )


def run(args) -> int:
    # Imported here so that `kerasdl gradcheck --help` answers at once.
    from kerasdl import gradcheck
    from kerasdl import layers

    rng = np.random.default_rng(args.seed)
    ordinary = rng.normal(scale=3.0, size=args.size).astype("float32")
    extreme = np.array(EXTREME_POINTS, "float32")
    orders = (False, True) if args.second_order else (False,)

    rows = []
    for name in LAYER_NAMES:
        for second_order in orders:
            for label, points in (("ordinary", ordinary), ("extreme", extreme)):
                start = time.perf_counter()
                result = gradcheck.check_gradients(
                    layers.get_activation(name),
                    points,
                    second_order=second_order,
                    seed=args.seed,
                )
                seconds = time.perf_counter() - start
                rows.append(
                    _row(name, second_order, label, points, result, seconds)
                )

    _print_table(rows)
    failed = [row for row in rows if row[-2] != "ok"]
    print(
        f"\n{len(rows) - len(failed)} of {len(rows)} checks passed "
        "(float64 central differences; atol=1e-06, rtol=1e-05)."
    )
    return 1 if failed else 0


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer. Received: --size={text}"
        )
    return value


def _row(name, second_order, label, points, result, seconds):
    return (
        name,
        "2" if second_order else "1",
        f"{label} ({points.size})",
        f"{result.max_abs_error:.2e}",
        f"{result.max_rel_error:.2e}",
        str(result.num_kinks),
        "ok" if result.ok else f"FAIL at {result.worst.location()}",
        f"{seconds:.2f}",
    )


def _print_table(rows):
    header = (
        "layer",
        "order",
        "points",
        "max abs err",
        "max rel err",
        "kinks",
        "verdict",
        "seconds",
    )
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(8)]
    for line in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)))
