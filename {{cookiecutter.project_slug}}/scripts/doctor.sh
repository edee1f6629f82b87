#!/usr/bin/env bash
# Check the set-up before building or launching: one line per check, ok or the problem and its fix.
# Exits 1 when anything blocks; warnings do not. It creates, builds and pushes nothing{% if cookiecutter.base_image == "extend-prebuilt" %} (Docker keeps
# its login to AWS's registry, as after `make build`){% endif %}.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/common.sh
source scripts/common.sh

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
LAUNCH_VENV="${LAUNCH_VENV:-.venv-launch}"
PACKAGE="{{ cookiecutter.package_name }}"
MINIMUM_PYTHON="{{ cookiecutter.python_version }}"
# Seconds any one tool may take: a wedged Docker engine or an unreachable AWS endpoint must not hang the doctor.
DOCTOR_TIMEOUT="${DOCTOR_TIMEOUT:-20}"
[[ "$DOCTOR_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "DOCTOR_TIMEOUT must be a whole number of seconds, not '${DOCTOR_TIMEOUT}'."

NEWLINE=$'\n'
oks=0
warnings=0
problems=0

ok() {
  oks=$((oks + 1))
  printf 'ok       %s\n' "$*"
}

warn() {
  warnings=$((warnings + 1))
  printf 'warning  %s\n' "$*"
}

problem() {
  problems=$((problems + 1))
  printf 'problem  %s\n' "$*"
}

skip() {
  printf 'skip     %s\n' "$*"
}

has() {
  command -v "$1" >/dev/null 2>&1
}

# bounded SECONDS COMMAND...: the command's status, or 124 when it ran past SECONDS and was stopped
# (macOS has no timeout(1)). stdin is handed on explicitly, since a background command would otherwise
# get /dev/null; the watchdog writes nowhere, so a $(...) around this never waits for it, and stops its
# sleep when it is stopped itself.
bounded() {
  local seconds="$1" pid watchdog status=0
  shift
  "$@" <&0 &
  pid=$!
  (
    trap 'kill "$sleeper"; exit 0' TERM
    sleep "$seconds" &
    sleeper=$!
    wait "$sleeper" && kill "$pid"
  ) >/dev/null 2>&1 &
  watchdog=$!
  wait "$pid" || status=$?
  if kill "$watchdog" >/dev/null 2>&1; then
    wait "$watchdog" 2>/dev/null || true
  elif [[ "$status" -ne 0 ]]; then
    status=124
  fi
  return "$status"
}

# The message of a check from common.sh, without its ERROR: prefix; empty when the value passes.
refusal() {
  local message
  message="$( ("$@") 2>&1 >/dev/null)" && return 0
  printf '%s\n' "${message#ERROR: }"
}

first_line() {
  printf '%s\n' "${1%%"$NEWLINE"*}"
}

plural() {
  if [[ "$1" -eq 1 ]]; then printf '%s %s' "$1" "$2"; else printf '%s %ss' "$1" "$2"; fi
}

# What later checks depend on, found first; the lines below still come in the documented order.
region="$(aws_region)"
region_shaped=no
[[ ! "$region" =~ $REGION_SHAPE ]] || region_shaped=yes
docker_cli=no
! has docker || docker_cli=yes
engine=no
if [[ "$docker_cli" == yes ]] && bounded "$DOCTOR_TIMEOUT" docker info >/dev/null 2>&1; then
  engine=yes
fi
account=""
credentials_error=""
if ! has aws; then
  credentials_error="the AWS CLI was not found on PATH: install the AWS CLI v2"
elif [[ "$region_shaped" == no ]]; then
  credentials_error="skip"
else
  sts_status=0
  answer="$(bounded "$DOCTOR_TIMEOUT" aws sts get-caller-identity --query Account --output text --region "$region" 2>&1)" \
    || sts_status=$?
  # The account is the last line; anything the CLI printed before it is a warning.
  if [[ "$sts_status" -eq 0 && "${answer##*"$NEWLINE"}" =~ ^[0-9]{12}$ ]]; then
    account="${answer##*"$NEWLINE"}"
  elif [[ "$sts_status" -eq 124 ]]; then
    credentials_error="AWS STS did not answer within ${DOCTOR_TIMEOUT}s: check the network (and HTTPS_PROXY, if you use one)"
  elif [[ "$answer" == *"Could not connect to the endpoint URL"* ]]; then
    credentials_error="AWS STS cannot be reached in region ${region} ($(first_line "$answer")): check the region and the network"
  else
    credentials_error="missing or expired ($(first_line "$answer")): run 'aws configure' or 'aws sso login'"
  fi
fi

# Python and the project's environment.
if ! has "$PYTHON"; then
  problem "Python: '${PYTHON}' was not found on PATH: install Python ${MINIMUM_PYTHON} or later (or set PYTHON)"
elif version="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3]); sys.exit(sys.version_info < tuple(map(int, sys.argv[1].split("."))))' "$MINIMUM_PYTHON" 2>/dev/null)"; then
  ok "Python ${version}"
else
  problem "Python ${version:-of unknown version} (${PYTHON}): this project needs ${MINIMUM_PYTHON} or later: install it and set PYTHON"
fi
if [[ ! -x "${VENV}/bin/python" ]]; then
  problem "no ${VENV}: run 'make install'"
elif "${VENV}/bin/python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec(sys.argv[1]) is None)' "$PACKAGE" >/dev/null 2>&1; then
  ok "${VENV} has ${PACKAGE}"
else
  problem "${VENV} cannot import ${PACKAGE}: run 'make install'"
fi

# Docker's engine, or else CodeBuild through `make build-remote`, which needs the AWS CLI and credentials.
if [[ "$engine" == yes ]]; then
  ok "Docker engine answers"
else
  if [[ "$docker_cli" == no ]]; then
    missing="no docker CLI"
  else
    missing="Docker's engine does not answer (within ${DOCTOR_TIMEOUT}s)"
  fi
  if [[ -n "$account" ]]; then
    warn "${missing}: 'make build-remote' builds in AWS CodeBuild instead, or start Docker for 'make build'"
  else
    problem "${missing}, and 'make build-remote' needs AWS credentials: start Docker (or install it), or configure AWS credentials"
  fi
fi

# Buildx, with --provenance (buildx 0.10 or later): SageMaker refuses the attestation index it adds otherwise.
if [[ "$docker_cli" == no ]]; then
  skip "Docker Buildx: no docker CLI"
elif ! bounded "$DOCTOR_TIMEOUT" docker buildx version >/dev/null 2>&1; then
  problem "Docker Buildx is missing: install the docker-buildx plugin (Docker Desktop ships it)"
elif [[ "$(bounded "$DOCTOR_TIMEOUT" docker buildx build --help 2>&1 || true)" == *--provenance* ]]; then
  ok "Docker Buildx supports --provenance=false"
else
  problem "Docker Buildx has no --provenance option, and SageMaker refuses images with provenance attestations: update Buildx to 0.10 or later (Docker Desktop 4.17 or later)"
fi

# The host's architecture: SageMaker runs linux/amd64 images.
architecture="$(uname -m 2>/dev/null || true)"
case "$architecture" in
  x86_64 | amd64) ok "host architecture ${architecture} builds linux/amd64 natively" ;;
  *) warn "host architecture ${architecture:-unknown}: Docker builds linux/amd64 under emulation (slow), or 'make build-remote' builds on amd64 in CodeBuild" ;;
