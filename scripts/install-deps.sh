#!/usr/bin/env bash
# install-deps.sh -- install ddpm's Debian 12 build and data dependencies (idempotent).
# Runs apt-get only when something is missing; needs root (or sudo) in that case.
set -euo pipefail
pkgs=(gcc make libdnnl-dev libcjson-dev libpng-dev zlib1g-dev dataset-fashion-mnist)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
