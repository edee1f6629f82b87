"""make build-remote (scripts/build_remote.sh), buildspec.yml and scripts/pack_context.py, against the
recording `aws` and `docker` stand-ins of tests/fake_cli.py: the exact calls in order, the archive
uploaded, the build followed to its end, each failure stopping the script with its message (a failed
build with its log link), bad input refused before any AWS call.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from .fake_cli import ACCOUNT, BUILD_FAILURE, BUILD_UUID, PASSWORD, log_link
from .support import PACKAGE, PROJECT_DIR
from .test_scripts import {% if cookiecutter.base_image == "from-scratch" and cookiecutter.framework == "pytorch" and cookiecutter.processor == "cpu" %}CPU_INDEX, {% endif %}IMAGE, REGION, REGISTRY, TAG, argvs, make_workspace, run, stages

# The slow tier, like tests/test_scripts.py: most tests here start the script and Python stand-ins for aws.
pytestmark = pytest.mark.slow

PROJECT = "{{ cookiecutter.project_slug }}-image-build"
DESCRIPTION = "Builds and pushes the {{ cookiecutter.project_slug }} image (scripts/build_remote.sh)"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/{PROJECT}"
BUCKET = f"sagemaker-{REGION}-{ACCOUNT}"
KEY = f"codebuild/{{ cookiecutter.project_slug }}/{TAG}.zip"
BUILD_ID = f"{PROJECT}:{BUILD_UUID}"
REPOSITORY = f"{REGISTRY}/{IMAGE}"
{%- if cookiecutter.base_image == "extend-prebuilt" %}
PREBUILT = json.loads((PROJECT_DIR / "prebuilt-images.json").read_text())
BASE_IMAGE = f"{PREBUILT['training_accounts'][REGION]}.dkr.ecr.{REGION}.amazonaws.com/{PREBUILT['training_image']}"
{%- endif %}
# What .dockerignore lets into the build, besides the package's sources.
CONTEXT = [
    ".dockerignore",
    "Dockerfile",
    "buildspec.yml",
{%- if cookiecutter.base_image == "from-scratch" %}
    "requirements.txt",
{%- else %}
    "toolkit/train_entry.py",
{%- if cookiecutter.scope == "train+serve" %}
    "toolkit/inference.py",
{%- endif %}
{%- endif %}
]
# Planted in the build folder: none may leave the machine.
DECOYS = (".env", ".aws/credentials", "local/input/data/train/train.csv", ".venv/bin/python3", "notebooks/x.ipynb")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """The scripts' copy (tests/test_scripts.py) with the build's files, decoys and `sleep` added."""
    project = make_workspace(tmp_path)
    for name in CONTEXT:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT_DIR / name, project / name)
    package = Path("src") / PACKAGE
    shutil.copytree(PROJECT_DIR / package, project / package, ignore=shutil.ignore_patterns("__pycache__"))
    for decoy in (*DECOYS, f"src/{PACKAGE}/__pycache__/model.cpython-311.pyc"):
        (project / decoy).parent.mkdir(parents=True, exist_ok=True)
        (project / decoy).write_text("secret\n")
    found = shutil.which("sleep")
    assert found, "sleep is needed to test the script"
    (tmp_path / "tools" / "sleep").symlink_to(found)
    return project


def sources(project: Path) -> list[str]:
    package = project / "src" / PACKAGE
    return [path.relative_to(project).as_posix() for path in package.rglob("*.py") if "__pycache__" not in path.parts]


def remote(workspace: Path, command: tuple[str, ...] = ("scripts/build_remote.sh",), **variables: str):
    return run(workspace, list(command), fakes=("aws",), **{"POLL_SECONDS": "0", **variables})


def expected_calls(
    *, create_repository: bool = True, create_project: bool = True, bucket: str = BUCKET, head_bucket: bool = True
) -> list[list[str]]:
    calls = [
        ["aws", "sts", "get-caller-identity", "--region", REGION, "--query", "Account", "--output", "text"],
        ["aws", "ecr", "describe-repositories", "--repository-names", IMAGE, "--region", REGION],
    ]
    if create_repository:
        calls.append(
            [
                *("aws", "ecr", "create-repository", "--repository-name", IMAGE, "--region", REGION),
                *("--image-scanning-configuration", "scanOnPush=true"),
            ]
        )
    calls.append(
        [
            *("aws", "codebuild", "batch-get-projects", "--names", PROJECT, "--region", REGION),
            *("--query", "projects[0].name", "--output", "text"),
        ]
    )
    if create_project:
        calls.append(
            [
                *("aws", "codebuild", "create-project", "--name", PROJECT, "--region", REGION),
                *("--description", DESCRIPTION),
                *("--source", f"type=S3,location={bucket}/{KEY}", "--artifacts", "type=NO_ARTIFACTS"),
                "--environment",
                "type=LINUX_CONTAINER,image=aws/codebuild/standard:7.0,computeType=BUILD_GENERAL1_MEDIUM,privilegedMode=true",
                *("--service-role", ROLE),
            ]
        )
    if head_bucket:
        calls.append(["aws", "s3api", "head-bucket", "--bucket", bucket, "--region", REGION])
    calls += [
        ["aws", "s3", "cp", "-", f"s3://{bucket}/{KEY}", "--region", REGION, "--only-show-errors"],
        [
            *("aws", "codebuild", "start-build", "--project-name", PROJECT, "--region", REGION),
            *("--source-type-override", "S3", "--source-location-override", f"{bucket}/{KEY}"),
            *("--buildspec-override", "buildspec.yml", "--privileged-mode-override"),
            "--environment-variables-override",
            "<the build's variables>",
            *("--query", "build.id", "--output", "text"),
        ],
    ]
    calls += [["aws", "codebuild", "batch-get-builds", "--ids", BUILD_ID, "--region", REGION, "--output", "json"]] * 2
    return calls


def build_variables(calls: list[dict]) -> dict[str, str]:
    """The build's environment from start-build, which expected_calls leaves out, checked as JSON."""
    start = next(call["argv"] for call in calls if call["argv"][:3] == ["aws", "codebuild", "start-build"])
    position = start.index("--environment-variables-override") + 1
    variables = json.loads(start[position])
    start[position] = "<the build's variables>"
    assert {variable["type"] for variable in variables} == {"PLAINTEXT"}
    return {variable["name"]: variable["value"] for variable in variables}


