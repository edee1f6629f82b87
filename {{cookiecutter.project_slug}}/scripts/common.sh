# Settings and helpers shared by build.sh and push.sh. Sourced, not run.
# shellcheck shell=bash

# Override any of these from the environment, e.g. IMAGE_NAME=team/model scripts/build.sh
IMAGE_NAME="${IMAGE_NAME:-{{ cookiecutter.ecr_repository }}}"
DEFAULT_REGION="{{ cookiecutter.aws_region }}"

log() {
  printf '==> %s\n' "$*" >&2
}

die() {
  printf 'ERROR: %s\n' "$*" >&2
  exit 1
}

require() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' was not found on PATH. $2"
}

require_docker() {
  require docker "Install Docker (Docker Desktop or Docker Engine) and try again."
  docker info >/dev/null 2>&1 || die "Docker is installed but its engine does not answer: start Docker and try again."
}

require_buildx() {
  docker buildx version >/dev/null 2>&1 \
    || die "Docker Buildx is missing: install the docker-buildx plugin (Docker Desktop ships it) and try again."
}

# The image tag: the short git revision (with -dirty for uncommitted changes), or IMAGE_TAG.
image_tag() {
  if [[ -n "${IMAGE_TAG:-}" ]]; then
    printf '%s\n' "$IMAGE_TAG"
  elif git rev-parse --verify --quiet HEAD >/dev/null 2>&1; then
    local revision
    revision="$(git rev-parse --short HEAD)"
    if [[ -n "$(git status --porcelain 2>/dev/null)" ]]; then
      revision="${revision}-dirty"
    fi
    printf '%s\n' "$revision"
  else
    printf 'dev\n'
  fi
}

# Region: AWS_REGION, then AWS_DEFAULT_REGION, then the AWS CLI's configuration, then the project default.
aws_region() {
  local region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
  if [[ -z "$region" ]]; then
    region="$(aws configure get region 2>/dev/null || true)"
  fi
  printf '%s\n' "${region:-$DEFAULT_REGION}"
}

aws_account() {
  local account
  account="$(aws sts get-caller-identity --query Account --output text)" \
    || die "AWS credentials are missing or expired: run 'aws configure' or 'aws sso login' and try again."
  printf '%s\n' "$account"
}

# AWS's prebuilt image for a role (training or inference) in a region, as listed in prebuilt-images.json.
prebuilt_image() {
  local role="$1" region="$2" account image
  require python3 "It reads prebuilt-images.json."
  read -r account image < <(python3 -c '
import json, sys
table = json.load(open("prebuilt-images.json"))
print(table[sys.argv[1] + "_accounts"].get(sys.argv[2], "-"), table[sys.argv[1] + "_image"])
' "$role" "$region") || die "Cannot read prebuilt-images.json."
  [[ "$account" != "-" ]] || die "AWS publishes no prebuilt ${role} image in region ${region} (see prebuilt-images.json)."
  printf '%s/%s\n' "$(registry_host "$account" "$region")" "$image"
}

registry_host() {
  local account="$1" region="$2" domain="amazonaws.com"
  if [[ "$region" == cn-* ]]; then
    domain="amazonaws.com.cn"
  fi
  printf '%s.dkr.ecr.%s.%s\n' "$account" "$region" "$domain"
}
