#!/usr/bin/env bash
# Instruction budget on the emulated Cortex-M4 (QEMU mps2-an386, `-icount shift=0`, so counts are
# deterministic): builds the QEMU benchmark (release) once per model, runs it, checks that its
# output equals `ember run` on the host for the same input (bit-exact), and fails when the
# instructions per inference exceed the model's budget. Prints every measured number.
#
#   scripts/firmware/mcu-budget.sh [MODEL=BUDGET ...]
#
# Default budgets (goal: faster than TFLite Micro + CMSIS-NN, 7.70 M and 0.583 M):
#   kws_ref_model=5400000 ad01_int8=410000
# Environment: EMBER_SHARED_DIR (default ../shared), EMBER_BUDGET_TARGET_DIR (build dir, default
# target/mcu-budget), EMBER_BIN (a host `ember` binary; built when unset).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$repo_root"

budgets=("$@")
((${#budgets[@]})) || budgets=(kws_ref_model=5400000 ad01_int8=410000)

require_packages gcc-arm-none-eabi qemu-system-arm binutils-arm-none-eabi xxd

work="${EMBER_BUDGET_TARGET_DIR:-$repo_root/target/mcu-budget}"
mkdir -p "$work"
work=$(realpath "$work")

ember="${EMBER_BIN:-}"
if [[ -z "$ember" ]]; then
  cargo build -q -p ember-cli --bin ember
  ember="${CARGO_TARGET_DIR:-$repo_root/target}/debug/ember"
fi

board="$repo_root/boards/qemu-mps2-an386"
elf="$work/thumbv7em-none-eabihf/release/ember-qemu-bench"
failed=0
summary=()
for entry in "${budgets[@]}"; do
  name=${entry%%=*}
  budget=${entry#*=}
  tflite="$shared_dir/models/$name.tflite"
  emb="$work/$name.emb"
  "$ember" convert "$tflite" -o "$emb" >/dev/null

  echo "==> $name: build the QEMU benchmark (release)"
  (cd "$board" && EMBER_BENCH_MODEL="$emb" CARGO_TARGET_DIR="$work" \
    cross_cargo thumbv7em-none-eabihf core,alloc --release --bin ember-qemu-bench >/dev/null)
  cp "$elf" "$work/$name.elf"

  log="$work/$name.qemu.log"
  timeout 300 qemu-system-arm -M mps2-an386 -cpu cortex-m4 -nographic -icount shift=0 \
    -semihosting-config enable=on,target=native -kernel "$work/$name.elf" >"$log" 2>&1 || {
    echo "error: $name: the benchmark failed on QEMU:" >&2
    cat "$log" >&2
    failed=1
    continue
  }
  count=$(sed -n 's/^instructions_per_inference=\([0-9]*\).*/\1/p' "$log")
  arena=$(sed -n 's/.*arena_bytes=\([0-9]*\).*/\1/p' "$log")
  device_out=$(sed -n 's/^output\[0\]=\([0-9a-f]*\).*/\1/p' "$log" | tr -d '\r')
  sed -n 's/^input\[0\]=\([0-9a-f]*\).*/\1/p' "$log" | tr -d '\r' | xxd -r -p >"$work/$name.input.bin"
  "$ember" run "$emb" --input "$work/$name.input.bin" --output "$work/$name.host.bin" >/dev/null
  host_out=$(xxd -p "$work/$name.host.bin" | tr -d '\n')
  read -r text data bss _ < <(arm-none-eabi-size "$work/$name.elf" | tail -1)

  echo "   instructions_per_inference=$count budget=$budget arena_bytes=$arena"
  echo "   elf text=$text data=$data bss=$bss (model embedded in .text/.rodata)"
  if [[ -z "$count" || -z "$device_out" ]]; then
    echo "error: $name: no count or output in the QEMU log" >&2
    cat "$log" >&2
    failed=1
  elif [[ "$device_out" != "$host_out" ]]; then
    echo "error: $name: QEMU output differs from the host runtime" >&2
    echo "   qemu: $device_out" >&2
    echo "   host: $host_out" >&2
    failed=1
  elif ((count > budget)); then
    echo "error: $name: $count instructions per inference, over the budget of $budget" >&2
    failed=1
  else
    echo "   ok: bit-exact with the host, within budget"
  fi
  summary+=("$name instructions=$count budget=$budget arena_bytes=$arena text=$text")
done

echo
printf '%s\n' "${summary[@]}"
if ((failed)); then
  echo "mcu-budget: FAILED"
  exit 1
fi
echo "mcu-budget: all models within budget"
