#!/usr/bin/env bash
# Installs what cmicro needs to build and test on Debian (12 or later), when it is missing.
# Run as root, or as a user with sudo. Safe to run again: it installs only what is missing.
set -euo pipefail

pkgs=(
  build-essential clang meson ninja-build pkg-config
  libuv1-dev libprotobuf-c-dev protobuf-c-compiler libprotoc-dev protobuf-compiler
  libcurl4-openssl-dev libcjson-dev zlib1g-dev libhttp-parser-dev uuid-dev libldns-dev
  iproute2 python3 cmake g++
  libclang-rt-dev valgrind libc6-dbg
  etcd-server etcd-client
)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
