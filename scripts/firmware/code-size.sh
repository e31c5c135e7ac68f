#!/usr/bin/env bash
# ember's firmware runtime code size on the Cortex-M4 (thumbv7em-none-eabihf, release, fat LTO).
#
#   scripts/firmware/code-size.sh [--elf FILE] [--ceiling BYTES] [--all-kernels]
#
# Builds the QEMU benchmark (boards/qemu-mps2-an386, `ember-qemu-bench`; its release profile builds
# ember-runtime with `opt-level = "s"`, as the firmware ships and as mcu-budget.sh counts
# instructions) with only the kernels
# of the MLPerf Tiny keyword-spotting model (board feature `kws`: CONV_2D, DEPTHWISE_CONV_2D,
# AVERAGE_POOL_2D, RESHAPE, FULLY_CONNECTED, SOFTMAX, int8) and that model embedded, runs it on
# QEMU (so the build provably runs the model, bit-exact with the host), then sums the sizes of
# the code symbols in `.text` (`arm-none-eabi-nm --print-size`) by the crate that defines them.
#
# "Runtime code" = the symbols of ember-runtime and of the crates only it uses on the device:
# heapless, bytemuck, libm, and postcard/serde should they ever be linked again (the device
# decodes the graph and operator records with runtime/src/decode.rs, not serde). Not
# counted (listed separately): `Debug`/`Display` impls of the runtime's types (runtime_fmt: linked
# only because the application formats them; the benchmark prints errors with `{:?}`), core
# (formatting, panics, slices), compiler_builtins (memcpy, memset, integer division), the board
# and benchmark (cortex-m, semihosting, main). With LTO a function inlined into another counts
# where it was inlined; `Model::load`, the interpreter loop and `Op::decode` are never inlined, so the
# loader and interpreter stay under the runtime's name.
#
# Fails when the runtime code exceeds the ceiling (EMBER_CODE_SIZE_CEILING, default below).
# --elf FILE skips the build and the QEMU run and only measures FILE. --all-kernels measures
# the default build (every kernel) instead, without the ceiling.
# Environment: EMBER_SHARED_DIR, EMBER_BIN (a host `ember`; built when unset),
# EMBER_CODE_SIZE_TARGET_DIR (board build dir, default boards/qemu-mps2-an386/target/code-size).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$repo_root"

# Measured 24,410 B (KWS-only build; 57,504 B before the serde-free decoder, the de-duplicated
# DSP kernels and `opt-level = "s"` for the runtime): the goal of issue #5, 24,576 B, is met.
# The ceiling is the goal itself (the measurement + 2% would sit above it), so CI fails as soon
# as the runtime grows past 24 kB; lower it when the runtime shrinks.
ceiling="${EMBER_CODE_SIZE_CEILING:-24576}"
elf=""
board_features=(--no-default-features --features kws)
check_ceiling=1
while (($#)); do
  case "$1" in
    --elf) elf=$2; shift ;;
    --ceiling) ceiling=$2; shift ;;
    --all-kernels) board_features=(); check_ceiling=0 ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

require_packages binutils-arm-none-eabi

if [[ -z "$elf" ]]; then
  require_packages gcc-arm-none-eabi qemu-system-arm xxd
  work="${EMBER_CODE_SIZE_TARGET_DIR:-$repo_root/boards/qemu-mps2-an386/target/code-size}"
  mkdir -p "$work"
  work=$(realpath "$work")
  ember="${EMBER_BIN:-}"
  if [[ -z "$ember" ]]; then
    cargo build -q -p ember-cli --bin ember
    ember="${CARGO_TARGET_DIR:-$repo_root/target}/debug/ember"
  fi
  model="$work/kws_ref_model.emb"
  "$ember" convert "$shared_dir/models/kws_ref_model.tflite" -o "$model" >/dev/null

  echo "==> build ember-qemu-bench ${board_features[*]:-(default features)} (release)"
  (cd boards/qemu-mps2-an386 && EMBER_BENCH_MODEL="$model" CARGO_TARGET_DIR="$work" \
    cross_cargo thumbv7em-none-eabihf core,alloc --release --bin ember-qemu-bench \
    "${board_features[@]}" >/dev/null)
  elf="$work/kws-code-size.elf"
  cp "$work/thumbv7em-none-eabihf/release/ember-qemu-bench" "$elf"

  echo "==> run it on QEMU (it must load and run the model)"
  log="$work/kws-code-size.qemu.log"
  timeout 300 qemu-system-arm -M mps2-an386 -cpu cortex-m4 -nographic -icount shift=0 \
    -semihosting-config enable=on,target=native -monitor none -serial null -kernel "$elf" \
    >"$log" 2>&1 || { echo "error: the KWS-only benchmark failed on QEMU:" >&2; cat "$log" >&2; exit 1; }
  sed -n 's/^input\[0\]=\([0-9a-f]*\).*/\1/p' "$log" | tr -d '\r' | xxd -r -p >"$work/input.bin"
  "$ember" run "$model" --input "$work/input.bin" --output "$work/host.bin" >/dev/null
  device_out=$(sed -n 's/^output\[0\]=\([0-9a-f]*\).*/\1/p' "$log" | tr -d '\r')
  host_out=$(xxd -p "$work/host.bin" | tr -d '\n')
  if [[ -z "$device_out" || "$device_out" != "$host_out" ]]; then
    echo "error: the KWS-only benchmark's output differs from the host (qemu: '$device_out', host: '$host_out')" >&2
    exit 1
  fi
  echo "   ok: bit-exact with the host; $(grep '^instructions_per_inference=' "$log" | tr -d '\r')"
