"""Which region (filter) sizes should a text CNN use? A sweep.

Trains `text_cnn_kim` with one region size at a time (1 to 10 words) and
with the combinations (2,3,4), (3,4,5), (5,6,7) and (2,3,4,5,6), 100
filters per region size, several seeds, on TREC and SST-1 (any of Kim's
benchmarks with `--datasets`), with Kim's recipe otherwise (see
`reproduce_kim.py`). This is the first experiment of Zhang & Wallace
(2017), "A Sensitivity Analysis of (and Practitioners' Guide to)
Convolutional Neural Networks for Sentence Classification", §4.2, redone
with our own code.

Writes `docs/results/filter_sizes.{md,json,png}`: the mean ± std test
accuracy of every setting, and a plot of accuracy against the region size
(error bars: std over seeds) with the combinations as separate markers at
their mean region size. Finished runs are cached under
`runs/benchmarks/filter_sizes/`, so an interrupted sweep resumes.

Example:

    python benchmarks/filter_sizes.py                  # full sweep
    python benchmarks/filter_sizes.py --datasets TREC --seeds 2
    python benchmarks/filter_sizes.py --quick          # seconds
"""

import argparse
import logging
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import keras  # noqa: E402

from benchmarks import _common  # noqa: E402

logger = logging.getLogger("filter_sizes")

SINGLE_SIZES = tuple((size,) for size in range(1, 11))
# The combinations Zhang & Wallace (2017) Table 4 compare, plus (2..6).
COMBINATIONS = ((2, 3, 4), (3, 4, 5), (5, 6, 7), (2, 3, 4, 5, 6))
QUICK_SETTINGS = ((1,), (3,), (3, 4, 5))
QUICK_SUBSAMPLE = 300


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-root", default=str(_common.DEFAULT_DATA_ROOT))
    parser.add_argument("--datasets", default="TREC,SST-1")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--epochs",
        type=int,
        default=10,
        help="most epochs per run (early stopping on dev)",
    )
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument(
        "--filters", type=int, default=100, help="filters per region size"
    )
    parser.add_argument(
        "--settings",
        default=None,
        help="region-size settings to run, e.g. '3;4;3,4,5' (default: "
        "1..10 and the combinations)",
    )
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output-dir", default=str(_common.RESULTS_DIR))
    parser.add_argument("--cache-dir", default=str(_common.CACHE_DIR))
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args(argv)
    args.datasets = _common.check_dataset_names(args.datasets.split(","))
    if args.settings:
        args.settings = tuple(
            tuple(int(size) for size in part.split(","))
            for part in args.settings.split(";")
        )
    else:
        args.settings = SINGLE_SIZES + COMBINATIONS
    if args.quick:
        args.seeds, args.epochs = 1, 1
        args.settings = QUICK_SETTINGS
    return args


def run_one(args, dataset, region_sizes, seed, train, dev, test):
    keras.utils.set_random_seed(seed)
    vectors = _common.vectorize(
        train, dev, test, minimum_length=max(region_sizes)
    )
    model = _common.build_text_classifier(
        "text_cnn_kim",
        vectors,
        overrides={"region_sizes": region_sizes, "filters": args.filters},
    )
    return _common.train_and_test(
        model,
        vectors,
        epochs=args.epochs,
        patience=args.patience,
        jit_compile=args.jit_compile,
    )


def sweep(args, cache):
    """Runs (or reads from the cache) every dataset, setting and seed."""
    records = []
    for dataset in args.datasets:
        splits = _common.read_dataset(dataset, args.data_root)
        for seed in range(args.seeds):
            # MR: one seeded 90/10 split here, not 10 folds.
            _, train, dev, test = next(
                _common.folds(
                    splits,
                    seed=seed,
                    cross_validation=1,
                    subsample=QUICK_SUBSAMPLE if args.quick else None,
                )
            )
            for region_sizes in args.settings:
                records.append(
                    _cached_run(
                        args,
                        cache,
                        dataset,
                        region_sizes,
                        seed,
                        train,
                        dev,
                        test,
                    )
                )
    return records


def _cached_run(args, cache, dataset, region_sizes, seed, train, dev, test):
    key = {
        "dataset": dataset,
        "region_sizes": list(region_sizes),
        "seed": seed,
        "filters": args.filters,
        "epochs": args.epochs,
        "patience": args.patience,
        "quick": args.quick,
        "jit_compile": args.jit_compile,
        "data_root": str(pathlib.Path(args.data_root).resolve()),
    }
    record = cache.get(key)
    if record is None:
        start = time.perf_counter()
        record = run_one(args, dataset, region_sizes, seed, train, dev, test)
        record.update(key)
        record["test_examples"] = len(test)
        record["wall_seconds"] = time.perf_counter() - start
        cache.put(key, record)
    print(
        f"{dataset} region_sizes={region_sizes} seed {seed}: test "
        f"{record['test_accuracy']:.1f} % ({record['wall_seconds']:.0f} s)",
        flush=True,
    )
    return record


