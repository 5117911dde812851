#!/usr/bin/env bash
# Builds the raftkv image from kvd and kvctl already built on this machine (scripts/build.sh's
# build/bin), instead of compiling them again inside Docker as deploy/Dockerfile does: takes
# seconds instead of minutes. The image is the same as deploy/Dockerfile's except that the
# shared libraries the binaries load (and the base image lacks) are copied from this machine
# into /usr/local/lib rather than installed as Debian packages.
#
# Usage: deploy/image-from-bin.sh [BIN_DIR [IMAGE [docker build args...]]]
#   BIN_DIR  holds kvd and kvctl (default: the repository's build/bin); they are stripped
#   IMAGE    tag of the image (default raftkv:latest)
#   RAFTKV_BASE_IMAGE  base image (default raftkv-debian:bookworm, made by make-base-image.sh
#                      when missing)
#
# The binaries must be built on Debian 12, the base image's release (checked here); elsewhere
# build from source: docker build -f deploy/Dockerfile -t raftkv:latest .
set -euo pipefail
bin=${1:-$(dirname "$0")/../build/bin}     # (a relative BIN_DIR: from the current directory)
bin=$(cd "$bin" 2>/dev/null && pwd) || { echo "image-from-bin: no directory ${1:-build/bin}" >&2; exit 2; }
cd "$(dirname "$0")/.."
image=${2:-raftkv:latest}
shift $(( $# < 2 ? $# : 2 ))
base=${RAFTKV_BASE_IMAGE:-raftkv-debian:bookworm}
say() { echo "image-from-bin: $*"; }

for b in kvd kvctl; do
  [ -x "$bin/$b" ] || { say "no $bin/$b (build it: scripts/build.sh)" >&2; exit 2; }
done
release=$(. /etc/os-release 2>/dev/null && echo "${ID:-}-${VERSION_CODENAME:-}")
if [ "$release" != "debian-bookworm" ]; then
  say "this machine is $release, the image is Debian 12 (bookworm): its binaries may not run" \
      "there; build from source instead: docker build -f deploy/Dockerfile -t $image ." >&2
  exit 2
fi

ctx=$(mktemp -d "${TMPDIR:-/tmp}/raftkv-image.XXXXXX")
child=""
# On any exit (also INT/TERM): the build is cancelled and the context removed.
trap '[ -z "$child" ] || kill -TERM "$child" 2>/dev/null || true; rm -rf "$ctx"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$ctx/bin" "$ctx/lib"
for b in kvd kvctl; do strip --strip-unneeded -o "$ctx/bin/$b" "$bin/$b"; done
if ldd "$ctx/bin/kvd" "$ctx/bin/kvctl" | grep 'not found' >&2; then
  say "a shared library of $bin/kvd or $bin/kvctl is missing here" >&2; exit 1
fi
cp deploy/Dockerfile.prebuilt "$ctx/Dockerfile"
cp deploy/docker-entrypoint.sh deploy/healthcheck.sh "$ctx/"

bash deploy/make-base-image.sh "$base"
# Every shared library the dynamic loader resolves for them (the loader itself and the vDSO
# have no "=>"), except those the base image has (its loader cache names them): its libc,
# libstdc++, zlib ... stay its own.
in_base=$(docker run --rm --network none --entrypoint ldconfig "$base" -p | awk 'NR > 1 {print $1}')
ldd "$ctx/bin/kvd" "$ctx/bin/kvctl" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u |
  while read -r soname path; do
    printf '%s\n' "$in_base" | grep -qxF "$soname" || cp -L "$path" "$ctx/lib/$soname"
  done
names=$(ls "$ctx/lib" | grep -v '^libabsl_' | sed 's/\.so.*//' | tr '\n' ' ')
say "libraries the base image lacks, copied from this machine ($(du -sm "$ctx/lib" | cut -f1) MB):" \
    "${names}and $(ls "$ctx/lib" | grep -c '^libabsl_' || true) of abseil"
say "building $image from $bin ($(du -sm "$ctx" | cut -f1) MB context)"
docker build --build-arg "BASE_IMAGE=$base" -t "$image" "$@" "$ctx" &
child=$!
wait "$child"
child=""
