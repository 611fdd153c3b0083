"""`kerasdl dynamics`: the vanishing/exploding-gradient experiment.

Measures the gradient norm at every layer of a deep linear network whose
shared weight has all singular values equal to `k`, for each `--scales`
value, prints how far g[1] is from the theory `|k| ** (depth - 1)` and
saves the plot of g[l] against l.

    kerasdl dynamics --scales 0.5 1 2 --output vanishing_exploding.png
"""

import sys

HELP = "run the vanishing/exploding-gradient experiment"


def add_arguments(parser):
    """Adds the experiment's options to `parser`."""
    from kerasdl.dynamics import DTYPES

    parser.add_argument(
        "--depth", type=int, default=51, help="number of layers (51)"
    )
    parser.add_argument(
        "--width", type=int, default=64, help="units per layer (64)"
    )
    parser.add_argument(
        "--scales",
        type=float,
        nargs="+",
        default=[0.5, 1.0, 2.0],
        metavar="K",
        help="singular value k of the shared weight, one run each (0.5 1 2)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of U, V, x, v (0)"
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=DTYPES,
        help="precision of the passes (float32)",
    )
    parser.add_argument(
        "--output",
        default="vanishing_exploding.png",
        metavar="PATH",
        help="where to save the PNG plot (vanishing_exploding.png)",
    )


def _measure(args):
    """Runs the network once per scale.

    Returns:
        `{label: measured norms}`, `{label: theory}` and the table rows
        `(scale, g[0], g[1], g[depth], |k|^(depth-1), rel. error of g[1],
        largest rel. error over all layers)`.
    """
    from kerasdl import dynamics

    results, expected, rows = {}, {}, []
    for scale in args.scales:
        label = f"k = {scale:g}"
        norms = dynamics.deep_linear_gradient_norms(
            depth=args.depth,
            width=args.width,
            scale=scale,
            seed=args.seed,
            dtype=args.dtype,
        )
        theory = dynamics.expected_gradient_norms(args.depth, scale)
        errors = dynamics.relative_errors(norms, theory)
        results[label], expected[label] = norms, theory
        # g[1] is the gradient at the first layer's output, reached after
        # depth - 1 multiplications by W^T.
        rows.append(
            (
                scale,
                norms[0],
                norms[1],
                norms[-1],
                theory[1],
                errors[1],
                errors.max(),
            )
        )
    return results, expected, rows


def _print_table(rows, depth):
    header = (
        "scale",
        "g[0]",
        "g[1]",
        f"g[{depth}]",
        f"|k|^{depth - 1}",
        "rel. error",
        "max rel. error",
    )
    print("  ".join(f"{name:>11}" for name in header))
    for scale, *norms, error, worst in rows:
        cells = [f"{scale:>11g}"]
        cells += [f"{norm:>11.4e}" for norm in norms]
        cells += [f"{error:>11.2e}", f"{worst:>14.2e}"]
        print("  ".join(cells))


def run(args):
    """Runs the experiment, prints the table and saves the plot.

    Returns:
        0 on success, 2 if an argument is invalid.
    """
    from kerasdl import dynamics

    try:
        results, expected, rows = _measure(args)
        _print_table(rows, args.depth)
        path = dynamics.plot_gradient_norms(
            results,
            args.output,
            expected=expected,
            title=f"Gradient norm through a {args.depth}-layer linear "
            f"network (width {args.width}, {args.dtype})",
            expected_label=f"theory $|k|^{{{args.depth}-l}}$",
        )
    except (TypeError, ValueError) as error:
        print(f"kerasdl dynamics: error: {error}", file=sys.stderr)
        return 2
    print(f"plot: {path}")
    return 0
