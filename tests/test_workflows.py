"""The rendered GitHub Actions workflows: actionlint is clean on them, every action is pinned to a commit,
and their jobs, run here step by step, do what they promise. `run:` steps execute in bash against the
project's own recording stand-ins of `aws` and `docker` (its tests/fake_cli.py); `uses:` steps are
stood in for by what the action does to the job (configure-aws-credentials exports the region); `if:`
conditions and `${{ }}` expressions are evaluated by a small evaluator of the forms GitHub defines,
which refuses anything else, so a workflow that outgrows it fails here rather than passing unchecked.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import SUPPORTED, Combination

BIN = Path(sys.executable).parent
WORKFLOWS = ("ci.yml", "release.yml")
# A pinned action: owner/repo[/path]@<40-hex commit> # v<major>.<minor>.<patch>, as Dependabot keeps them.
PINNED = re.compile(r"^\s*(?:- )?uses: ([A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+)@([0-9a-f]{40}) # (v(\d+)\.\d+\.\d+)$", re.M)
USES = re.compile(r"^\s*(?:- )?uses:", re.M)
ACCOUNT = "123456789012"  # what the project's fake `aws sts get-caller-identity` answers
ROLE = f"arn:aws:iam::{ACCOUNT}:role/github-release"
SHA = "0123456789abcdef0123456789abcdef01234567"
REPOSITORY = "team/iris-classifier"
CPU_INDEX = "https://cpu-wheels.example.invalid/simple"


# ---- GitHub's expression syntax, the part these workflows use -------------------------------------------------

TOKEN = re.compile(r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<op>==|!=|&&|\|\||!|\(|\))|(?P<name>[A-Za-z_][\w.-]*))")


def tokens(expression: str) -> list[tuple[str, str]]:
    found, position = [], 0
    while position < len(expression.rstrip()):
        match = TOKEN.match(expression, position)
        assert match, f"expression {expression!r}: cannot read {expression[position:]!r}"
        kind = match.lastgroup
        found.append((kind, match.group(kind)))
        position = match.end()
    return found


def lookup(name: str, context: dict[str, Any]) -> Any:
    if name in ("true", "false"):
        return name == "true"
    if name == "null":
        return None
    assert "(" not in name, f"function calls are not evaluated here: {name}"
    value: Any = context
    for part in name.split("."):
        assert value is context or isinstance(value, dict | type(None)), f"{name}: {part} of a non-object"
        value = value.get(part) if isinstance(value, dict) else None
    if name.startswith("vars.") and value is None:
        return ""  # an unset configuration variable reads as an empty string
    return value


def number(value: Any) -> float:
    if value is None or value is False:
        return 0.0
    if value is True:
        return 1.0
    if isinstance(value, str):
        try:
            return float(value.strip() or 0)
        except ValueError:
            return math.nan
    return float(value)


def equal(left: Any, right: Any) -> bool:
    """GitHub's loose equality: strings case-insensitively, mixed types as numbers."""
    if isinstance(left, str) and isinstance(right, str):
        return left.casefold() == right.casefold()
    return number(left) == number(right)


def evaluate(expression: str, context: dict[str, Any]) -> Any:
    """Evaluate a GitHub Actions expression: literals, property paths, !, ==, !=, && and || with parentheses."""
    stream = tokens(expression)
    position = 0

    def peek() -> str | None:
        return stream[position][1] if position < len(stream) else None

    def take() -> tuple[str, str]:
        nonlocal position
        position += 1
        return stream[position - 1]

    def primary() -> Any:
        kind, text = take()
        if text == "!" and kind == "op":
            return not primary()
        if text == "(" and kind == "op":
            value = disjunction()
            assert take()[1] == ")", f"{expression!r}: unbalanced parentheses"
            return value
        if kind == "string":
            return text[1:-1].replace("''", "'")
        assert kind == "name", f"{expression!r}: unexpected {text!r}"
        return lookup(text, context)

    def comparison() -> Any:
        value = primary()
        while peek() in ("==", "!="):
            operator = take()[1]
            value = equal(value, primary()) == (operator == "==")
        return value

    def conjunction() -> Any:
        value = comparison()
        while peek() == "&&":
            take()
            right = comparison()
            value = right if value else value
        return value

    def disjunction() -> Any:
        value = conjunction()
        while peek() == "||":
            take()
            right = conjunction()
            value = value if value else right
        return value

    result = disjunction()
    assert position == len(stream), f"{expression!r}: trailing {stream[position:]}"
    return result


