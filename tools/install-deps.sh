#!/usr/bin/env bash
# Install kvant's Debian build dependencies when any is missing (Debian 12).
# Used by the README's commands and by .ci/run; a no-op when all are present.
set -euo pipefail
PKGS="build-essential pkg-config libpcre2-dev libutf8proc-dev libcjson-dev"
missing=""
for p in $PKGS; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq $missing >/dev/null
