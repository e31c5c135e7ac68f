#!/usr/bin/env bash
# Runs every check CI runs, cheapest first. Installs what it needs (apt, pip) when run as root.
# Usage: scripts/test.sh [--quick]   (--quick skips the aarch64, firmware and QEMU stages)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
quick=0
[[ "${1:-}" == "--quick" ]] && quick=1

step() { printf '\n==> %s\n' "$*"; }

step "installing system packages (if missing)"
scripts/setup.sh

export EMBER_SHARED_DIR="${EMBER_SHARED_DIR:-$root/../shared}"
[[ -d "$EMBER_SHARED_DIR/models" ]] || { echo "error: shared models not found at $EMBER_SHARED_DIR (set EMBER_SHARED_DIR)"; exit 1; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo doc (libraries; warnings are errors)"
# ember-cli is a binary whose doc comments are clap help texts (`<board>` placeholders are not HTML).
RUSTDOCFLAGS="-D warnings" cargo doc -q --workspace --exclude ember-cli --no-deps

step "cargo test (host workspace)"
cargo test --workspace 2>&1 | tee /tmp/ember-cargo-test.log
grep -q "test result:" /tmp/ember-cargo-test.log

if [[ -f scripts/goldens/generate.py ]]; then
  step "golden vectors: regenerate with the TFLite reference interpreter and compare"
  python3 scripts/goldens/generate.py --check
fi

if [[ $quick -eq 0 ]]; then
  if [[ -x scripts/firmware/build.sh ]]; then
    step "no_std builds and board firmware"
    scripts/firmware/build.sh --all
  fi
  step "aarch64 (Raspberry Pi) NEON kernels: runtime tests under qemu-aarch64"
  scripts/bench/aarch64-test.sh
  if [[ -x scripts/firmware/test-qemu.sh ]]; then
    step "firmware on the emulated Cortex-M4 (QEMU)"
    scripts/firmware/test-qemu.sh
  fi
fi

step "all checks passed"