esac

# AWS credentials.
if [[ -n "$account" ]]; then
  ok "AWS credentials: account ${account}"
elif [[ "$credentials_error" == skip ]]; then
  skip "AWS credentials: not checked with a malformed region (see the region line)"
else
  problem "AWS credentials: ${credentials_error}"
fi

# The region{% if cookiecutter.base_image == "extend-prebuilt" %} and AWS's prebuilt images there{% endif %}.
region_error="$(refusal check_region "$region")"
if [[ -z "$region_error" ]]; then
  ok "region ${region}{% if cookiecutter.base_image == "extend-prebuilt" %}: AWS publishes the prebuilt training image there{% endif %}"
else
  problem "region: ${region_error}"
fi

# The ECR repository: a missing one is fine, push.sh creates it.
if [[ -z "$account" || -n "$region_error" ]]; then
  skip "ECR repository ${IMAGE_NAME}: needs AWS credentials and a valid region"
elif lookup="$(bounded "$DOCTOR_TIMEOUT" aws ecr describe-repositories --repository-names "$IMAGE_NAME" --region "$region" 2>&1 >/dev/null)"; then
  ok "ECR repository ${IMAGE_NAME} exists in ${region}"
elif [[ "$lookup" == *RepositoryNotFoundException* ]]; then
  ok "ECR repository ${IMAGE_NAME} does not exist yet in ${region}: 'make push' creates it"
else
  problem "ECR repository ${IMAGE_NAME} cannot be looked up ($(first_line "$lookup")): the caller needs ecr:DescribeRepositories (iam-policy.json)"
fi
{%- if cookiecutter.base_image == "extend-prebuilt" %}

# Login to AWS's registry of prebuilt images, which the build pulls its base from. The password goes
# from one pipe to the other and is never printed.
if [[ -z "$account" || -n "$region_error" ]]; then
  skip "login to AWS's prebuilt registry: needs AWS credentials and a valid region"
elif [[ "$engine" == no ]]; then
  skip "login to AWS's prebuilt registry: needs Docker's engine ('make build-remote' logs in inside CodeBuild)"