def expected_variables(*tags: str) -> dict[str, str]:
    variables = {"IMAGE_REPOSITORY": REPOSITORY, "IMAGE_TAGS": " ".join(tags)}
{%- if cookiecutter.base_image == "extend-prebuilt" %}
    variables["BASE_IMAGE"] = BASE_IMAGE
{%- endif %}
{%- if cookiecutter.base_image == "from-scratch" and cookiecutter.framework == "pytorch" and cookiecutter.processor == "cpu" %}
    variables["PIP_EXTRA_INDEX_URL"] = CPU_INDEX
{%- endif %}
    return variables


def test_make_build_remote_creates_what_is_missing_builds_and_prints_the_image_uri(workspace):
    finished, calls = remote(workspace, ("make", "--no-print-directory", "build-remote"), CODEBUILD_ROLE_ARN=ROLE)
    assert finished.returncode == 0, finished.stderr
    assert build_variables(calls) == expected_variables(TAG, "latest")
    assert argvs(calls) == expected_calls()
    assert finished.stdout.splitlines()[-1] == f"{REPOSITORY}:{TAG}"
    assert stages(finished.stderr) == [
        f"Looking up the AWS account (region {REGION})",
        f"Making sure ECR repository {IMAGE} exists",
        f"Making sure CodeBuild project {PROJECT} exists",
        f"Uploading the build context to s3://{BUCKET}/{KEY}",
        f"Building in CodeBuild project {PROJECT}",
    ]
    lines = finished.stderr.splitlines()
    assert lines.count(f"==> Logs: {log_link(PROJECT, REGION)}") == 1
    assert any(line.startswith("==>   BUILD (") for line in lines), "the build's phase must be shown"
    upload = next(call for call in calls if call["argv"][1:3] == ["s3", "cp"])
    assert sorted(json.loads(upload["stdin"])) == sorted([*CONTEXT, *sources(workspace)])


def test_an_existing_project_and_bucket_are_used_and_extra_tags_pushed(workspace):
    finished, calls = remote(
        workspace,
        FAKE_REPOSITORY_EXISTS="1",
        FAKE_CODEBUILD_PROJECT_EXISTS="1",
        BUILD_BUCKET="team-builds",
        EXTRA_TAGS="abc1234 v1.2.3",
    )
    assert finished.returncode == 0, finished.stderr
    assert build_variables(calls) == expected_variables(TAG, "abc1234", "v1.2.3", "latest")
    expected = expected_calls(create_repository=False, create_project=False, bucket="team-builds", head_bucket=False)
    assert argvs(calls) == expected
    assert finished.stdout.splitlines()[-1] == f"{REPOSITORY}:{TAG}"