def interpolate(text: Any, context: dict[str, Any]) -> str:
    """A workflow value with its ${{ }} expressions evaluated, as a string."""
    text = str(text)

    def replace(match: re.Match[str]) -> str:
        value = evaluate(match.group(1), context)
        return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

    return re.sub(r"\$\{\{(.*?)\}\}", replace, text)


def condition(text: Any, context: dict[str, Any]) -> bool:
    if text is None:
        return True  # success(): no step before failed, or the run would have stopped
    if isinstance(text, bool):
        return text
    bare = text.strip()
    if bare.startswith("${{") and bare.endswith("}}"):
        bare = bare[3:-2]
    return bool(evaluate(bare, context))


# ---- Running a job ------------------------------------------------------------------------------------------


@dataclass
class JobRun:
    ran: bool
    returncode: int = 0
    output: str = ""
    calls: list[list[str]] = field(default_factory=list)
    actions: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    summary: str = ""

    def calls_of(self, *prefix: str) -> list[list[str]]:
        return [call for call in self.calls if call[: len(prefix)] == list(prefix)]


def load(project: Path, name: str) -> dict[str, Any]:
    return yaml.safe_load((project / ".github" / "workflows" / name).read_text(encoding="utf-8"))


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    return workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as true


def install_fakes(project: Path, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    fake = project / "tests" / "fake_cli.py"
    for tool in ("aws", "docker"):
        path = directory / tool
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{fake}" {tool} "$@"\n', encoding="utf-8")
        path.chmod(0o755)


def stand_in_for_action(uses: str, inputs: dict[str, str], job_env: dict[str, str]) -> None:
    """What each action the workflows use leaves behind for the steps after it."""
    action = uses.split("@", 1)[0]
    if action == "actions/checkout":
        return  # the rendered project is the work tree already
    if action == "aws-actions/configure-aws-credentials":
        assert inputs.get("role-to-assume"), f"{uses} without role-to-assume: {inputs}"
        # It exports the region and temporary credentials; the stand-in `aws` needs none.
        job_env["AWS_REGION"] = job_env["AWS_DEFAULT_REGION"] = inputs["aws-region"]
        return
    raise AssertionError(f"no stand-in for the action {uses}: add one to tests/test_workflows.py")


def run_job(
    project: Path,
    workflow_name: str,
    job_id: str,
    tmp_path: Path,
    github: dict[str, Any],
    variables: dict[str, str],
) -> JobRun:
    workflow = load(project, workflow_name)
    job = workflow["jobs"][job_id]
    context: dict[str, Any] = {"github": github, "vars": variables}
    if not condition(job.get("if"), context):
        return JobRun(ran=False)

    work = tmp_path / f"{workflow_name}-{job_id}"
    fakes = work / "bin"
    install_fakes(project, fakes)
    calls, summary, runner_temp = work / "calls.jsonl", work / "summary.md", work / "runner-temp"
    runner_temp.mkdir()
    calls.touch()
    summary.touch()
    ref_type = "tag" if github["ref"].startswith("refs/tags/") else "branch"
    environ = {
        # The stand-ins first, then this environment's tools (shellcheck, python3); no AWS settings leak in.
        "PATH": os.pathsep.join([str(fakes), str(BIN), os.environ.get("PATH", "/usr/bin:/bin")]),
        "HOME": str(work),
        "LANG": "C.UTF-8",
        "FAKE_CALLS": str(calls),
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": github["event_name"],
        "GITHUB_REF": github["ref"],
        "GITHUB_REF_NAME": github["ref_name"],
        "GITHUB_REF_TYPE": ref_type,
        "GITHUB_SHA": github["sha"],
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_WORKSPACE": str(project),
        "RUNNER_TEMP": str(runner_temp),
    }
    for scope in (workflow, job):
        for name, value in (scope.get("env") or {}).items():
            environ[name] = interpolate(value, context)
    shell = ((job.get("defaults") or workflow.get("defaults") or {}).get("run") or {}).get("shell")

    result = JobRun(ran=True)
    outputs: list[str] = []
    for number_, step in enumerate(job["steps"]):
        if not condition(step.get("if"), context):
            continue
        if "uses" in step:
            inputs = {name: interpolate(value, context) for name, value in (step.get("with") or {}).items()}
            result.actions.append((step["uses"].split("@", 1)[0], inputs))
            stand_in_for_action(step["uses"], inputs, environ)
            continue
        script = work / f"step-{number_}.sh"
        script.write_text(step["run"], encoding="utf-8")
        # GitHub runs `bash -e {0}` by default and `bash --noprofile --norc -eo pipefail {0}` for `shell: bash`.
        flags = ["--noprofile", "--norc", "-eo", "pipefail"] if (step.get("shell") or shell) == "bash" else ["-e"]
        step_env = {name: interpolate(value, context) for name, value in (step.get("env") or {}).items()}
        finished = subprocess.run(
            ["bash", *flags, str(script)],
            cwd=project,
            env={**environ, **step_env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        outputs.append(f"--- {step.get('name') or step['run'].splitlines()[0]}\n{finished.stdout}{finished.stderr}")
        if finished.returncode != 0:
            result.returncode = finished.returncode
            break
    result.output = "\n".join(outputs)
    result.calls = [json.loads(line)["argv"] for line in calls.read_text(encoding="utf-8").splitlines()]
    result.summary = summary.read_text(encoding="utf-8")
    return result


def push_event(tag: str | None = None) -> dict[str, Any]:
    return {
        "event_name": "push",
        "ref": f"refs/tags/{tag}" if tag else "refs/heads/main",
        "ref_name": tag or "main",
        "ref_type": "tag" if tag else "branch",
        "sha": SHA,
        "repository": REPOSITORY,
        "event": {},
    }


def pull_request(head: str, fork: bool) -> dict[str, Any]:
    """A pull request from a branch of repository `head`; `fork`: GitHub's mark on a head repository that is a fork."""
    return {
        "event_name": "pull_request",
        "ref": "refs/pull/7/merge",
        "ref_name": "7/merge",
        "ref_type": "branch",
        "sha": SHA,
        "repository": REPOSITORY,
        "event": {"pull_request": {"head": {"repo": {"full_name": head, "fork": fork}}}},
    }


def fork_pull_request() -> dict[str, Any]:
    return pull_request("someone-else/iris-classifier", fork=True)


# Combinations whose workflows and everything their steps run (scripts/, prebuilt-images.json, the stand-ins)
# are byte-identical would run the same steps: the first of them runs the jobs, the others skip naming it.
JOBS_RAN: dict[tuple[str, str], str] = {}


def run_jobs_once(test: str, combination: Combination, project: Path) -> None:
    digest = hashlib.sha256()
    run_files = [*(project / ".github" / "workflows").iterdir(), *(project / "scripts").iterdir()]
    for path in sorted([*run_files, project / "prebuilt-images.json", project / "tests" / "fake_cli.py"]):
        if path.is_file():
            digest.update(path.relative_to(project).as_posix().encode() + b"\0" + path.read_bytes())
    first = JOBS_RAN.setdefault((test, digest.hexdigest()), combination.id)
    if first != combination.id:
        pytest.skip(f"workflows, scripts and stand-ins byte-identical to {first}'s, whose jobs ran")


def needs_torch_index(combination: Combination) -> bool:
    return combination.framework == "pytorch" and combination.processor == "cpu"


def base_variables(combination: Combination) -> dict[str, str]:
    return {"PIP_EXTRA_INDEX_URL": CPU_INDEX} if needs_torch_index(combination) else {}


# ---- The tests ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=SUPPORTED, ids=lambda c: c.id)
def baked(request, bake_once) -> tuple[Combination, Path]:
    combination: Combination = request.param
    result = bake_once(**combination.answers())
    assert result.exit_code == 0, f"{combination.id} did not render: {result.exception}"
    return combination, result.project_path


def actionlint() -> str:
    found = shutil.which("actionlint", path=str(BIN)) or shutil.which("actionlint")
    assert found, "actionlint is missing: make .venv/installed (tests/requirements.txt installs it)"
    return found


def test_workflows_pass_actionlint_and_pin_every_action_by_commit(baked, tmp_path):
    combination, project = baked
    folder = project / ".github" / "workflows"
    assert sorted(path.name for path in folder.iterdir()) == sorted(WORKFLOWS)
    pins: dict[str, tuple[str, str]] = {}
    by_major = tmp_path / "by-major-version"
    by_major.mkdir()
    for name in WORKFLOWS:
        text = (folder / name).read_text(encoding="utf-8")
        for leftover in ("{%", "{#", "'{{'", "cookiecutter"):
            assert leftover not in text, f"{name} holds template syntax {leftover!r}"
        lines = [line for line in text.splitlines() if USES.match(line)]
        assert lines, f"{name} uses no action"
        for line in lines:
            match = PINNED.match(line)
            assert match, f"{name}: not pinned to a full commit SHA with its version in a comment: {line.strip()}"
            action, sha, version, _ = match.groups()
            assert pins.setdefault(action, (sha, version)) == (sha, version), f"{action} is pinned twice, differently"
        # The same workflow with each commit replaced by its version's major tag (actions/checkout@v7):
        # actionlint knows popular actions by tag, so this copy gets its checks of their inputs and of
        # their runtime (a node20 action is reported), which it cannot apply to a commit.
        (by_major / name).write_text(PINNED.sub(lambda m: m.group(0).split("@")[0] + f"@v{m.group(4)}", text))
        assert "@v" in (by_major / name).read_text()
    paths = [folder / name for name in WORKFLOWS] + [by_major / name for name in WORKFLOWS]
    # shellcheck (from this environment) on PATH: actionlint checks every `run:` script with it.
    environ = {**os.environ, "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")])}
    finished = subprocess.run(
        [actionlint(), "-oneline", *map(str, paths)], capture_output=True, text=True, env=environ, check=False
    )
    assert finished.returncode == 0, f"actionlint in {combination.id}:\n{finished.stdout}{finished.stderr}"


