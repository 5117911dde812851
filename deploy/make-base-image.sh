#!/usr/bin/env bash
# Creates the local Debian 12 base image that deploy/Dockerfile builds FROM, without pulling
# anything from a registry: mmdebstrap builds a minimal bookworm root file system from this
# machine's own apt sources, and `docker import` turns it into an image.
# Skipped (quietly) when the image already exists.
#
# Usage: deploy/make-base-image.sh [IMAGE]        (default: raftkv-debian:bookworm)
#   RAFTKV_APT_SOURCES=FILE  apt sources to use (default: this machine's Debian sources)
#
# The image is trimmed like debian:bookworm-slim (no man pages, docs or translations), and
# the dpkg path excludes stay in it, so packages installed later are trimmed too.
set -euo pipefail
image=${1:-raftkv-debian:bookworm}

if docker image inspect "$image" >/dev/null 2>&1; then
  exit 0
fi
if ! command -v mmdebstrap >/dev/null 2>&1; then
  echo "make-base-image: installing mmdebstrap"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends mmdebstrap >/dev/null
fi

# This machine's Debian sources (deb822 or one-line); third-party lists are left out because
# their keys are not in the new root file system.
sources=${RAFTKV_APT_SOURCES:-}
if [ -z "$sources" ]; then
  for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
    if [ -s "$f" ] && grep -q '^[^#]' "$f"; then sources=$f; break; fi
  done
fi
[ -n "$sources" ] || { echo "make-base-image: no apt sources found (set RAFTKV_APT_SOURCES)" >&2; exit 2; }

# Carry over the apt settings this machine needs to reach its mirror (a snapshot mirror's
# old Release dates, a proxy).
aptopts=()
while IFS= read -r line; do
  aptopts+=("--aptopt=$line")
done < <(cat /etc/apt/apt.conf /etc/apt/apt.conf.d/* 2>/dev/null |
         grep -E '^[[:space:]]*Acquire::(Check-Valid-Until|Check-Date|https?::Proxy)' || true)

work=$(mktemp -d "${TMPDIR:-/tmp}/raftkv-base.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
echo "make-base-image: building $image from $sources (takes a minute or two)"
# The merged-usr hook sets up merged /usr itself, so the usrmerge package (and the perl it
# pulls in, ~50 MB) stays out.
mmdebstrap --quiet --variant=minbase --format=tar \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  "${aptopts[@]}" \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --aptopt='APT::Install-Recommends "false"' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*.log "$1"/var/log/apt/*' \
  bookworm "$work/rootfs.tar" "$sources" >"$work/log" 2>&1 ||
  { tail -n 40 "$work/log" >&2; echo "make-base-image: mmdebstrap failed" >&2; exit 1; }
docker import --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' \
  -m "Debian 12 minbase from mmdebstrap ($(basename "$sources"))" \
  "$work/rootfs.tar" "$image" >/dev/null
echo "make-base-image: $image created ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
