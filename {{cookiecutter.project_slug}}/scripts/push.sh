#!/usr/bin/env bash
# Push the image built by build.sh to Amazon ECR: find the account and region, create the
# repository if it is missing, log Docker in, then push the revision tag (or IMAGE_TAG), EXTRA_TAGS
# and latest. The last line on stdout is the image URI of the first.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/common.sh
source scripts/common.sh

# Every input is checked before Docker or AWS is called.
check_image_name
collect_tags
require aws "Install the AWS CLI v2 and try again."
region="$(aws_region)"
check_region "$region"
require_docker
tag="${TAGS[0]}"
docker image inspect "${IMAGE_NAME}:${tag}" >/dev/null 2>&1 \
  || die "No local image ${IMAGE_NAME}:${tag}: run scripts/build.sh first."

stages 4
stage "Looking up the AWS account (region ${region})"
account="$(aws_account "$region")"
registry="$(registry_host "$account" "$region")"

stage "Making sure ECR repository ${IMAGE_NAME} exists"
ensure_repository "$region"

stage "Logging Docker in to ${registry}"
aws ecr get-login-password --region "$region" \
  | docker login --username AWS --password-stdin "$registry" >/dev/null \
  || die "Docker login to ${registry} failed."

# latest last, so it moves only once every other tag is pushed.
stage "Pushing ${TAGS[*]} to ${registry}/${IMAGE_NAME}"
for pushed_tag in "${TAGS[@]}"; do
  log "Pushing ${registry}/${IMAGE_NAME}:${pushed_tag}"
  docker tag "${IMAGE_NAME}:${tag}" "${registry}/${IMAGE_NAME}:${pushed_tag}"
  docker push "${registry}/${IMAGE_NAME}:${pushed_tag}" || die "docker push of ${pushed_tag} failed."
done

log "Pushed in $(elapsed). Image URI for SageMaker:"
printf '%s/%s:%s\n' "$registry" "$IMAGE_NAME" "$tag"
