#!/usr/bin/env bash
# The whole benchmark in one command: installs what it needs, then
#   1. host: ember against LiteRT (XNNPACK, optimized, reference), ONNX Runtime and tract, one
#      thread, same run (scripts/bench/compare.py; pip-installs the pinned peers);
#   2. microcontroller: every shared model on the emulated Cortex-M4 (scripts/bench/mcu.py:
#      instructions per inference, arena, stack, model and code bytes next to TFLite Micro's).
# Reports go to target/bench/{host,mcu}.json and mcu.md; the tables are printed.
#
#   scripts/bench/all.sh [compare.py options, e.g. --only kws_ref_model,ad01_int8 --rounds 5]
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh
out="${CARGO_TARGET_DIR:-target}/bench"
mkdir -p "$out"
python3 scripts/bench/compare.py --json "$out/host.json" "$@"
only=()
for ((i = 1; i <= $#; i++)); do
  if [[ "${!i}" == --only ]]; then
    next=$((i + 1))
    only=(--only "${!next}")
  fi
done
python3 scripts/bench/mcu.py "${only[@]}" --json "$out/mcu.json" --markdown "$out/mcu.md"
