"""Stand-in `aws` and `docker` executables for the script tests: they record each call and answer
like the real tools do for the calls scripts/ makes. FAKE_FAIL names a step to fail, or several
separated by commas (build, push, login, describe, create, buildx, engine, credentials, image;
provenance: a buildx without --provenance; role: no such role; iam-denied: iam:GetRole refused).
For scripts/build_remote.sh: upload, project (create-project), start (start-build), remote-build
(the build fails in its BUILD phase); FAKE_BUCKET_MISSING and FAKE_CODEBUILD_PROJECT_EXISTS.
FAKE_HANG names a docker step that never answers. The `uname` stand-in prints FAKE_ARCH (x86_64 unless
set); FAKE_ROLE_TRUST is the service the role's trust policy names.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
import zipfile
from pathlib import Path

ACCOUNT = "123456789012"
# What `aws ecr get-login-password` prints; it must never appear in the scripts' output.
PASSWORD = "fake-ecr-password-never-print-me"


def fail(step: str) -> bool:
    return step in os.environ.get("FAKE_FAIL", "").split(",")


def record(tool: str, args: list[str], stdin: str | None = None) -> None:
    with Path(os.environ["FAKE_CALLS"]).open("a", encoding="utf-8") as calls:
        calls.write(json.dumps({"argv": [tool, *args], "stdin": stdin}) + "\n")


# The build build_remote.sh starts, the CloudWatch link CodeBuild gives it, and how it fails when asked to.
BUILD_UUID = "0f5e7c1e-3b7a-4c1e-9a51-7d3e2b8f4a10"
BUILD_FAILURE = {
    "statusCode": "COMMAND_EXECUTION_ERROR",
    "message": "Error while executing command: docker buildx build. Reason: exit status 1",
}
DENIED = "An error occurred ({}) when calling the {} operation"


def log_link(project: str, region: str) -> str:
    group = f"log-group/$252Faws$252Fcodebuild$252F{project}"
    return f"https://console.aws.amazon.com/cloudwatch/home?region={region}#logsV2:log-groups/{group}/log-events/{BUILD_UUID}"


def upload(args: list[str]) -> int:
    """`aws s3 cp - s3://...`: the archive on stdin is recorded as the names it holds."""
    names = zipfile.ZipFile(io.BytesIO(sys.stdin.buffer.read())).namelist()
    record("aws", args, stdin=json.dumps(names))
    if fail("upload"):
        print(f"upload failed: - to {args[3]} " + DENIED.format("AccessDenied", "PutObject"), file=sys.stderr)
        return 1
    return 0


def build_state(build_id: str, region: str) -> dict:
    """What batch-get-builds says: the BUILD phase under way the first time it is asked, the end the next."""
    asked = sum('"batch-get-builds"' in line for line in Path(os.environ["FAKE_CALLS"]).read_text().splitlines())
    done = ("SUBMITTED", "QUEUED", "PROVISIONING", "DOWNLOAD_SOURCE", "INSTALL", "PRE_BUILD")
    phases = [{"phaseType": phase, "phaseStatus": "SUCCEEDED"} for phase in done]
    if asked < 2:
        status, current = "IN_PROGRESS", "BUILD"
        phases.append({"phaseType": "BUILD"})
    else:
        status = "FAILED" if fail("remote-build") else "SUCCEEDED"
        current = "COMPLETED"
        # CodeBuild goes on to POST_BUILD and FINALIZING after a failed BUILD phase.
        build = {"phaseType": "BUILD", "phaseStatus": status, "contexts": [BUILD_FAILURE] if status == "FAILED" else []}
        phases += [build, *({"phaseType": phase, "phaseStatus": "SUCCEEDED"} for phase in ("POST_BUILD", "FINALIZING"))]
        phases.append({"phaseType": "COMPLETED"})
    logs = {"deepLink": log_link(build_id.split(":")[0], region)}
    return {"id": build_id, "buildStatus": status, "currentPhase": current, "phases": phases, "logs": logs}


def codebuild(args: list[str]) -> int:
    command, region = args[1], args[args.index("--region") + 1]
    if command == "batch-get-projects":
        exists = os.environ.get("FAKE_CODEBUILD_PROJECT_EXISTS") == "1"
        print(args[args.index("--names") + 1] if exists else "None")
        return 0
    if command == "create-project":
        if fail("project"):
            print(DENIED.format("InvalidInputException", "CreateProject") + ": not authorized", file=sys.stderr)
            return 254
        print(json.dumps({"project": {"name": args[args.index("--name") + 1]}}))
        return 0
    if command == "start-build":
        if fail("start"):
            print(DENIED.format("AccountLimitExceededException", "StartBuild"), file=sys.stderr)
            return 254
        print(f"{args[args.index('--project-name') + 1]}:{BUILD_UUID}")
        return 0
    if command == "batch-get-builds":
        print(json.dumps({"builds": [build_state(args[args.index("--ids") + 1], region)], "buildsNotFound": []}))
        return 0
    print(f"fake aws: unexpected call {args}", file=sys.stderr)
    return 2


def aws(args: list[str]) -> int:
    if args[:3] == ["s3", "cp", "-"]:
        return upload(args)
    record("aws", args)
    if args[:1] == ["codebuild"]:
        return codebuild(args)
    if args[:2] == ["s3api", "head-bucket"]:
        if os.environ.get("FAKE_BUCKET_MISSING") == "1":
            print("An error occurred (404) when calling the HeadBucket operation: Not Found", file=sys.stderr)
            return 254
        return 0
    if args[:2] == ["s3api", "create-bucket"]:
        print(json.dumps({"Location": f"/{args[args.index('--bucket') + 1]}"}))
        return 0
    if args[:3] == ["configure", "get", "region"]:
        region = os.environ.get("FAKE_CONFIGURED_REGION")
        if region:
            print(region)
        return 0 if region else 1
    if args[:2] == ["sts", "get-caller-identity"]:
        if fail("credentials"):
            print("Unable to locate credentials. Configure them with aws configure.", file=sys.stderr)
            return 253
        print(ACCOUNT)
        return 0
    if args[:2] == ["ecr", "describe-repositories"]:
        if fail("describe"):
            print("An error occurred (AccessDeniedException) when calling DescribeRepositories", file=sys.stderr)
            return 254
        if os.environ.get("FAKE_REPOSITORY_EXISTS") != "1":
            print("An error occurred (RepositoryNotFoundException) when calling DescribeRepositories", file=sys.stderr)
            return 254
        print(json.dumps({"repositories": [{"repositoryName": args[args.index("--repository-names") + 1]}]}))
        return 0
    if args[:2] == ["ecr", "create-repository"]:
        if fail("create"):
            print("An error occurred (AccessDeniedException) when calling CreateRepository", file=sys.stderr)
            return 254
        print(json.dumps({"repository": {"repositoryName": args[args.index("--repository-name") + 1]}}))
        return 0
    if args[:2] == ["ecr", "get-login-password"]:
        print(PASSWORD)
        return 0
    if args[:2] == ["iam", "get-role"]:
        if fail("role") or fail("iam-denied"):
            error = "NoSuchEntity" if fail("role") else "AccessDenied"
            print(f"An error occurred ({error}) when calling the GetRole operation", file=sys.stderr)
            return 254
        service = os.environ.get("FAKE_ROLE_TRUST", "sagemaker.amazonaws.com")
        statement = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
        print(json.dumps({"Version": "2012-10-17", "Statement": [statement]}))
        return 0
    print(f"fake aws: unexpected call {args}", file=sys.stderr)
    return 2


def docker(args: list[str]) -> int:
    if args[:1] == ["login"]:
        # Record after stdin is read, so the pipeline's `aws` call is always logged first.
        password = sys.stdin.read().strip()
        record("docker", args, stdin=password)
        if fail("login") or password != PASSWORD:
            print("Error response from daemon: login attempt failed with status: 400 Bad Request", file=sys.stderr)
            return 1
        print("Login Succeeded")
        return 0
    record("docker", args)
    answers = {
        ("info",): "engine",
        ("buildx", "version"): "buildx",
        ("buildx", "build"): "build",
        ("image", "inspect"): "image",
        ("push",): "push",
    }
    if args[:2] == ["buildx", "build"] and "--help" in args:
        options = ["--platform", "--load", "--tag"] + ([] if fail("provenance") else ["--provenance"])
        print("Usage:  docker buildx build [OPTIONS] PATH | URL | -")
        print("\n".join(f"      {option} string" for option in options))
        return 0
    step = answers.get(tuple(args[:2])) or answers.get(tuple(args[:1]))
    if step is not None and os.environ.get("FAKE_HANG") == step:
        time.sleep(60)
    if step is not None and fail(step):
        print(f"fake docker: {step} failed as asked", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    tool, *arguments = sys.argv[1:]
    if tool == "uname":
        record("uname", arguments)
        print(os.environ.get("FAKE_ARCH", "x86_64"))
        sys.exit(0)
    sys.exit(aws(arguments) if tool == "aws" else docker(arguments))