def test_ci_needs_aws_only_when_the_role_is_set(baked, tmp_path):
    combination, project = baked
    workflow = load(project, "ci.yml")
    assert workflow["permissions"] == {"contents": "read"}
    assert sorted(triggers(workflow)) == ["pull_request", "push"]
    variables = base_variables(combination)
    if needs_torch_index(combination):
        assert workflow["env"] == {"PIP_EXTRA_INDEX_URL": "${{ vars.PIP_EXTRA_INDEX_URL }}"}
    else:
        assert "env" not in workflow, "only PyTorch's CPU build needs a package index of its own"

    # No AWS settings: whatever runs needs neither an OIDC token nor an AWS action, and the image job
    # either builds without AWS (from-scratch) or says in the summary why it did not and what to set.
    context = {"github": push_event(), "vars": variables}
    running = [job_id for job_id, job in workflow["jobs"].items() if condition(job.get("if"), context)]
    for job_id in running:
        job = workflow["jobs"][job_id]
        assert "id-token" not in (job.get("permissions") or {}), f"{job_id} asks for an OIDC token without a role"
        for step in job["steps"]:
            assert not step.get("uses", "").startswith("aws-actions/"), f"{job_id} uses AWS without a role"
    if combination.base_image == "from-scratch":
        assert sorted(running) == ["image", "test"]
        run_jobs_once("ci", combination, project)
        image = run_job(project, "ci.yml", "image", tmp_path, push_event(), variables)
        assert image.returncode == 0, image.output
        assert not image.calls_of("aws"), f"the from-scratch build called aws: {image.calls_of('aws')}"
        (build,) = image.calls_of("docker", "buildx", "build")
        assert "linux/amd64" in build[build.index("--platform") + 1]
        return

    assert sorted(running) == ["image-skipped", "test"]
    with_role = {**variables, "AWS_ROLE_ARN": ROLE}
    fork = {"github": fork_pull_request(), "vars": with_role}
    assert [job_id for job_id, job in workflow["jobs"].items() if condition(job.get("if"), fork)] == [
        "test",
        "image-skipped",
    ], "a fork's pull request gets no OIDC token, even where the variable is set: it must skip the build too"
    # A repository that is itself a fork (GitHub marks its own branches' pull requests fork: true) builds them.
    own = {"github": pull_request(REPOSITORY, fork=True), "vars": with_role}
    assert [job_id for job_id, job in workflow["jobs"].items() if condition(job.get("if"), own)] == ["test", "image"]
    assert workflow["jobs"]["image"]["permissions"] == {"contents": "read", "id-token": "write"}
    assert "image-skipped" not in [
        job_id
        for job_id, job in workflow["jobs"].items()
        if condition(job.get("if"), {"github": push_event(), "vars": with_role})
    ]

    run_jobs_once("ci", combination, project)
    skipped = run_job(project, "ci.yml", "image-skipped", tmp_path / "unset", push_event(), variables)
    assert skipped.returncode == 0 and not skipped.calls, skipped.output
    assert "skipped" in skipped.summary and "`AWS_ROLE_ARN`" in skipped.summary, skipped.summary

    # With the role set, the image job assumes it and builds against AWS's base in the variable's region.
    image = run_job(
        project, "ci.yml", "image", tmp_path / "set", push_event(), {**with_role, "AWS_REGION": "eu-west-1"}
    )
    assert image.ran and image.returncode == 0, image.output
    assert image.actions[-1] == (
        "aws-actions/configure-aws-credentials",
        {"role-to-assume": ROLE, "aws-region": "eu-west-1"},
    )
    assert image.calls_of("aws", "ecr", "get-login-password", "--region", "eu-west-1")
    (login,) = image.calls_of("docker", "login")
    assert login[-1].endswith(".dkr.ecr.eu-west-1.amazonaws.com")
    (build,) = image.calls_of("docker", "buildx", "build")
    assert "linux/amd64" in build[build.index("--platform") + 1]
    assert not image.calls_of("docker", "push"), "CI builds the image; only the release workflow pushes"


