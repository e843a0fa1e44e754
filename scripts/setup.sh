#!/usr/bin/env bash
# Installs what cmicro needs to build and test on Debian (12 or later), when it is missing.
# Run as root, or as a user with sudo. Safe to run again: it installs only what is missing.
set -euo pipefail

pkgs=(
  build-essential clang meson ninja-build pkg-config
  libuv1-dev libprotobuf-c-dev protobuf-c-compiler libprotoc-dev protobuf-compiler
  libcurl4-openssl-dev libcjson-dev zlib1g-dev libhttp-parser-dev uuid-dev libldns-dev
  libssl-dev openssl
  iproute2 python3 python3-pip cmake g++ curl
  libclang-rt-dev valgrind libc6-dbg
  chromium
  libnats-dev nats-server
  etcd-server etcd-client
  wrk
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

# Python packages the tests use, pinned: prometheus-client's parser reads the /metrics text
# (test/core/metrics_parse.py, test/observe/metrics_scrape.py); opentelemetry-proto reads the
# exported spans (test/observe/otlp_export.py).
pypkgs=(prometheus-client==0.26.0 opentelemetry-proto==1.45.2)
for spec in "${pypkgs[@]}"; do
  name=${spec%%==*}
  have=$(python3 -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null || true)
  if [ "$have" != "${spec#*==}" ]; then
    echo "setup: pip installing $spec"
    # A Debian python3 refuses installs outside a venv unless told (PEP 668).
    python3 -m pip install -q "$spec" 2>/dev/null ||
      python3 -m pip install -q --break-system-packages "$spec"
  fi
done
