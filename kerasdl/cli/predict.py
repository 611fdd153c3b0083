"""`kerasdl predict PATH INPUT...`: query an exported SavedModel.

PATH is a model name under `--base-dir` (the latest version is loaded), a
model directory or a version directory. INPUTs are sentences, image files
(recognised by their extension, or all of them with `--images`), or `-`
to read sentences from standard input, one a line.

Examples:

    kerasdl predict text_cnn "what is the capital of peru ?"
    kerasdl predict saved_models/text_cnn/2 - < questions.txt
    kerasdl predict image_cnn_same digit.png cat.jpg --top-k 3 --json

Only `tf.saved_model.load` and the exported signatures are used. A request
that does not fit the model (a missing or undecodable image file, an empty
input) prints an error and exits with status 2.
"""

import json
import sys

import numpy as np

HELP = "classify sentences or images with an exported SavedModel"


def add_arguments(parser):
    """Adds the `predict` arguments to `parser`."""
    parser.add_argument(
        "path", help="model name, model directory or version directory"
    )
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="sentences or image files; '-' reads sentences from stdin",
    )
    parser.add_argument(
        "--images",
        action="store_true",
        help="treat every INPUT as an image file",
    )
    parser.add_argument(
        "--top-k",
        type=int,
        default=3,
        help="how many classes (or next tokens) to show (default: %(default)s)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document"
    )
    parser.add_argument(
        "--base-dir",
        default="saved_models",
        help="folder of exported models, for names (default: %(default)s)",
    )


def _read_inputs(inputs):
    if inputs == ["-"]:
        lines = [line.strip() for line in sys.stdin.read().split("\n")]
        return [line for line in lines if line]
    return list(inputs)


def _is_image_request(inputs, images_flag):
    from kerasdl.serving import IMAGE_EXTENSIONS

    if images_flag:
        return True
    return all(text.lower().endswith(IMAGE_EXTENSIONS) for text in inputs)


def _classify(served, inputs, as_images, k):
    from kerasdl.serving import top_k

    if as_images:
        outputs = served.predict_image_files(inputs)
    else:
        outputs = served.predict_sentences(inputs)
    ranked = top_k(outputs["probabilities"], k, served.class_names)
    return [
        {
            "input": text,
            "class_id": int(class_id),
            "class_name": class_name.decode("utf-8"),
            "top_k": [[label, round(p, 6)] for label, p in best],
        }
        for text, class_id, class_name, best in zip(
            inputs, outputs["class_id"], outputs["class_name"], ranked
        )
    ]


def _continue(served, inputs, k):
    from kerasdl.serving import top_k

    outputs = served.predict_sentences(inputs)
    ranked = top_k(outputs["next_token_probabilities"], k, served.vocabulary)
    return [
        {
            "input": text,
            "sentence_vector_norm": round(float(np.linalg.norm(vector)), 6),
            "top_k": [[token, round(p, 6)] for token, p in best],
        }
        for text, vector, best in zip(
            inputs, outputs["sentence_vector"], ranked
        )
    ]


def _print_table(results):
    for result in results:
        best = "  ".join(f"{label}:{p:.3f}" for label, p in result["top_k"])
        head = result.get("class_name")
        if head is None:
            head = f"|v|={result['sentence_vector_norm']:.3f}"
        print(f"{result['input']}\t{head}\t{best}")


def run(args):
    """Prints the predictions; returns 0, or 2 on a bad request."""
    from kerasdl import serving

    try:
        inputs = _read_inputs(args.inputs)
        if not inputs:
            raise serving.RequestError(
                "Give at least one sentence or image file (or '-' for "
                "stdin). Received: inputs=[]"
            )
        if args.top_k < 1:
            raise serving.RequestError(
                f"--top-k must be at least 1. Received: --top-k {args.top_k}"
            )
        served = serving.load_export(args.path, base_dir=args.base_dir)
        as_images = _is_image_request(inputs, args.images)
        if as_images and served.task != "image_classification":
            raise serving.RequestError(
                f"{served.directory} is a {served.task} model; it reads "
                f"sentences, not image files. Received: inputs={inputs}"
            )
        if not as_images and served.task == "image_classification":
            raise serving.RequestError(
                f"{served.directory} classifies image files (with an "
                f"extension in {serving.IMAGE_EXTENSIONS}, or use "
                f"--images). Received: inputs={inputs}"
            )
        if served.task == "language_model":
            results = _continue(served, inputs, args.top_k)
        else:
            results = _classify(served, inputs, as_images, args.top_k)
    except (serving.RequestError, FileNotFoundError) as error:
        print(f"kerasdl predict: error: {error}", file=sys.stderr)
        return 2

    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print_table(results)
    return 0