else
  base_image="$(prebuilt_image training "$region")"
  registry="${base_image%%/*}"
  if bounded "$DOCTOR_TIMEOUT" aws ecr get-login-password --region "$region" 2>/dev/null \
    | bounded "$DOCTOR_TIMEOUT" docker login --username AWS --password-stdin "$registry" >/dev/null 2>&1; then
    ok "Docker logs in to ${registry} (AWS's prebuilt images)"
  else
    problem "Docker cannot log in to ${registry}, where the base image is: the caller needs ecr:GetAuthorizationToken (iam-policy.json)"
  fi
fi
{%- endif %}

# The execution role SageMaker assumes: ROLE_ARN, else the notebook's role_arn parameter.
role_arn="${ROLE_ARN:-}"
role_source="ROLE_ARN"
if [[ -z "$role_arn" && -f notebooks/launch.ipynb ]] && has "$PYTHON"; then
  role_arn="$("$PYTHON" -c '
import json, re, sys
for cell in json.load(open(sys.argv[1]))["cells"]:
    if "parameters" in cell.get("metadata", {}).get("tags", []):
        found = re.search(r"^role_arn = \"(.*?)\"", "".join(cell["source"]), re.MULTILINE)
        print(found.group(1) if found else "")
' notebooks/launch.ipynb 2>/dev/null || true)"
  role_source="the notebook's role_arn"
fi
role_error="$(refusal check_role_arn "$role_arn")"
role_account="${role_arn#arn:*:iam::}"
role_account="${role_account%%:*}"
if [[ -z "$role_arn" ]]; then
  problem "execution role: none set: run 'make doctor ROLE_ARN=arn:aws:iam::<account>:role/<name>' with the role you pass the notebook as role_arn"
elif [[ -n "$role_error" ]]; then
  problem "execution role (${role_source}): ${role_error}"
elif [[ -z "$account" ]]; then
  skip "execution role ${role_arn}: its trust policy needs AWS credentials to check"
elif ! has "$PYTHON"; then
  skip "execution role ${role_arn}: its trust policy needs Python to read"
elif [[ "$role_account" != "$account" ]]; then
  warn "execution role ${role_arn} is in account ${role_account}, the credentials in ${account}: its trust policy was not checked"
elif ! trust="$(bounded "$DOCTOR_TIMEOUT" aws iam get-role --role-name "${role_arn##*/}" --query Role.AssumeRolePolicyDocument --output json 2>&1)"; then
  if [[ "$trust" == *NoSuchEntity* ]]; then
    problem "execution role ${role_arn} does not exist: create it with iam-policy.json's permissions (README, IAM)"
  else
    warn "execution role ${role_arn}: not checked, iam:GetRole was refused ($(first_line "$trust"))"
  fi
elif printf '%s' "$trust" | "$PYTHON" -c '
import json, sys
def listed(value):
    return value if isinstance(value, list) else [value]
trusted = False
for statement in listed(json.load(sys.stdin).get("Statement", [])):
    principal = statement.get("Principal", {})
    services = ["*"] if principal == "*" else listed(principal.get("Service", []))
    actions = listed(statement.get("Action", []))
    trusted |= (statement.get("Effect") == "Allow" and bool({"sts:AssumeRole", "sts:*", "*"} & set(actions))
                and bool({"sagemaker.amazonaws.com", "*"} & set(services)))
sys.exit(not trusted)
' 2>/dev/null; then
  ok "execution role ${role_arn} exists and trusts sagemaker.amazonaws.com"
else
  problem "execution role ${role_arn} does not trust sagemaker.amazonaws.com: add a statement allowing sts:AssumeRole to the service principal sagemaker.amazonaws.com to its trust policy"
fi

# The notebook's environment, with the SDK at the version the Makefile pins.
pinned=""
pin_shape='"sagemaker==([^"]+)"'
while IFS= read -r makefile_line; do
  if [[ "$makefile_line" =~ $pin_shape ]]; then
    pinned="${BASH_REMATCH[1]}"
    break
  fi
done <Makefile
if [[ ! -x "${LAUNCH_VENV}/bin/python" ]]; then
  problem "no ${LAUNCH_VENV} for the notebook: run 'make launch-env'"
elif ! installed="$("${LAUNCH_VENV}/bin/python" -c 'from importlib.metadata import version; print(version("sagemaker"))' 2>/dev/null)"; then
  problem "${LAUNCH_VENV} has no sagemaker SDK: run 'make launch-env'"
elif [[ -n "$pinned" && "$installed" != "$pinned" ]]; then
  problem "${LAUNCH_VENV} has sagemaker ${installed}, the notebook needs ${pinned}: run 'make launch-env'"
else
  ok "${LAUNCH_VENV} has sagemaker ${installed}"
fi

summary="${oks} ok, $(plural "$warnings" warning), $(plural "$problems" problem)"
if [[ "$problems" -gt 0 ]]; then
  printf '%s: fix what blocks and run make doctor again.\n' "$summary"
  exit 1
fi
printf '%s: nothing blocks.\n' "$summary"
