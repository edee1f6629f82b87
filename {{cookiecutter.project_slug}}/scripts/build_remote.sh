#!/usr/bin/env bash
# Build and push the image in AWS CodeBuild, for machines without a usable Docker (SageMaker Studio,
# Apple Silicon laptops, locked-down corporate machines): pack the build context, upload it to S3, run
# buildspec.yml in a CodeBuild project (created if missing), follow the build, print the image URI.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/common.sh
source scripts/common.sh

# Override any of these from the environment. The image and compute type apply when the project is created.
CODEBUILD_PROJECT="${CODEBUILD_PROJECT:-{{ cookiecutter.project_slug }}-image-build}"
CODEBUILD_ROLE_ARN="${CODEBUILD_ROLE_ARN:-}"
CODEBUILD_IMAGE="${CODEBUILD_IMAGE:-aws/codebuild/standard:7.0}"
CODEBUILD_COMPUTE_TYPE="${CODEBUILD_COMPUTE_TYPE:-BUILD_GENERAL1_MEDIUM}"
BUILD_BUCKET="${BUILD_BUCKET:-}" # default: SageMaker's bucket, sagemaker-<region>-<account>
POLL_SECONDS="${POLL_SECONDS:-10}"
SOURCE_PREFIX="codebuild/{{ cookiecutter.project_slug }}"

CODEBUILD_PROJECT_SHAPE='^[A-Za-z0-9][A-Za-z0-9_-]{1,254}$'
COMPUTE_TYPE_SHAPE='^BUILD_GENERAL1_(SMALL|MEDIUM|LARGE|XLARGE|2XLARGE)$'
BUCKET_SHAPE='^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$'

# A JSON string, for the build's environment variables (values here hold no control characters).
json_string() {
  local value="${1//\\/\\\\}"
  printf '"%s"' "${value//\"/\\\"}"
}

environment_variable() {
  printf '{"name":%s,"value":%s,"type":"PLAINTEXT"}' "$(json_string "$1")" "$(json_string "$2")"
}

# The build's state from `batch-get-builds`, one field a line: status, current phase, log link, and for a
# failed build the phase that failed and why.
build_state() {
  python3 -c '
import json, sys
builds = json.load(sys.stdin).get("builds") or []
if not builds:
    sys.exit("no such build")
build = builds[0]
failed = next((p for p in build.get("phases", []) if p.get("phaseStatus") not in (None, "SUCCEEDED")), {})
reason = "; ".join(
    ": ".join(part for part in (context.get("statusCode"), context.get("message")) if part)
    for context in failed.get("contexts", [])
)
fields = (build["buildStatus"], build.get("currentPhase"), (build.get("logs") or {}).get("deepLink"),
          failed.get("phaseType"), reason)
for field in fields:
    print(" ".join(str(field or "").split()))
print(".")  # command substitution drops trailing newlines, and with them empty last fields: this keeps them
'
}

# Every input is checked before the first AWS call.
require aws "Install the AWS CLI v2 and try again."
require python3 "It packs the build context and reads the build's state."
check_image_name
collect_tags
region="$(aws_region)"
check_region "$region"
[[ "$CODEBUILD_PROJECT" =~ $CODEBUILD_PROJECT_SHAPE ]] \
  || die "CODEBUILD_PROJECT '${CODEBUILD_PROJECT}' is not a valid CodeBuild project name: 2 to 255 letters, digits, '-' and '_', starting with a letter or digit."
[[ -z "$CODEBUILD_ROLE_ARN" ]] || check_role_arn "$CODEBUILD_ROLE_ARN"
[[ "$CODEBUILD_COMPUTE_TYPE" =~ $COMPUTE_TYPE_SHAPE ]] \
  || die "CODEBUILD_COMPUTE_TYPE '${CODEBUILD_COMPUTE_TYPE}' is not a CodeBuild compute type: BUILD_GENERAL1_SMALL, _MEDIUM, _LARGE, _XLARGE or _2XLARGE."
