#!/usr/bin/env bash
# Runs ember's firmware on the emulated Cortex-M4F (QEMU mps2-an386) and checks it against the
# host runtime:
#   1. converts shared/models/$EMBER_BENCH_TFLITE (default kws_ref_model.tflite) with `ember convert`,
#   2. builds the benchmark with that model embedded (release: the instruction count is reported),
#   3. runs it under `qemu-system-arm -icount shift=0`; it prints its input and output bytes and
#      the instructions per inference and the stack high-water mark (painted stack) over
#      semihosting,
#   4. runs `ember run` on the host with the same input and requires identical output bytes.
# Skips loudly (exit 0) only when qemu-system-arm is missing and cannot be installed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$repo_root"

if ! command -v qemu-system-arm >/dev/null; then
  if ! require_packages qemu-system-arm; then
    echo "################################################################"
    echo "## SKIPPED: qemu-system-arm is not installed; firmware NOT tested ##"
    echo "################################################################"
    exit 0
  fi
fi
require_packages gcc-arm-none-eabi

host_target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
work="$repo_root/boards/qemu-mps2-an386/target/qemu-test"
mkdir -p "$work"

echo "==> host ember (cargo build -p ember-cli)"
CARGO_TARGET_DIR="$host_target_dir" cargo build -q -p ember-cli
ember="$host_target_dir/debug/ember"

tflite_name="${EMBER_BENCH_TFLITE:-kws_ref_model.tflite}"
model="$work/${tflite_name%.tflite}.emb"
echo "==> ember convert $tflite_name"
"$ember" convert "$shared_dir/models/$tflite_name" -o "$model"

echo "==> benchmark firmware with $model embedded"
(cd boards/qemu-mps2-an386 && unset CARGO_TARGET_DIR && EMBER_BENCH_MODEL="$model" \
  cross_cargo thumbv7em-none-eabihf core --release --bin ember-qemu-bench)
elf=boards/qemu-mps2-an386/target/thumbv7em-none-eabihf/release/ember-qemu-bench

echo "==> QEMU mps2-an386 (-icount shift=0)"
log="$work/bench.txt"
timeout 300 qemu-system-arm -M mps2-an386 -cpu cortex-m4 -nographic -icount shift=0 \
  -semihosting-config enable=on,target=native -monitor none -serial null -kernel "$elf" | tee "$log"

inputs=$(grep -c '^input\[' "$log" || true)
[[ "$inputs" -eq 1 ]] || { echo "FAIL: expected exactly one input line from the firmware" >&2; exit 1; }
grep '^input\[0\]=' "$log" | cut -d= -f2 | xxd -r -p > "$work/input.bin"
device_out=$(grep '^output\[0\]=' "$log" | cut -d= -f2)
[[ -n "$device_out" ]] || { echo "FAIL: the firmware printed no output" >&2; exit 1; }

"$ember" run "$model" --input "$work/input.bin" --output "$work/host-output.bin" >/dev/null
host_out=$(xxd -p "$work/host-output.bin" | tr -d '\n')
echo "device output: $device_out"
echo "host output:   $host_out"
if [[ "$device_out" != "$host_out" ]]; then
  echo "FAIL: Cortex-M4 output differs from the host runtime" >&2
  exit 1
fi
instructions=$(sed -n 's/^instructions_per_inference=//p' "$log")
stack_line=$(grep '^stack high-water mark:' "$log" || true)
[[ -n "$stack_line" ]] || { echo "FAIL: the firmware printed no stack high-water mark" >&2; exit 1; }
echo "PASS: bit-exact with the host on $tflite_name; $instructions instructions per inference"
echo "      $stack_line"
echo "1 passed, 0 failed"

echo "==> device end to end over the QEMU PTY (scripts/firmware/e2e.sh)"
scripts/firmware/e2e.sh

echo "==> device end to end with >= 100 injected faults (cargo test -p ember-device-e2e)"
CARGO_TARGET_DIR="$host_target_dir" cargo test -q -p ember-device-e2e -- --include-ignored --test-threads=1
