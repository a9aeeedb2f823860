#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian/Ubuntu machine, only when missing.
# Usage: scripts/ensure-deps.sh [demo|test|bench]
set -euo pipefail
purpose=${1:-test}

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have docker-registry || need+=(docker-registry)
have curl || need+=(curl)
have python3 || need+=(python3)
if [ "$purpose" != demo ]; then
  have skopeo || need+=(skopeo)
  have openssl || need+=(openssl)
  [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
  have file || need+=(file)
  have ip || need+=(iproute2)
  # The body-cap tests put a real nginx in front of the registry.
  [ -x /usr/sbin/nginx ] || have nginx || need+=(nginx-light)
fi
if [ "$purpose" = bench ]; then
  have ip || need+=(iproute2)
  have tc || need+=(iproute2)
  [ -x /usr/bin/time ] || need+=(time)
  have gzip || need+=(gzip)
  have strip || need+=(binutils)
fi

if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Debian's package starts nothing here, but on a systemd machine it would hold port 5000;
# the project's registries use ephemeral ports, so that does no harm.
command -v docker-registry >/dev/null || { echo "docker-registry is still missing" >&2; exit 1; }
if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install the Rust toolchain (https://rustup.rs)" >&2
  exit 1
fi