@pytest.mark.parametrize("region", [REGION, "us-east-1"])
def test_a_missing_default_bucket_is_created_in_the_region(workspace, region):
    existing = {"FAKE_REPOSITORY_EXISTS": "1", "FAKE_CODEBUILD_PROJECT_EXISTS": "1"}
    finished, calls = remote(workspace, AWS_REGION=region, FAKE_BUCKET_MISSING="1", **existing)
    assert finished.returncode == 0, finished.stderr
    bucket = f"sagemaker-{region}-{ACCOUNT}"
    create = ["aws", "s3api", "create-bucket", "--bucket", bucket, "--region", region]
    if region != "us-east-1":  # us-east-1 refuses a location constraint naming itself
        create += ["--create-bucket-configuration", f"LocationConstraint={region}"]
    commands = [call[:3] for call in argvs(calls)]
    position = commands.index(["aws", "s3api", "head-bucket"])
    assert argvs(calls)[position + 1] == create
    assert commands[position + 2] == ["aws", "s3", "cp"]


def test_a_missing_project_without_a_role_names_the_role_to_create(workspace):
    finished, calls = remote(workspace, FAKE_REPOSITORY_EXISTS="1")
    assert finished.returncode != 0
    assert f"ERROR: CodeBuild project {PROJECT} does not exist, and creating it needs a service role" in finished.stderr
    assert "--policy-document file://codebuild-policy.json" in finished.stderr
    assert '"Principal":{"Service":"codebuild.amazonaws.com"}' in finished.stderr
    assert f"CODEBUILD_ROLE_ARN={ROLE} make build-remote" in finished.stderr
    assert argvs(calls)[-1][:3] == ["aws", "codebuild", "batch-get-projects"], "nothing may be uploaded"


@pytest.mark.parametrize(
    ("fail", "message", "last_call"),
    [
        ("project", f"Cannot create CodeBuild project {PROJECT}", ["aws", "codebuild", "create-project"]),
        ("upload", f"Cannot upload the build context to s3://{BUCKET}/{KEY}", ["aws", "s3", "cp"]),
        ("start", f"Cannot start a build of CodeBuild project {PROJECT}", ["aws", "codebuild", "start-build"]),
        (
            "remote-build",
            f"Build {BUILD_ID} ended FAILED in phase BUILD: {BUILD_FAILURE['statusCode']}: {BUILD_FAILURE['message']}."
            f" Logs: {log_link(PROJECT, REGION)}",
            ["aws", "codebuild", "batch-get-builds"],
        ),
    ],
)
def test_a_failing_step_stops_the_script_with_its_message(workspace, fail, message, last_call):
    finished, calls = remote(workspace, FAKE_FAIL=fail, FAKE_REPOSITORY_EXISTS="1", CODEBUILD_ROLE_ARN=ROLE)
    assert finished.returncode != 0
    assert f"ERROR: {message}" in finished.stderr
    assert argvs(calls)[-1][: len(last_call)] == last_call, "the script went on after the failing step"
    assert finished.stdout == ""


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"AWS_REGION": "moon-1"}, "Unknown AWS region 'moon-1'"),
        ({"CODEBUILD_ROLE_ARN": "arn:aws:iam::12345:role/x"}, "Malformed IAM role ARN 'arn:aws:iam::12345:role/x'"),
        ({"EXTRA_TAGS": "abc1234 v1:2"}, "EXTRA_TAGS holds 'v1:2', which is not a valid Docker tag"),
        ({"IMAGE_NAME": "Models"}, "IMAGE_NAME 'Models' is not a valid ECR repository name"),
        ({"CODEBUILD_PROJECT": "my build"}, "CODEBUILD_PROJECT 'my build' is not a valid CodeBuild project name"),
        ({"CODEBUILD_COMPUTE_TYPE": "HUGE"}, "CODEBUILD_COMPUTE_TYPE 'HUGE' is not a CodeBuild compute type"),
        ({"BUILD_BUCKET": "My_Bucket"}, "BUILD_BUCKET 'My_Bucket' is not an S3 bucket name"),
        ({"POLL_SECONDS": "soon"}, "POLL_SECONDS 'soon' is not a whole number of seconds"),
{%- if cookiecutter.base_image == "from-scratch" and cookiecutter.framework == "pytorch" and cookiecutter.processor == "cpu" %}
        ({"PIP_EXTRA_INDEX_URL": ""}, "requirements.txt locks torch's CPU build"),
{%- endif %}
{%- if cookiecutter.base_image == "extend-prebuilt" %}
        ({"AWS_REGION": "xx-nowhere-1"}, "AWS publishes no prebuilt training image in region xx-nowhere-1"),
{%- endif %}
    ],
)
def test_bad_input_is_refused_before_any_aws_call(workspace, variables, message):
    finished, calls = remote(workspace, **variables)
    assert finished.returncode != 0
    assert f"ERROR: {message}" in finished.stderr
    assert calls == []
{%- if cookiecutter.base_image == "from-scratch" %}


