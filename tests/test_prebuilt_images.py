"""The prebuilt-image tables of extend-prebuilt projects agree with the sagemaker SDK's own.

Each `_frameworks/<framework>/prebuilt-images.j2` names the images a project builds FROM and the
registry account per region. The SDK's `image_uris.retrieve` is the reference; it runs in the
notebook environment (`.venv-notebook`), which holds the SDK.
"""

from __future__ import annotations

import json
import subprocess

import jinja2
import pytest

from .conftest import FRAMEWORKS, TEMPLATE_DIR
from .test_hooks import pre_gen

PROJECT_TEMPLATE = TEMPLATE_DIR / "{{cookiecutter.project_slug}}"
SDK_PYTHON = TEMPLATE_DIR / ".venv-notebook" / "bin" / "python"
SDK_NAMES = {"sklearn": "sklearn", "pytorch": "pytorch", "tensorflow": "tensorflow"}

RETRIEVE_EVERY_URI = """
import json, sys
from sagemaker.core import image_uris
table = json.load(sys.stdin)
framework = table.pop("framework")
answers = {}
for scope in ("training", "inference"):
    for processor, image in table[scope].items():
        version, py_version = image.split(":")[1].split(f"-{processor}-")
        for region in table[scope + "_accounts"]:
            instance = "ml.g5.xlarge" if processor == "gpu" else "ml.m5.large"
            answers[f"{scope} {processor} {region}"] = image_uris.retrieve(
                framework, region=region, version=version, py_version=py_version,
                instance_type=instance, image_scope=scope,
            )
json.dump(answers, sys.stdout)
"""


def table(framework: str) -> dict:
    source = (PROJECT_TEMPLATE / "_frameworks" / framework / "prebuilt-images.j2").read_text(encoding="utf-8")
    return jinja2.Environment().from_string(source).module.prebuilt


def expected_uri(image: str, account: str, region: str) -> str:
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{domain}/{image}"


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_table_matches_the_sdk(framework):
    if not SDK_PYTHON.exists():
        pytest.fail(f"{SDK_PYTHON} is missing: .ci/run creates it (pip install -r tests/requirements-notebook.txt)")
    prebuilt = table(framework)
    finished = subprocess.run(
        [str(SDK_PYTHON), "-c", RETRIEVE_EVERY_URI],
        input=json.dumps({"framework": SDK_NAMES[framework], **prebuilt}),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    from_sdk = json.loads(finished.stdout)
    ours = {
        f"{scope} {processor} {region}": expected_uri(image, prebuilt[scope + "_accounts"][region], region)
        for scope in ("training", "inference")
        for processor, image in prebuilt[scope].items()
        for region in prebuilt[scope + "_accounts"]
    }
    assert ours == from_sdk


def test_the_pre_gen_hook_accepts_exactly_the_regions_every_table_covers():
    covered = None
    for framework in FRAMEWORKS:
        prebuilt = table(framework)
        regions = set(prebuilt["training_accounts"]) & set(prebuilt["inference_accounts"])
        covered = regions if covered is None else covered & regions
    assert set(pre_gen.PREBUILT_REGIONS) == covered


def test_extend_prebuilt_is_refused_where_aws_publishes_no_images():
    from .test_hooks import answers

    problems = pre_gen.validate(answers(base_image="extend-prebuilt", aws_region="ap-east-2"))
    assert any("not published in ap-east-2" in problem for problem in problems), problems
