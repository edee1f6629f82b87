"""Stand-in `aws` and `docker` executables for the script tests: they record each call and answer
like the real tools do for the calls scripts/ makes. FAKE_FAIL names a step to fail
(build, push, login, describe, create, buildx, engine, credentials, image).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ACCOUNT = "123456789012"
# What `aws ecr get-login-password` prints; it must never appear in the scripts' output.
PASSWORD = "fake-ecr-password-never-print-me"


def fail(step: str) -> bool:
    return os.environ.get("FAKE_FAIL") == step


def record(tool: str, args: list[str], stdin: str | None = None) -> None:
    with Path(os.environ["FAKE_CALLS"]).open("a", encoding="utf-8") as calls:
        calls.write(json.dumps({"argv": [tool, *args], "stdin": stdin}) + "\n")


def aws(args: list[str]) -> int:
    record("aws", args)
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
    step = answers.get(tuple(args[:2])) or answers.get(tuple(args[:1]))
    if step is not None and fail(step):
        print(f"fake docker: {step} failed as asked", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    tool, *arguments = sys.argv[1:]
    sys.exit(aws(arguments) if tool == "aws" else docker(arguments))