def test_a_stale_lock_is_refused_before_any_aws_call(workspace):
    pyproject = workspace / "pyproject.toml"
    unlocked = 'dependencies = [\n    "no-such-package==1.0",'
    pyproject.write_text(pyproject.read_text().replace("dependencies = [", unlocked, 1))
    finished, calls = remote(workspace)
    assert finished.returncode != 0
    assert "run 'make lock'" in finished.stderr
    assert calls == []
{%- endif %}


def test_the_buildspec_logs_in_builds_for_sagemaker_and_pushes_every_tag(workspace):
    yaml = pytest.importorskip("yaml", reason="reading buildspec.yml needs PyYAML")
    spec = yaml.safe_load((workspace / "buildspec.yml").read_text())
    assert spec["env"]["shell"] == "bash"
    commands = [command for phase in ("pre_build", "build") for command in spec["phases"][phase]["commands"]]
    # CodeBuild stops a phase at its first failing command.
    script = "set -e\n" + "\n".join(commands)
    finished, calls = run(workspace, ["bash", "-c", script], **expected_variables(TAG, "abc1234", "latest"))
    assert finished.returncode == 0, finished.stderr
    password = ["aws", "ecr", "get-login-password"]
    logins = [password, ["docker", "login", "--username", "AWS", "--password-stdin", REGISTRY]]
{%- if cookiecutter.base_image == "extend-prebuilt" %}
    logins += [password, [*logins[1][:-1], BASE_IMAGE.split("/")[0]]]
{%- endif %}
    build = ["docker", "buildx", "build", "--platform", "linux/amd64", "--provenance=false", "--push"]
{%- if cookiecutter.base_image == "from-scratch" and cookiecutter.framework == "pytorch" and cookiecutter.processor == "cpu" %}
    build += ["--build-arg", "PIP_EXTRA_INDEX_URL"]  # by name: the value stays in the build's environment
{%- endif %}
{%- if cookiecutter.base_image == "extend-prebuilt" %}
    build += ["--build-arg", f"BASE_IMAGE={BASE_IMAGE}"]
{%- endif %}
    for tag in (TAG, "abc1234", "latest"):
        build += ["--tag", f"{REPOSITORY}:{tag}"]
    assert argvs(calls) == [*logins, [*build, "."]]
    assert all(call["stdin"] == PASSWORD for call in calls if call["argv"][1] == "login")


CACHED = "src/deep/__pycache__/b.pyc"


def load_packer():
    spec = importlib.util.spec_from_file_location("pack_context", PROJECT_DIR / "scripts" / "pack_context.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # where its dataclass looks itself up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("dockerignore", "included"),
    [
        # This project's kind: everything out, then a few folders back in, caches out again.
        ("*\n!src/\nsrc/**/__pycache__\n", {"src/a.py", "src/deep/b.py"}),
        # Comments, a leading slash, `**` at the start, a `!` after, a folder matching all inside it.
        ("# notes\n/local\n**/*.log\n!keep.log\ndocs\n", {"src/a.py", "src/deep/b.py", CACHED, "keep.log", "x.txt"}),
        # `*` stays within one folder; `?` is one character; a class of characters.
        ("src/*.py\nx.tx?\n[kd]*\n", {"src/deep/b.py", CACHED, "local/secret", "out.log"}),
    ],
)
def test_the_archive_holds_what_docker_would_send(tmp_path, dockerignore, included):
    packer = load_packer()
    files = ["src/a.py", "src/deep/b.py", CACHED, "local/secret", "docs/d.md"]
    files += ["keep.log", "out.log", "x.txt"]
    for name in [*files, "Dockerfile"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    (tmp_path / ".dockerignore").write_text(dockerignore)
    names = packer.context_files(tmp_path)
    assert set(names) == {"Dockerfile", ".dockerignore", *included}
    # The same files give the same bytes, whatever their times say.
    first = packer.archive(tmp_path, names)
    for name in names:
        os.utime(tmp_path / name, (1_700_000_000, 1_700_000_000))
    assert packer.archive(tmp_path, names) == first