def test_release_builds_for_amd64_and_pushes_the_version_and_the_commit(baked, tmp_path):
    combination, project = baked
    workflow = load(project, "release.yml")
    assert workflow["permissions"] == {"contents": "read", "id-token": "write"}
    assert triggers(workflow) == {"push": {"tags": ["v*"]}, "workflow_dispatch": None}
    variables = {**base_variables(combination), "AWS_ROLE_ARN": ROLE, "AWS_REGION": "eu-west-1"}
    run_jobs_once("release", combination, project)
    release = run_job(project, "release.yml", "image", tmp_path, push_event("v1.2.0"), variables)
    assert release.returncode == 0, release.output
    assert release.actions == [
        ("actions/checkout", {}),
        ("aws-actions/configure-aws-credentials", {"role-to-assume": ROLE, "aws-region": "eu-west-1"}),
    ]
    (build,) = release.calls_of("docker", "buildx", "build")
    assert build[build.index("--platform") + 1] == "linux/amd64"
    if needs_torch_index(combination) and combination.base_image == "from-scratch":
        assert "PIP_EXTRA_INDEX_URL" in build, "the lock's torch needs PyTorch's CPU index in the build"
    registry = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"
    image = f"{registry}/{json.loads((project / '.cookiecutter.json').read_text())['ecr_repository']}"
    pushed = [call[2] for call in release.calls_of("docker", "push")]
    assert pushed == [f"{image}:v1.2.0", f"{image}:{SHA}", f"{image}:latest"]
    assert f"```\n{image}:v1.2.0\n```" in release.summary, release.summary
    assert f"Also tagged: {SHA} latest" in release.summary