[[ -z "$BUILD_BUCKET" || "$BUILD_BUCKET" =~ $BUCKET_SHAPE ]] \
  || die "BUILD_BUCKET '${BUILD_BUCKET}' is not an S3 bucket name: 3 to 63 lower-case letters, digits, '.' and '-'."
[[ "$POLL_SECONDS" =~ ^[0-9]+$ ]] || die "POLL_SECONDS '${POLL_SECONDS}' is not a whole number of seconds."
{%- if cookiecutter.base_image == "from-scratch" %}
check_lock
{%- endif %}
{%- if cookiecutter.base_image == "from-scratch" and cookiecutter.framework == "pytorch" and cookiecutter.processor == "cpu" %}
require_cpu_wheel_index
{%- endif %}
{%- if cookiecutter.base_image == "extend-prebuilt" %}
base_image="$(prebuilt_image training "$region")"
{%- endif %}

stages 5
stage "Looking up the AWS account (region ${region})"
account="$(aws_account "$region")"
repository="$(registry_host "$account" "$region")/${IMAGE_NAME}"
case "$region" in
  cn-*) partition=aws-cn ;;
  us-gov-*) partition=aws-us-gov ;;
  *) partition=aws ;;
esac
bucket="${BUILD_BUCKET:-sagemaker-${region}-${account}}"
key="${SOURCE_PREFIX}/${TAGS[0]}.zip"

stage "Making sure ECR repository ${IMAGE_NAME} exists"
ensure_repository "$region"

# Before the upload, so a missing role stops the script with nothing left behind.
stage "Making sure CodeBuild project ${CODEBUILD_PROJECT} exists"
found="$(aws codebuild batch-get-projects --names "$CODEBUILD_PROJECT" --region "$region" \
  --query 'projects[0].name' --output text)" \
  || die "Cannot look up CodeBuild project ${CODEBUILD_PROJECT} (does the caller have codebuild:BatchGetProjects?)."
if [[ "$found" != "$CODEBUILD_PROJECT" ]]; then
  if [[ -z "$CODEBUILD_ROLE_ARN" ]]; then
    role="${CODEBUILD_PROJECT}"
    trust='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"codebuild.amazonaws.com"},"Action":"sts:AssumeRole"}]}'
    printf '%s\n' \
      "ERROR: CodeBuild project ${CODEBUILD_PROJECT} does not exist, and creating it needs a service role: set CODEBUILD_ROLE_ARN" \
      "to a role that codebuild.amazonaws.com may assume, with the permissions in codebuild-policy.json. To make one:" \
      "  aws iam create-role --role-name ${role} --assume-role-policy-document '${trust}'" \
      "  aws iam put-role-policy --role-name ${role} --policy-name ${role} --policy-document file://codebuild-policy.json" \
      "  CODEBUILD_ROLE_ARN=arn:${partition}:iam::${account}:role/${role} make build-remote" >&2
    exit 1
  fi
  log "Creating CodeBuild project ${CODEBUILD_PROJECT} (${CODEBUILD_IMAGE}, ${CODEBUILD_COMPUTE_TYPE}, privileged for Docker)"
  aws codebuild create-project \
    --name "$CODEBUILD_PROJECT" \
    --region "$region" \
    --description "Builds and pushes the {{ cookiecutter.project_slug }} image (scripts/build_remote.sh)" \
    --source "type=S3,location=${bucket}/${key}" \
    --artifacts type=NO_ARTIFACTS \
    --environment "type=LINUX_CONTAINER,image=${CODEBUILD_IMAGE},computeType=${CODEBUILD_COMPUTE_TYPE},privilegedMode=true" \
    --service-role "$CODEBUILD_ROLE_ARN" >/dev/null \
    || die "Cannot create CodeBuild project ${CODEBUILD_PROJECT} (see the error above; does the caller have codebuild:CreateProject and iam:PassRole on ${CODEBUILD_ROLE_ARN}?)."
fi

