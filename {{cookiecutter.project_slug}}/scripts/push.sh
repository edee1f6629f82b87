#!/usr/bin/env bash
# Push the image built by build.sh to Amazon ECR: find the account and region, create the
# repository if it is missing, log Docker in, then push the revision tag and latest.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/common.sh
source scripts/common.sh

require aws "Install the AWS CLI v2 and try again."
require_docker

tag="$(image_tag)"
docker image inspect "${IMAGE_NAME}:${tag}" >/dev/null 2>&1 \
  || die "No local image ${IMAGE_NAME}:${tag}: run scripts/build.sh first."

region="$(aws_region)"
check_region "$region"
log "Looking up the AWS account (region ${region})"
account="$(aws_account)"
registry="$(registry_host "$account" "$region")"

log "Making sure ECR repository ${IMAGE_NAME} exists"
if ! lookup="$(aws ecr describe-repositories --repository-names "$IMAGE_NAME" --region "$region" 2>&1)"; then
  if [[ "$lookup" != *RepositoryNotFoundException* ]]; then
    die "Cannot look up ECR repository ${IMAGE_NAME}: ${lookup}"
  fi
  log "Creating ECR repository ${IMAGE_NAME}"
  aws ecr create-repository \
    --repository-name "$IMAGE_NAME" \
    --region "$region" \
    --image-scanning-configuration scanOnPush=true >/dev/null \
    || die "Cannot create ECR repository ${IMAGE_NAME} (does the caller have ecr:CreateRepository?)."
fi

log "Logging Docker in to ${registry}"
aws ecr get-login-password --region "$region" \
  | docker login --username AWS --password-stdin "$registry" >/dev/null \
  || die "Docker login to ${registry} failed."

for pushed_tag in "$tag" latest; do
  log "Pushing ${registry}/${IMAGE_NAME}:${pushed_tag}"
  docker tag "${IMAGE_NAME}:${tag}" "${registry}/${IMAGE_NAME}:${pushed_tag}"
  docker push "${registry}/${IMAGE_NAME}:${pushed_tag}" || die "docker push of ${pushed_tag} failed."
done

log "Pushed. Image URI for SageMaker:"
printf '%s/%s:%s\n' "$registry" "$IMAGE_NAME" "$tag"