def test_release_by_hand_on_a_branch_pushes_the_commit_in_the_projects_region(bake_once, tmp_path):
    project = bake_once(**SUPPORTED[0].answers()).project_path
    region = json.loads((project / ".cookiecutter.json").read_text())["aws_region"]
    dispatch = {**push_event(), "event_name": "workflow_dispatch"}
    release = run_job(project, "release.yml", "image", tmp_path, dispatch, {"AWS_ROLE_ARN": ROLE})
    assert release.returncode == 0, release.output
    assert release.actions[-1][1]["aws-region"] == region
    pushed = [call[2].rsplit(":", 1)[1] for call in release.calls_of("docker", "push")]
    assert pushed == [SHA, "latest"]
    assert f":{SHA}\n```" in release.summary and "Also tagged: latest" in release.summary


@pytest.mark.parametrize(
    ("variables", "tag", "message"),
    [
        ({}, "v1.2.0", "ERROR: AWS_ROLE_ARN is not set: set the repository variable AWS_ROLE_ARN"),
        ({"AWS_ROLE_ARN": "github-release"}, "v1.2.0", "ERROR: Malformed IAM role ARN 'github-release'"),
        ({"AWS_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:user/me"}, "v1.2.0", "ERROR: Malformed IAM role ARN"),
        ({"AWS_ROLE_ARN": ROLE}, "v1.2.0+build.5", "ERROR: IMAGE_TAG holds 'v1.2.0+build.5', which is not a valid"),
        ({"AWS_ROLE_ARN": ROLE, "AWS_REGION": "eu-west"}, "v1.2.0", "ERROR: Unknown AWS region 'eu-west'"),
    ],
    ids=["no-role", "role-name-only", "user-not-role", "tag-docker-refuses", "region-malformed"],
)
def test_release_refuses_bad_settings_before_any_aws_call(bake_once, tmp_path, variables, tag, message):
    project = bake_once(**SUPPORTED[0].answers()).project_path
    release = run_job(project, "release.yml", "image", tmp_path, push_event(tag), variables)
    assert release.returncode != 0
    assert message in release.output, release.output
    # Only the checkout ran, which the checks need (they are scripts/common.sh's).
    assert [action for action, _ in release.actions] == ["actions/checkout"], release.actions
    assert not release.calls and not release.summary