fi

# Component of a demangled symbol: the crate of the path it starts with (for `<T as Trait>::f`
# the crate of T, i.e. the impl's type), grouped as the table below prints them.
arm-none-eabi-nm --print-size --size-sort --radix=d -C "$elf" | awk '
  $3 ~ /^[tTwW]$/ {
    size = $2 + 0
    name = $0; sub(/^[0-9]+ [0-9]+ [tTwW] /, "", name)
    path = name
    sub(/^<+/, "", path); sub(/^&(mut )?/, "", path); sub(/^\[/, "", path)
    crate = path; sub(/::.*/, "", crate); sub(/[<> ].*/, "", crate)
    if (crate == "ember_runtime" && name ~ / as core::fmt::(Debug|Display)>::fmt$/) group = "runtime_fmt"
    else if (crate == "ember_runtime") group = "ember_runtime"
    else if (crate == "postcard" || crate == "serde" || crate == "serde_core") group = "postcard+serde"
    else if (crate == "heapless" || crate == "bytemuck") group = "heapless+bytemuck"
    else if (crate == "libm") group = "libm"
    else if (crate == "core" || crate == "alloc") group = "core"
    else if (crate == "compiler_builtins" || name ~ /^__aeabi|^mem(cpy|set|move|cmp)$|^__/) group = "compiler_builtins"
    else group = "board"
    total[group] += size; all += size
    if (group == "ember_runtime") {
      if (name ~ /validate|Validator/) part = "  validation (load time)"
      else if (name ~ /kernels::dsp::/) part = "  kernels: Cortex-M DSP"
      else if (name ~ /ops::Op>::eval_kernel/) part = "  kernels: eval + reference"
      else if (name ~ /Deserialize|Visitor|ember_runtime::(ops|model|format|decode)::/) part = "  loader + interpreter"
      else if (name ~ /kernels::/) part = "  kernels: eval + reference"
      else part = "  other (arena, quant, crc32)"
      parts[part] += size
    }
  }
  END {
    runtime = total["ember_runtime"] + total["postcard+serde"] + total["heapless+bytemuck"] + total["libm"]
    printf "%-30s %8s\n", "component", "bytes"
    m = split("  loader + interpreter|  validation (load time)|  kernels: eval + reference|  kernels: Cortex-M DSP|  other (arena, quant, crc32)", part_order, "|")
    n = split("ember_runtime postcard+serde heapless+bytemuck libm runtime_fmt core compiler_builtins board", order, " ")
    for (i = 1; i <= n; i++) {
      printf "%-30s %8d\n", order[i], total[order[i]]
      if (order[i] == "ember_runtime") for (j = 1; j <= m; j++) printf "%-30s %8d\n", part_order[j], parts[part_order[j]]
    }
    printf "%-30s %8d\n", "all code symbols", all
    printf "runtime_code_bytes=%d\n", runtime
  }' | tee "${elf%.elf}.size.txt"

runtime=$(sed -n 's/^runtime_code_bytes=//p' "${elf%.elf}.size.txt")
((check_ceiling)) || exit 0
if ((runtime > ceiling)); then
  echo "error: runtime code is $runtime bytes, over the ceiling of $ceiling (goal 24576)" >&2
  exit 1
fi
echo "ok: runtime code $runtime bytes <= ceiling $ceiling (goal 24576)"
