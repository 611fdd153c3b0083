"""Reproduces Kim's (2014) CNN-rand results on MR, SST-1, SST-2 and TREC.

Trains `text_cnn_kim` (or any zoo text model) with randomly initialised,
trained 300-d word vectors on the four benchmarks and writes a Markdown
table beside Kim's Table 2 (CNN-rand: MR 76.1, SST-1 45.0, SST-2 82.7,
TREC 91.2 % test accuracy): mean ± std over seeds, by how much we fall
short or beat Kim, and the wall time per dataset.

Protocol: MR has no split, so it is seeded 10-fold cross-validation
(`--mr-split` for one seeded 90/10 split); SST-1 and SST-2 use the given
train/dev/test files, sentences only (Kim also trained on their phrases);
TREC uses its train/test files. Where there is no dev file, 10 % of the
training part is the dev set. Recipe (Kim 2014, §3.1): Adadelta
(rho 0.95), batch 50, dropout 0.5, max-norm 3, the best dev epoch kept.

Finished runs are cached under `runs/benchmarks/reproduction/`; running
the same command again skips them (pass `--fresh` to retrain).

Example:

    python benchmarks/reproduce_kim.py                 # the full study
    python benchmarks/reproduce_kim.py --datasets TREC --seeds 1
    python benchmarks/reproduce_kim.py --quick         # seconds
"""

import argparse
import logging
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __package__ in (None, ""):
    # Run as `python benchmarks/reproduce_kim.py`: make `benchmarks`
    # importable from the repository root.
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import keras  # noqa: E402

from benchmarks import _common  # noqa: E402
from kerasdl import data  # noqa: E402

logger = logging.getLogger("reproduce_kim")

MODEL_LABELS = {
    "rnn_language_model": "rnn_language_model encoder + softmax "
    "(pretrained 1 epoch as a language model)",
}

# --quick: one seed, one epoch, a few hundred sentences, one MR fold.
QUICK_SUBSAMPLE = 400


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data-root",
        default=str(_common.DEFAULT_DATA_ROOT),
        help="folder holding the benchmark files (default: %(default)s)",
    )
    parser.add_argument(
        "--datasets",
        default=",".join(_common.DATASETS),
        help="comma-separated subset of %(default)s",
    )
    parser.add_argument(
        "--models",
        default="text_cnn_kim",
        help=f"comma-separated zoo text models: {_common.TEXT_MODELS}",
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--epochs",
        type=int,
        default=25,
        help="most epochs per run (Kim's code trains 25)",
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=5,
        help="stop after this many epochs without a better dev accuracy",
    )
    parser.add_argument(
        "--mr-split",
        action="store_true",
        help="MR: one seeded 90/10 split instead of 10-fold CV",
    )
    parser.add_argument(
        "--embeddings",
        default=None,
        help="word-vector file (GloVe/word2vec text) to initialise the "
        "embeddings, still trained ('CNN-non-static')",
    )
    parser.add_argument(
        "--sequence-length",
        type=int,
        default=None,
        help="cut every sentence to its first N tokens (e.g. 10 for the "
        "seed text_cnn preset); default: the longest sentence",
    )
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 seed, 1 epoch, 400 training sentences: a smoke test",
    )
    parser.add_argument(
        "--output-dir",
        default=str(_common.RESULTS_DIR),
        help="where reproduction.md/.json go (default: %(default)s)",
    )
    parser.add_argument(
        "--cache-dir",
        default=str(_common.CACHE_DIR),
        help="cache of finished runs (default: %(default)s)",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="ignore cached runs"
    )
    args = parser.parse_args(argv)
    args.datasets = _common.check_dataset_names(args.datasets.split(","))
    args.models = args.models.split(",")
    for model in args.models:
        if model not in _common.TEXT_MODELS:
            parser.error(
                f"unknown model {model!r}; choose from {_common.TEXT_MODELS}"
            )
    if args.sequence_length is not None:
        needed = max(_minimum_length(model) for model in args.models)
        if args.sequence_length < needed:
            parser.error(
                f"--sequence-length must be at least {needed}, the widest "
                f"filter of {','.join(args.models)}; received "
                f"{args.sequence_length}"
            )
    if args.seeds < 1 or args.epochs < 1:
        parser.error("--seeds and --epochs must be >= 1")
    if args.quick:
        args.seeds, args.epochs, args.mr_split = 1, 1, True
    return args


def _minimum_length(model_name):
    """The fewest tokens a model's widest filter needs."""
    if model_name == "text_cnn":
        return 6  # its widest region spans 6 words
    return 5 if model_name == "text_cnn_kim" else 1


def _embedding_matrix(args, vectors, seed):
    if args.embeddings is None:
        return None
    matrix, found = data.load_word_vectors(
        args.embeddings, vectors.vocabulary, embedding_dim=300, seed=seed
    )
    logger.info("%.1f %% of the words have a vector", 100 * found)
    return matrix


def run_one(args, model_name, dataset, seed, fold, train, dev, test):
    """Trains and tests one model on one fold; returns the run record."""
    keras.utils.set_random_seed(seed)
    vectors = _common.vectorize(
        train,
        dev,
        test,
        minimum_length=_minimum_length(model_name),
        length=args.sequence_length,
    )
    model = _common.build_text_classifier(
        model_name,
        vectors,
        embeddings=_embedding_matrix(args, vectors, seed),
    )
    result = _common.train_and_test(
        model,
        vectors,
        epochs=args.epochs,
        patience=args.patience,
        jit_compile=args.jit_compile,
    )
    result.update(
        {
            "model": model_name,
            "dataset": dataset,
            "seed": seed,
            "fold": fold,
            "train_examples": len(train),
            "test_examples": len(test),
            "vocabulary_size": vectors.vocabulary_size,
            "sequence_length": vectors.sequence_length,
        }
    )
    return result


