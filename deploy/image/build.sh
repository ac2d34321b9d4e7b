#!/usr/bin/env bash
# Builds drover's container image from a drover binary built on this machine, with no
# registry: the base is the project's own Debian image (deploy/images/build.sh makes it), and
# the binary is copied in. Usage: deploy/image/build.sh [BINARY] [TAG]
#   BINARY defaults to target/release/drover (built if missing), TAG to drover:local.
set -euo pipefail
cd "$(dirname "$0")/../.."

binary=${1:-target/release/drover}
tag=${2:-drover:local}
if [[ ! -x "$binary" && "$binary" == target/release/drover ]]; then
    cargo build --release --locked -p drover
fi
[[ -x "$binary" ]] || { echo "no drover binary at $binary" >&2; exit 1; }
docker image inspect drover/python:3 >/dev/null 2>&1 || bash deploy/images/build.sh

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$binary" "$context/drover"
cat >"$context/Dockerfile" <<'DOCKERFILE'
FROM drover/python:3
COPY drover /usr/local/bin/drover
ENTRYPOINT ["/usr/local/bin/drover"]
DOCKERFILE
DOCKER_BUILDKIT=0 docker build --quiet --tag "$tag" "$context" >/dev/null
echo "[image] $tag built from $binary"
