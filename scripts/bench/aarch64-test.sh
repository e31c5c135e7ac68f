#!/usr/bin/env bash
# Cross-tests ember-runtime for aarch64 (the Raspberry Pi 4/5; NEON kernels included) under
# qemu-aarch64. CI runs it from scripts/test.sh.
#
# Needs gcc-aarch64-linux-gnu and qemu-user (scripts/setup.sh installs them). With the rustup
# target `aarch64-unknown-linux-gnu` installed it uses that; otherwise it builds std from source
# with Debian's rustc (/usr/bin/rustc, rust-web-src) and -Z build-std (several minutes).
# Usage: scripts/bench/aarch64-test.sh [extra cargo test args, e.g. a test name filter]
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/aarch64-cross"
# Unit and integration tests only: doctests are architecture-independent and run on the host.
test_args=(--target aarch64-unknown-linux-gnu -p ember-runtime --lib --tests)
if rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
  exec cargo test "${test_args[@]}" "$@"
fi
export RUSTC=/usr/bin/rustc
export RUSTC_BOOTSTRAP=1
export RUSTDOC=/usr/bin/rustdoc
exec /usr/bin/cargo test -Z build-std "${test_args[@]}" "$@"