def test_readme_names_every_variable_and_holds_valid_policies(baked):
    combination, project = baked
    readme = (project / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Release from CI\n", 1)[1].split("\n## ", 1)[0]
    read = set()
    for name in WORKFLOWS:
        read |= set(re.findall(r"vars\.([A-Z_]+)", (project / ".github" / "workflows" / name).read_text()))
    assert read >= {"AWS_ROLE_ARN", "AWS_REGION"}
    for variable in read:
        assert f"`{variable}`" in section, f"the README's Release from CI does not name the variable {variable}"
    trust, permissions = (json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.S))
    (statement,) = trust["Statement"]
    assert statement["Principal"]["Federated"].endswith(":oidc-provider/token.actions.githubusercontent.com")
    subjects = statement["Condition"]["StringLike"]["token.actions.githubusercontent.com:sub"]
    assert "repo:OWNER/REPO:ref:refs/tags/v*" in subjects
    assert all(subject.startswith("repo:OWNER/REPO:") for subject in subjects), "scoped to the repository"
    actions: set[str] = set()
    for entry in permissions["Statement"]:
        actions |= {entry["Action"]} if isinstance(entry["Action"], str) else set(entry["Action"])
    assert {"ecr:GetAuthorizationToken", "ecr:PutImage", "ecr:CreateRepository"} <= actions
    if combination.base_image == "extend-prebuilt":
        assert "repo:OWNER/REPO:pull_request" in subjects, "CI's image job assumes the role on pull requests"
        assert "ecr:GetDownloadUrlForLayer" in actions, "pulling AWS's base image"
