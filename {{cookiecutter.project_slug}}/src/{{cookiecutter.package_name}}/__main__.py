"""Command line, and the container's entrypoint: `python -m {{ cookiecutter.package_name }} train{% if cookiecutter.scope == "train+serve" %} | serve{% endif %} | ...`.

SageMaker starts training containers as `docker run IMAGE train`{% if cookiecutter.scope == "train+serve" %} and endpoints as
`docker run IMAGE serve`{% endif %}; the same commands run here against SAGEMAKER_BASE_DIR.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _train(args: argparse.Namespace) -> int:
    from ._runtime.training import main

    return main()

{%- if cookiecutter.scope == "train+serve" %}


def _serve(args: argparse.Namespace) -> int:
    from ._runtime.server import serve

    serve()
    return 0
{%- endif %}


def write_sample_data(directory: Path, train_files: int = 1) -> None:
    """The sample data set as a SageMaker tree, with the default hyperparameters{% if cookiecutter.scope == "train+serve" %} and request bodies{% endif %}."""
    from ._runtime.hyperparameters import as_strings, defaults
{%- if cookiecutter.scope == "train+serve" %}
    from ._runtime.payloads import write_sample_requests
{%- endif %}
    from ._runtime.sample_tree import write_sample_tree
    from .model import HYPERPARAMETERS

    write_sample_tree(directory, as_strings(defaults(HYPERPARAMETERS)), train_files=train_files)
{%- if cookiecutter.scope == "train+serve" %}
    write_sample_requests(directory / "sample-requests")
{%- endif %}


def _sample_data(args: argparse.Namespace) -> int:
    write_sample_data(args.directory, args.train_files)
    print(f"wrote a SageMaker directory tree with the sample data set to {args.directory}")
    return 0


def _hyperparameters(args: argparse.Namespace) -> int:
    from ._runtime.hyperparameters import markdown_table
    from .model import HYPERPARAMETERS

    print(markdown_table(HYPERPARAMETERS))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="{{ cookiecutter.package_name }}", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("train", help="run the training job (SageMaker: docker run IMAGE train)").set_defaults(
        run=_train
    )
{%- if cookiecutter.scope == "train+serve" %}
    commands.add_parser("serve", help="serve /ping and /invocations (SageMaker: docker run IMAGE serve)").set_defaults(
        run=_serve
    )
{%- endif %}
    sample = commands.add_parser("sample-data", help="write the sample data set as a SageMaker directory tree")
    sample.add_argument("directory", type=Path, help="where to write input/config, input/data/<channel>, model, output")
    sample.add_argument(
        "--train-files", type=int, default=1, metavar="N", help="split the train channel into N files (one per host)"
    )
    sample.set_defaults(run=_sample_data)
    commands.add_parser("hyperparameters", help="print the hyperparameter table (Markdown)").set_defaults(
        run=_hyperparameters
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
