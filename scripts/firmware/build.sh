#!/usr/bin/env bash
# Proves `no_std` on real targets and builds every board's firmware.
#
#   scripts/firmware/build.sh [--all] [--release] [--board NAME]... [--bench-model FILE.emb]
#
# --all (the default)   ember-runtime, ember-protocol and ember-firmware for thumbv7em-none-eabihf
#                       and thumbv6m-none-eabi (no atomics), then every crate under boards/.
# --board NAME          only that board (repeatable); skips the library builds.
# --bench-model FILE    the .emb the QEMU benchmark embeds (default: converted from
#                       shared/models/$EMBER_BENCH_TFLITE, see bench_model below).
# EMBER_BOARD_FEATURES  cargo features for the board crates, e.g. EMBER_BOARD_FEATURES=defmt
#                       with --board qemu-mps2-an386 (defmt logs over semihosting; DEVELOPERS.md).
#
# Uses the rustup toolchain when it has the thumb target installed, else Debian's rustc-web
# with -Z build-std; installs missing apt packages when run as root, else names them.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$repo_root"

profile_args=()
boards=()
libs=1
bench_model=""
while (($#)); do
  case "$1" in
    --all) ;;
    --release) profile_args=(--release) ;;
    --board) boards+=("$2"); libs=0; shift ;;
    --bench-model) bench_model=$2; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
((${#boards[@]})) || for dir in boards/*/; do [[ -f "$dir/board.toml" ]] && boards+=("$(basename "$dir")"); done

require_packages gcc-arm-none-eabi

step() { printf '\n==> %s\n' "$*"; }

# Host and library builds share the host workspace's target dir unless the caller chose one.
host_target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
if ((libs)); then
  lib_crates=(-p ember-runtime)
  for crate in ember-protocol ember-firmware; do
    lib_crates+=(-p "$crate")
  done
  for target in thumbv7em-none-eabihf thumbv6m-none-eabi; do
    step "no_std: ${lib_crates[*]} for $target"
    CARGO_TARGET_DIR="$host_target_dir" cross_cargo "$target" core "${lib_crates[@]}" "${profile_args[@]}"
  done
fi

# The benchmark embeds a converted model: build the host `ember` once and convert.
stage_bench_model() {
  local tflite="$shared_dir/models/${EMBER_BENCH_TFLITE:-kws_ref_model.tflite}"
  local out="$repo_root/boards/qemu-mps2-an386/target/bench-model.emb"
  mkdir -p "$(dirname "$out")"
  if CARGO_TARGET_DIR="$host_target_dir" cargo run -q -p ember-cli --bin ember -- convert "$tflite" -o "$out" >&2; then
    echo "$out"
  else
    echo "warning: could not convert $tflite; the benchmark is built without a model" >&2
  fi
}

for board in "${boards[@]}"; do
  dir="boards/$board"
  [[ -f "$dir/board.toml" ]] || { echo "error: no board named $board (no $dir/board.toml)" >&2; exit 2; }
  target=$(sed -n 's/^target *= *"\(.*\)".*/\1/p' "$dir/board.toml" | head -1)
  step "board $board ($target)"
  if [[ "$board" == qemu-mps2-an386 ]]; then
    [[ -n "$bench_model" ]] || bench_model=$(stage_bench_model)
    if [[ -n "$bench_model" ]]; then
      EMBER_BENCH_MODEL=$(realpath "$bench_model")
      export EMBER_BENCH_MODEL
      echo "   benchmark model: $EMBER_BENCH_MODEL"
    fi
  fi
  # Each board is its own workspace with its own target dir (boards/NAME/target).
  feature_args=()
  [[ -z "${EMBER_BOARD_FEATURES:-}" ]] || feature_args=(--features "$EMBER_BOARD_FEATURES")
  (cd "$dir" && export -n CARGO_TARGET_DIR && unset CARGO_TARGET_DIR &&
    cross_cargo "$target" core "${profile_args[@]}" "${feature_args[@]}")
done

step "firmware builds passed"
