"""Validate every answer before cookiecutter writes anything.

Each rule is one function that returns an error message (or None). Answers are read once,
as data, in main(); nothing a user typed is ever pasted into Python source.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
from collections.abc import Callable, Mapping

CHOICES = {
    "framework": ("sklearn", "pytorch", "tensorflow"),
    "scope": ("train+serve", "train-only"),
    "base_image": ("from-scratch", "extend-prebuilt"),
    "python_version": ("3.11", "3.12"),
    "processor": ("cpu", "gpu"),
    "license": ("MIT", "Apache-2.0", "BSD-3-Clause", "Proprietary"),
    "ci": ("github-actions", "none"),
}

# Regions where AWS publishes every prebuilt image extend-prebuilt builds FROM (the regions common
# to the tables in _frameworks/*/prebuilt-images.j2; tests/test_prebuilt_images.py keeps them equal).
PREBUILT_REGIONS = frozenset(
    {
        "af-south-1",
        "ap-east-1",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-northeast-3",
        "ap-south-1",
        "ap-south-2",
        "ap-southeast-1",
        "ap-southeast-2",
        "ap-southeast-3",
        "ap-southeast-4",
        "ca-central-1",
        "ca-west-1",
        "cn-north-1",
        "cn-northwest-1",
        "eu-central-1",
        "eu-central-2",
        "eu-north-1",
        "eu-south-1",
        "eu-south-2",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
        "il-central-1",
        "me-central-1",
        "me-south-1",
        "sa-east-1",
        "us-east-1",
        "us-east-2",
        "us-gov-east-1",
        "us-gov-west-1",
        "us-west-1",
        "us-west-2",
    }
)

SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
PACKAGE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
REGION_PATTERN = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]{1,2}$")
# ECR: optional namespaces separated by '/', each part lower-case alphanumerics joined by . _ -
ECR_PATTERN = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
INSTANCE_PATTERN = re.compile(r"^ml\.[a-z][a-z0-9-]*\.([0-9]*x?large|medium|small|micro)$")
GPU_FAMILY_PATTERN = re.compile(r"^ml\.(g|p)[0-9]")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Jinja would read the markers below as its own syntax: the raw block keeps them literal. {% raw %}
TEMPLATE_SYNTAX = ("{{", "}}", "{%", "%}", "{#", "#}")
# {% endraw %}
# Module names a package must not take: it would shadow them for every import in the image.
RESERVED_PACKAGES = {"sagemaker", "sagemaker_training", "sagemaker_inference", "test", "tests", "src"}

# Longer names would push generated lines past the 120-character line length.
MAX_SLUG_LENGTH = 40
MAX_PACKAGE_LENGTH = 30
MAX_LENGTHS = {"project_name": 80, "description": 300, "author_name": 100, "author_email": 254}

Answers = Mapping[str, str]


def check_free_text(answers: Answers, field: str) -> str | None:
    value = answers[field]
    limit = MAX_LENGTHS[field]
    if not value.strip():
        return f"{field} must not be empty."
    if len(value) > limit:
        return f"{field} is {len(value)} characters long; at most {limit} are allowed."
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        return f"{field} must be a single line without control characters."
    if any(marker in value for marker in TEMPLATE_SYNTAX):
        return f"{field} must not contain template syntax ({', '.join(TEMPLATE_SYNTAX)})."
    return None


def check_author_email(answers: Answers) -> str | None:
    problem = check_free_text(answers, "author_email")
    if problem is None and not EMAIL_PATTERN.match(answers["author_email"]):
        return f"author_email {answers['author_email']!r} is not an e-mail address (name@domain)."
    return problem


def check_project_slug(answers: Answers) -> str | None:
    slug = answers["project_slug"]
    if not SLUG_PATTERN.match(slug) or len(slug) > MAX_SLUG_LENGTH:
        return (
            f"project_slug {slug!r} is not allowed: use 1-{MAX_SLUG_LENGTH} lower-case letters, digits and single "
            "hyphens, starting with a letter (for example 'iris-classifier')."
        )
    return None


def check_package_name(answers: Answers) -> str | None:
    name = answers["package_name"]
    allowed = "use lower-case letters, digits and underscores, starting with a letter"
    if not PACKAGE_PATTERN.match(name) or len(name) > MAX_PACKAGE_LENGTH:
        return f"package_name {name!r} is not a valid Python package name: {allowed}, at most {MAX_PACKAGE_LENGTH}."
    if keyword.iskeyword(name):
        return f"package_name {name!r} is a Python keyword: choose another name."
    if name in RESERVED_PACKAGES or name in sys.stdlib_module_names:
        return f"package_name {name!r} would shadow the module of the same name: choose another name."
    return None


def check_choices(answers: Answers) -> list[str]:
    problems = []
    for field, allowed in CHOICES.items():
        if answers[field] not in allowed:
            problems.append(f"{field} {answers[field]!r} is not one of: {', '.join(allowed)}.")
    return problems


def check_aws_region(answers: Answers) -> str | None:
    region = answers["aws_region"]
    if not REGION_PATTERN.match(region):
        return f"aws_region {region!r} is not an AWS region name (for example us-east-1, eu-west-2)."
    return None


def check_ecr_repository(answers: Answers) -> str | None:
    name = answers["ecr_repository"]
    if not (2 <= len(name) <= 256) or not ECR_PATTERN.match(name):
        return (
            f"ecr_repository {name!r} breaks ECR's naming rules: 2-256 characters, lower-case letters "
            "and digits, separated by single '.', '_', '-' or '/' (for example 'team/iris-classifier')."
        )
    return None


def check_instance_type(answers: Answers, field: str) -> str | None:
    value = answers[field]
    if not INSTANCE_PATTERN.match(value):
        return f"{field} {value!r} is not a SageMaker instance type (ml.<family>.<size>, e.g. ml.m5.large)."
    is_gpu_family = bool(GPU_FAMILY_PATTERN.match(value))
    if answers["processor"] == "gpu" and not is_gpu_family:
        return f"{field} {value!r} has no GPU but processor is 'gpu': pick a GPU type such as ml.g5.xlarge."
    if answers["processor"] == "cpu" and is_gpu_family:
        return f"{field} {value!r} is a GPU type but processor is 'cpu': pick a CPU type such as ml.m5.large."
    return None


def check_combination(answers: Answers) -> str | None:
    if answers["framework"] == "sklearn" and answers["processor"] == "gpu":
        return (
            "processor 'gpu' is not available for framework 'sklearn' (scikit-learn does not use GPUs): "
            "use processor=cpu."
        )
    if answers["base_image"] == "extend-prebuilt" and answers["aws_region"] not in PREBUILT_REGIONS:
        return (
            f"base_image 'extend-prebuilt' needs AWS's prebuilt images, which are not published in "
            f"{answers['aws_region']}: use base_image=from-scratch, or one of {', '.join(sorted(PREBUILT_REGIONS))}."
        )
    return None


def validate(answers: Answers) -> list[str]:
    """Every problem with the answers, one message per problem; empty when all is well."""
    problems = check_choices(answers)
    if problems:
        return problems
    checks: list[Callable[[], str | None]] = [
        *(
            lambda field=field: check_free_text(answers, field)
            for field in ("project_name", "description", "author_name")
        ),
        lambda: check_author_email(answers),
        lambda: check_project_slug(answers),
        lambda: check_package_name(answers),
        lambda: check_aws_region(answers),
        lambda: check_ecr_repository(answers),
        lambda: check_instance_type(answers, "training_instance_type"),
        lambda: check_instance_type(answers, "inference_instance_type"),
        lambda: check_combination(answers),
    ]
    return [problem for check in checks if (problem := check()) is not None]


def main(answers: Answers) -> int:
    problems = validate(answers)
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    if problems:
        print("Nothing was generated. Fix the answers above and run cookiecutter again.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # tojson escapes ' and \\, so no answer can close the ''' literal early.
    sys.exit(main(json.loads(r'''{{ cookiecutter | tojson }}''')))  # fmt: skip