def run_key(args, model_name, dataset, seed, fold):
    """What makes a cached run reusable: everything that shapes it."""
    key = {
        "model": model_name,
        "dataset": dataset,
        "seed": seed,
        "fold": fold,
        "epochs": args.epochs,
        "patience": args.patience,
        "mr_split": args.mr_split,
        "quick": args.quick,
        "embeddings": args.embeddings,
        "jit_compile": args.jit_compile,
        "data_root": str(pathlib.Path(args.data_root).resolve()),
    }
    if args.sequence_length is not None:
        # Only when set, so that earlier runs' cache keys stay valid.
        key["sequence_length"] = args.sequence_length
    return key


def run_dataset(args, cache, model_name, dataset):
    """All seeds and folds of one dataset; returns the run records."""
    splits = _common.read_dataset(dataset, args.data_root)
    records = []
    for seed in range(args.seeds):
        for fold, train, dev, test in _common.folds(
            splits,
            seed=seed,
            cross_validation=1 if args.mr_split else 10,
            subsample=QUICK_SUBSAMPLE if args.quick else None,
        ):
            key = run_key(args, model_name, dataset, seed, fold)
            record = cache.get(key)
            if record is None:
                start = time.perf_counter()
                record = run_one(
                    args, model_name, dataset, seed, fold, train, dev, test
                )
                record["wall_seconds"] = time.perf_counter() - start
                cache.put(key, record)
            print(
                f"{model_name} {dataset} seed {seed} fold {fold}: test "
                f"{record['test_accuracy']:.1f} % (dev "
                f"{record['dev_accuracy']:.1f} %, epoch "
                f"{record['best_epoch']}/{record['epochs_run']}, "
                f"{record['wall_seconds']:.0f} s)",
                flush=True,
            )
            records.append(record)
    return records


def summarize(records, model_name, dataset):
    """One table row's numbers for a model on a dataset."""
    # A seed's score is the mean over its folds (MR); the spread is over
    # seeds, as Kim reports one number per dataset.
    by_seed = {}
    for record in records:
        by_seed.setdefault(record["seed"], []).append(record["test_accuracy"])
    seed_scores = [_common.mean_std(scores)[0] for scores in by_seed.values()]
    mean, std = _common.mean_std(seed_scores)
    kim = _common.DATASETS[dataset].kim_accuracy
    return {
        "model": model_name,
        "dataset": dataset,
        "mean": mean,
        "std": std,
        "seeds": len(by_seed),
        "runs": len(records),
        "kim_cnn_rand": kim,
        "difference": mean - kim,
        "wall_seconds": sum(r["wall_seconds"] for r in records),
    }


def _protocol(dataset, args):
    if dataset == "MR" and args.mr_split:
        return "one seeded 90/10 split, dev = 10 % of train"
    return _common.DATASETS[dataset].note


def _verdict(difference):
    if difference >= 0:
        return f"meets (+{difference:.1f})"
    return f"short by {-difference:.1f}"


def render(summaries, args, machine):
    """The Markdown report."""
    title = "# Reproducing Kim (2014), Table 2, CNN-rand"
    lines = [title, ""]
    if args.quick:
        lines += [
            "**Quick mode** (1 seed, 1 epoch, 400 training sentences): a "
            "smoke test of the script, not a result.",
            "",
        ]
    rows = [
        (
            s["dataset"],
            MODEL_LABELS.get(s["model"], s["model"]),
            f"{s['mean']:.1f} ± {s['std']:.1f}",
            f"{s['kim_cnn_rand']:.1f}",
            _verdict(s["difference"]),
            f"seeds: {s['seeds']}, runs: {s['runs']}",
            f"{s['wall_seconds']:.0f}",
            _protocol(s["dataset"], args),
        )
        for s in summaries
    ]
    header = (
        "Dataset",
        "Model",
        "Test accuracy % (mean ± std over seeds)",
        "Kim CNN-rand",
        "vs Kim",
        "Runs",
        "Wall time (s)",
        "Protocol",
    )
    lines += _common.markdown_table(header, rows)
    embeddings = args.embeddings or "random, trained (CNN-rand)"
    cut = "cut to the longest one"
    if args.sequence_length is not None:
        cut = f"cut or padded to {args.sequence_length} tokens"
    lines += [
        "",
        "Recipe: Adadelta (lr 1.0, rho 0.95, epsilon 1e-6), batch 50, "
        "dropout 0.5 and max-norm 3 on the output weights (text_cnn_kim; "
        "other models keep their zoo defaults), at most "
        f"{args.epochs} epochs, the best dev epoch kept (patience "
        f"{args.patience}). Word vectors: 300-d, {embeddings}. Vocabulary: "
        f"the training part's words; sentences {cut}.",
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
        "reproduction", root=args.cache_dir, fresh=args.fresh
    )
    summaries, all_records = [], []
    for model_name in args.models:
        for dataset in args.datasets:
            records = run_dataset(args, cache, model_name, dataset)
            all_records += records
            summaries.append(summarize(records, model_name, dataset))
    lines = render(summaries, args, machine)
    payload = {
        "machine": machine,
        "arguments": vars(args),
        "command": _common.command_line(),
        "summary": summaries,
        "runs": all_records,
    }
    paths = _common.write_results(
        "reproduction", lines, payload, args.output_dir
    )
    print("\n".join(lines))
    print(f"\nWrote {paths[0]} and {paths[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
