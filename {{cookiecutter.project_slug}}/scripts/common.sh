# Settings and helpers shared by the scripts here. Sourced, not run.
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

# Numbered stages with the time since the script started (bash's SECONDS), on stderr:
#   stages 3; stage "Building"  ->  ==> [1/3] Building (0:00)
stages() {
  STAGE_COUNT="$1"
  STAGE_NUMBER=0
}

stage() {
  STAGE_NUMBER=$((STAGE_NUMBER + 1))
  printf '==> [%d/%d] %s (%s)\n' "$STAGE_NUMBER" "$STAGE_COUNT" "$*" "$(elapsed)" >&2
}

# m:ss, or h:mm:ss past an hour.
elapsed() {
  local seconds="$SECONDS"
  if ((seconds >= 3600)); then
    printf '%d:%02d:%02d\n' $((seconds / 3600)) $((seconds % 3600 / 60)) $((seconds % 60))
  else
    printf '%d:%02d\n' $((seconds / 60)) $((seconds % 60))
  fi
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

# Docker's rule for a tag (TAG_NAME, also part of IMAGE_URI_SHAPE below); ECR's for a repository name
# (ECR_REPOSITORY_SHAPE, below, 2 to 256 characters).
TAG_NAME='[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}'
DOCKER_TAG_SHAPE="^${TAG_NAME}\$"

check_tag() {
  local source="$1" tag="$2"
  [[ "$tag" =~ $DOCKER_TAG_SHAPE ]] \
    || die "${source} holds '${tag}', which is not a valid Docker tag: up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'."
}

check_image_name() {
  local shape="^${ECR_REPOSITORY_SHAPE}\$" length='^.{2,256}$'
  [[ "$IMAGE_NAME" =~ $shape && "$IMAGE_NAME" =~ $length ]] \
    || die "IMAGE_NAME '${IMAGE_NAME}' is not a valid ECR repository name: 2 to 256 lower-case letters, digits and '._-/', each part starting and ending with a letter or digit."
}

# Every tag of the image, in the array TAGS: the primary one (image_tag), then EXTRA_TAGS (optional,
# space-separated), then latest, each once. Run it in the script's own shell, so a refusal stops the script.
collect_tags() {
  local primary candidate known extra
  primary="$(image_tag)"
  check_tag IMAGE_TAG "$primary"
  TAGS=("$primary")
  # read -a splits without expanding globs; -d '' reads past newlines.
  read -r -d '' -a extra <<<"${EXTRA_TAGS:-}" || true
  for candidate in ${extra[@]+"${extra[@]}"} latest; do
    check_tag EXTRA_TAGS "$candidate"
    for known in "${TAGS[@]}"; do
      [[ "$known" != "$candidate" ]] || continue 2
    done
    TAGS+=("$candidate")
  done
}

# Region: AWS_REGION, then AWS_DEFAULT_REGION, then the AWS CLI's configuration, then the project default.
aws_region() {
  local region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
  if [[ -z "$region" ]]; then
    region="$(aws configure get region 2>/dev/null || true)"
  fi
  printf '%s\n' "${region:-$DEFAULT_REGION}"
}

# Checks of the values the scripts hand to AWS, run before any AWS call so a typo is named here instead
# of surfacing as an AWS error halfway through. Patterns sit in variables: bash 3.2 and later read an
# unquoted variable after =~ as a regular expression.
REGION_NAME='[a-z]{2}(-gov)?-[a-z]+-[0-9]+'
REGION_SHAPE="^${REGION_NAME}\$"
ROLE_ARN_SHAPE='^arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:role/([A-Za-z0-9+=,.@_-]+/)*[A-Za-z0-9+=,.@_-]{1,64}$'
ECR_REPOSITORY_SHAPE='([a-z0-9]+([._-][a-z0-9]+)*/)*[a-z0-9]+([._-][a-z0-9]+)*'
IMAGE_URI_SHAPE="^[0-9]{12}\\.dkr\\.ecr\\.(${REGION_NAME})\\.amazonaws\\.com(\\.cn)?/${ECR_REPOSITORY_SHAPE}(:${TAG_NAME}|@sha256:[0-9a-f]{64})?\$"

check_region() {
  local region="$1"
  [[ "$region" =~ $REGION_SHAPE ]] \
    || die "Unknown AWS region '${region}': expected a region name such as us-east-1, eu-west-2, cn-north-1 or us-gov-west-1 (set AWS_REGION)."
{%- if cookiecutter.base_image == "extend-prebuilt" %}
  # The image builds on AWS's prebuilt one, which AWS publishes in some regions only.
  require python3 "It reads prebuilt-images.json."
  python3 -c 'import json, sys; sys.exit(sys.argv[1] not in json.load(open("prebuilt-images.json"))["training_accounts"])' \
    "$region" || die "AWS publishes no prebuilt training image in region ${region} (see prebuilt-images.json): choose a region listed there."
{%- endif %}
}

check_role_arn() {
  local arn="$1"
  [[ "$arn" =~ $ROLE_ARN_SHAPE ]] \
    || die "Malformed IAM role ARN '${arn}': expected arn:aws:iam::<12-digit account>:role/<name> (arn:aws-cn or arn:aws-us-gov in those partitions)."
}

check_image_uri() {
  local uri="$1"
  # A China region's registry ends in .com.cn, every other region's in .com.
  if [[ "$uri" =~ $IMAGE_URI_SHAPE ]]; then
    local china=no suffix=no
    [[ "${BASH_REMATCH[1]}" != cn-* ]] || china=yes
    [[ -z "${BASH_REMATCH[3]}" ]] || suffix=yes
    [[ "$china" != "$suffix" ]] || return 0
  fi
  die "Malformed ECR image URI '${uri}': expected <12-digit account>.dkr.ecr.<region>.amazonaws.com/<repository>[:<tag> or @sha256:<digest>] (amazonaws.com.cn in China regions)."
}

# require_variable NAME [HINT]: NAME must be set and not empty.
require_variable() {
  local name="$1" hint="${2:-}"
  [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "'${name}' is not a variable name."
  [[ -n "${!name:-}" ]] || die "${name} is not set${hint:+: ${hint}}."
}

# The account of the caller's credentials. STS is asked in the region the scripts use: the AWS CLI v2 calls
# STS's regional endpoints and refuses to guess one when none is configured.
aws_account() {
  local region="$1" account
  account="$(aws sts get-caller-identity --region "$region" --query Account --output text)" \
    || die "AWS credentials are missing or expired: run 'aws configure' or 'aws sso login' and try again."
  printf '%s\n' "$account"
}

{%- if cookiecutter.base_image == "extend-prebuilt" %}

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
{%- endif %}

{%- if cookiecutter.base_image == "from-scratch" %}

# The image installs requirements.txt: a lock that no longer matches pyproject.toml stops a build before it
# starts, not minutes later in pip (locally or in CodeBuild).
check_lock() {
  python3 scripts/check_lock.py || die "requirements.txt is out of date: run 'make lock', then build again."
}
{%- endif %}
{%- if cookiecutter.base_image == "from-scratch" and cookiecutter.framework == "pytorch" and cookiecutter.processor == "cpu" %}

require_cpu_wheel_index() {
  [[ -n "${PIP_EXTRA_INDEX_URL:-}" ]] \
    || die "requirements.txt locks torch's CPU build, which only PyTorch's CPU wheel index has: export PIP_EXTRA_INDEX_URL=<that index> and build again."
}
{%- endif %}

registry_host() {
  local account="$1" region="$2" domain="amazonaws.com"
  if [[ "$region" == cn-* ]]; then
    domain="amazonaws.com.cn"
  fi
  printf '%s.dkr.ecr.%s.%s\n' "$account" "$region" "$domain"
}

# Create ECR repository IMAGE_NAME in a region unless it exists, with scanning on push.
ensure_repository() {
  local region="$1" lookup
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
}
