"""Stand-in `aws` and `docker` executables for the script tests: they record each call and answer
like the real tools do for the calls scripts/ makes. FAKE_FAIL names a step to fail, or several
separated by commas (build, push, login, describe, create, buildx, engine, credentials, image;
provenance: a buildx without --provenance; role: no such role; iam-denied: iam:GetRole refused).
FAKE_HANG names a docker step that never answers. The `uname` stand-in prints FAKE_ARCH (x86_64 unless
set); FAKE_ROLE_TRUST is the service the role's trust policy names.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ACCOUNT = "123456789012"
# What `aws ecr get-login-password` prints; it must never appear in the scripts' output.
PASSWORD = "fake-ecr-password-never-print-me"


def fail(step: str) -> bool:
    return step in os.environ.get("FAKE_FAIL", "").split(",")


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
