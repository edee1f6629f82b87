#!/usr/bin/env bash
# Build the image the way SageMaker needs it: linux/amd64, a plain image manifest (no
# provenance attestation index, which SageMaker rejects), tagged with the git revision (or IMAGE_TAG),
# EXTRA_TAGS and latest.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/common.sh
source scripts/common.sh

# Every input is checked before Docker or AWS is called.
check_image_name
collect_tags
{%- if cookiecutter.base_image == "from-scratch" %}
require python3 "Install Python 3.11 or later and try again."
{%- endif %}
{%- if cookiecutter.base_image == "from-scratch" and cookiecutter.framework == "pytorch" and cookiecutter.processor == "cpu" %}
require_cpu_wheel_index
{%- endif %}
{%- if cookiecutter.base_image == "extend-prebuilt" %}
require aws "Install the AWS CLI v2 and try again."
region="$(aws_region)"
check_region "$region"
base_image="$(prebuilt_image training "$region")"
registry="${base_image%%/*}"
{%- endif %}

build_args=()
# Handed to pip inside the build when set (PyTorch's CPU wheel index); never printed here, but recorded
# in the image's history like every build argument, so it must carry no credentials.
if [[ -n "${PIP_EXTRA_INDEX_URL:-}" ]]; then
  build_args+=(--build-arg PIP_EXTRA_INDEX_URL)
fi
{%- if cookiecutter.base_image == "extend-prebuilt" %}
build_args+=(--build-arg "BASE_IMAGE=${base_image}")
{%- endif %}
for tag in "${TAGS[@]}"; do
  build_args+=(--tag "${IMAGE_NAME}:${tag}")
done

stages 3
{%- if cookiecutter.base_image == "from-scratch" %}
stage "Checking requirements.txt against pyproject.toml"
check_lock
{%- endif %}
stage "Checking Docker and Buildx"
require_docker
require_buildx
{%- if cookiecutter.base_image == "extend-prebuilt" %}

# AWS's prebuilt base image sits in a registry of its own in each region, and pulling needs a login.
stage "Logging Docker in to ${registry} to pull ${base_image}"
aws ecr get-login-password --region "$region" \
  | docker login --username AWS --password-stdin "$registry" >/dev/null \
  || die "Docker login to ${registry} failed: are AWS credentials configured ('aws configure' or 'aws sso login')?"
{%- endif %}

stage "Building ${IMAGE_NAME}:${TAGS[0]} for linux/amd64"
docker buildx build \
  --platform linux/amd64 \
  --provenance=false \
  --load \
  "${build_args[@]}" \
  . || die "docker build failed (see the output above)."

log "Built ${IMAGE_NAME}, tagged ${TAGS[*]} ($(elapsed))"
