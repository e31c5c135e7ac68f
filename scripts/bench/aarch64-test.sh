#!/usr/bin/env bash
# Cross-tests ember-runtime for aarch64 (NEON kernels included) under qemu-aarch64.
#
# Needs: Debian rustc/cargo with rust sources (/usr/bin/rustc; the rustup toolchain has no aarch64
# std, so std is built with -Z build-std), gcc-aarch64-linux-gnu, qemu-user.
# Usage: scripts/bench/aarch64-test.sh [extra cargo test args, e.g. a test name filter]
set -euo pipefail
cd "$(dirname "$0")/../.."
export RUSTC=/usr/bin/rustc
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/aarch64-cross"
export RUSTDOC=/usr/bin/rustdoc
# Unit and integration tests only: doctests are architecture-independent and run on the host.
exec /usr/bin/cargo test -Z build-std --target aarch64-unknown-linux-gnu -p ember-runtime --lib --tests "$@"
