#!/usr/bin/env bash
# Build the image the way SageMaker needs it: linux/amd64, a plain image manifest (no
# provenance attestation index, which SageMaker rejects), tagged with the git revision and latest.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/common.sh
source scripts/common.sh

require_docker
require_buildx
tag="$(image_tag)"

log "Building ${IMAGE_NAME}:${tag} for linux/amd64"
docker buildx build \
  --platform linux/amd64 \
  --provenance=false \
  --load \
  --tag "${IMAGE_NAME}:${tag}" \
  --tag "${IMAGE_NAME}:latest" \
  . || die "docker build failed (see the output above)."

log "Built ${IMAGE_NAME}:${tag} and ${IMAGE_NAME}:latest"