stage "Uploading the build context to s3://${bucket}/${key}"
if [[ -z "$BUILD_BUCKET" ]]; then
  # SageMaker's default bucket, which its SDK makes on first use: made here if it is missing.
  if ! lookup="$(aws s3api head-bucket --bucket "$bucket" --region "$region" 2>&1)"; then
    [[ "$lookup" == *404* || "$lookup" == *"Not Found"* ]] \
      || die "Cannot use bucket ${bucket}: ${lookup} (set BUILD_BUCKET to a bucket of yours in ${region})."
    log "Creating bucket ${bucket}"
    location=()
    # us-east-1 takes no location constraint; every other region needs its own.
    [[ "$region" == us-east-1 ]] || location=(--create-bucket-configuration "LocationConstraint=${region}")
    aws s3api create-bucket --bucket "$bucket" --region "$region" ${location[@]+"${location[@]}"} >/dev/null \
      || die "Cannot create bucket ${bucket} (set BUILD_BUCKET to a bucket of yours in ${region})."
  fi
fi
python3 scripts/pack_context.py . \
  | aws s3 cp - "s3://${bucket}/${key}" --region "$region" --only-show-errors \
  || die "Cannot upload the build context to s3://${bucket}/${key} (see the error above)."

stage "Building in CodeBuild project ${CODEBUILD_PROJECT}"
variables="[$(environment_variable IMAGE_REPOSITORY "$repository"),$(environment_variable IMAGE_TAGS "${TAGS[*]}")"
{%- if cookiecutter.base_image == "extend-prebuilt" %}
variables+=",$(environment_variable BASE_IMAGE "$base_image")"
{%- endif %}
# Never printed here, but the build's environment records it: give it no credentials.
if [[ -n "${PIP_EXTRA_INDEX_URL:-}" ]]; then
  variables+=",$(environment_variable PIP_EXTRA_INDEX_URL "$PIP_EXTRA_INDEX_URL")"
fi
variables+="]"
# The overrides make any existing project run this build: this source, buildspec and Docker access.
build_id="$(aws codebuild start-build \
  --project-name "$CODEBUILD_PROJECT" \
  --region "$region" \
  --source-type-override S3 \
  --source-location-override "${bucket}/${key}" \
  --buildspec-override buildspec.yml \
  --privileged-mode-override \
  --environment-variables-override "$variables" \
  --query build.id --output text)" \
  || die "Cannot start a build of CodeBuild project ${CODEBUILD_PROJECT} (see the error above)."
log "Started build ${build_id}"
trap 'die "Stopped following build ${build_id}, which goes on: aws codebuild stop-build --id ${build_id} --region ${region} stops it."' INT

shown_phase="" shown_link=""
while :; do
  state="$(aws codebuild batch-get-builds --ids "$build_id" --region "$region" --output json)" \
    || die "Cannot read the state of build ${build_id} (see the error above)."
  fields="$(build_state <<<"$state")" || die "Cannot read the state of build ${build_id} from: ${state}"
  {
    read -r status
    read -r phase
    read -r link
    read -r failed_phase
    read -r reason
  } <<<"$fields"
  if [[ -n "$link" && "$link" != "$shown_link" ]]; then
    log "Logs: ${link}"
    shown_link="$link"
  fi
  if [[ "$status" != IN_PROGRESS ]]; then
    break
  fi
  if [[ "$phase" != "$shown_phase" ]]; then
    log "  ${phase} ($(elapsed))"
    shown_phase="$phase"
  fi
  sleep "$POLL_SECONDS"
done

[[ "$status" == SUCCEEDED ]] \
  || die "Build ${build_id} ended ${status}${failed_phase:+ in phase ${failed_phase}}${reason:+: ${reason}}." \
    "Logs: ${link:-none yet; see the build in the CodeBuild console}"
log "Built and pushed ${repository}, tagged ${TAGS[*]}, in $(elapsed). Image URI for SageMaker:"
printf '%s:%s\n' "$repository" "${TAGS[0]}"
