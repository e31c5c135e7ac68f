#!/usr/bin/env bash
# Installs the system and Python packages ember's tests and demo need. Idempotent; quiet when
# everything is present. Needs root (or sudo) only when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(gcc-arm-none-eabi qemu-system-arm espeak-ng flite sox libudev-dev pkg-config flatbuffers-compiler xxd
  gcc-aarch64-linux-gnu qemu-user)
# The Debian Rust toolchain with std sources builds Cortex-M (and aarch64 std) when rustup lacks
# those targets.
installed_targets=$(rustup target list --installed 2>/dev/null || true)
if ! grep -q thumbv7em-none-eabihf <<<"$installed_targets" || ! grep -q aarch64-unknown-linux-gnu <<<"$installed_targets"; then
  apt_packages+=(rustc-web rust-web-src cargo-web)
fi
missing=()
for p in "${apt_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=""
  [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  echo "installing: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [[ -f scripts/goldens/requirements.txt ]]; then
  if ! python3 -c "import ai_edge_litert, numpy, flatbuffers" 2>/dev/null; then
    echo "installing Python packages from scripts/goldens/requirements.txt"
    python3 -m pip install -q -r scripts/goldens/requirements.txt
  fi
fi