def summarize(records):
    """Mean and std over seeds of every (dataset, region sizes)."""
    groups = {}
    for record in records:
        key = (record["dataset"], tuple(record["region_sizes"]))
        groups.setdefault(key, []).append(record["test_accuracy"])
    summary = []
    for (dataset, region_sizes), scores in groups.items():
        mean, std = _common.mean_std(scores)
        summary.append(
            {
                "dataset": dataset,
                "region_sizes": list(region_sizes),
                "mean": mean,
                "std": std,
                "seeds": len(scores),
            }
        )
    return summary


def best_settings(summary):
    """Per dataset: the best single size and the best setting overall."""
    best = {}
    for dataset in dict.fromkeys(row["dataset"] for row in summary):
        rows = [row for row in summary if row["dataset"] == dataset]
        singles = [row for row in rows if len(row["region_sizes"]) == 1]
        best[dataset] = {
            "best_single": max(singles, key=lambda r: r["mean"], default=None),
            "best_overall": max(rows, key=lambda r: r["mean"]),
        }
    return best


def plot(summary, path):
    """Accuracy vs region size per dataset; combinations as markers."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    datasets = list(dict.fromkeys(row["dataset"] for row in summary))
    figure, axes = pyplot.subplots(
        1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False
    )
    for axis, dataset in zip(axes[0], datasets):
        rows = [row for row in summary if row["dataset"] == dataset]
        singles = sorted(
            (r for r in rows if len(r["region_sizes"]) == 1),
            key=lambda r: r["region_sizes"][0],
        )
        axis.errorbar(
            [r["region_sizes"][0] for r in singles],
            [r["mean"] for r in singles],
            yerr=[r["std"] for r in singles],
            marker="o",
            capsize=3,
            label="single region size",
        )
        combinations = [r for r in rows if len(r["region_sizes"]) > 1]
        for index, row in enumerate(combinations):
            # A combination sits at its mean region size, nudged sideways
            # so that combinations with the same mean stay apart.
            sizes = row["region_sizes"]
            nudge = 0.12 * (index - (len(combinations) - 1) / 2)
            axis.errorbar(
                [sum(sizes) / len(sizes) + nudge],
                [row["mean"]],
                yerr=[row["std"]],
                marker="s",
                linestyle="none",
                capsize=3,
                label=f"({','.join(map(str, sizes))})",
            )
        axis.set_title(dataset)
        axis.set_xlabel("region size (words); combinations at their mean")
        axis.set_ylabel("test accuracy (%)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)


def render(summary, best, records, args, machine):
    lines = ["# Region (filter) sizes of the text CNN", ""]
    if args.quick:
        lines += [
            "**Quick mode** (1 seed, 1 epoch, 300 sentences): a smoke "
            "test, not a result.",
            "",
        ]
    rows = [
        (
            row["dataset"],
            "(" + ",".join(map(str, row["region_sizes"])) + ")",
            f"{row['mean']:.1f} ± {row['std']:.1f}",
            row["seeds"],
        )
        for row in summary
    ]
    lines += _common.markdown_table(
        ("Dataset", "Region sizes", "Test accuracy %", "Seeds"), rows
    )
    resolution = [
        f"{100 / record['test_examples']:.2f} points on {record['dataset']}"
        for record in {r["dataset"]: r for r in records}.values()
        if record.get("test_examples")
    ]
    if resolution:
        lines += [
            "",
            f"One test sentence is {', '.join(resolution)}: differences of "
            "a few sentences are noise.",
        ]
    lines += ["", "## Best settings", ""]
    for dataset, entry in best.items():
        single, overall = entry["best_single"], entry["best_overall"]
        if single is not None:
            lines.append(
                f"- {dataset}: best single region size "
                f"{single['region_sizes'][0]} ({single['mean']:.1f} %); "
                f"best setting {tuple(overall['region_sizes'])} "
                f"({overall['mean']:.1f} %)"
            )
    lines += [
        "",
        f"{args.filters} filters per region size; Kim's recipe otherwise "
        f"(Adadelta, batch 50, dropout 0.5, max-norm 3), at most "
        f"{args.epochs} epochs with patience {args.patience} on dev. TREC: "
        "dev = 10 % of train; SST-1: its dev file, sentences only.",
        "",
        "![accuracy vs region size](filter_sizes.png)",
        "",
        f"Command: `{_common.command_line()}`",
        "",
        *_common.machine_lines(machine),
    ]
    return lines


def main(argv=None):
    args = parse_arguments(argv)
    logging.basicConfig(level=logging.WARNING)
    _common.quiet_tensorflow()
    machine = _common.machine_info()
    cache = _common.RunCache(
        "filter_sizes", root=args.cache_dir, fresh=args.fresh
    )
    records = sweep(args, cache)
    summary = summarize(records)
    best = best_settings(summary)
    lines = render(summary, best, records, args, machine)
    payload = {
        "machine": machine,
        "arguments": vars(args),
        "command": _common.command_line(),
        "summary": summary,
        "best": best,
        "runs": records,
    }
    paths = _common.write_results(
        "filter_sizes", lines, payload, args.output_dir
    )
    plot_path = pathlib.Path(args.output_dir) / "filter_sizes.png"
    plot(summary, plot_path)
    print("\n".join(lines))
    print(f"\nWrote {paths[0]}, {paths[1]} and {plot_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
