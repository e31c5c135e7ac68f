#!/usr/bin/env bash
# Instruction and memory budgets on the emulated Cortex-M4 (QEMU mps2-an386, `-icount shift=0`, so
# counts are deterministic). For every model in boards/qemu-mps2-an386/budgets.toml (or the names
# given), it converts shared/models/<name>.tflite, runs
#   ember bench <name>.emb --board qemu-mps2-an386 --json --profile
# (which builds the release benchmark firmware with the model embedded, runs it on QEMU and checks
# its output against the host runtime), checks the output once more with `ember run` on the same
# input, and fails when instructions or arena bytes exceed the model's ceiling. Goals are printed
# next to the measurements, not enforced.
#
#   scripts/firmware/mcu-budget.sh [MODEL ...]
#
# Environment: EMBER_SHARED_DIR (default ../shared), EMBER_BUDGET_TARGET_DIR (firmware cargo target
# dir, default boards/qemu-mps2-an386/target: shared with build.sh, so only the model's crate is
# rebuilt per model), EMBER_BIN (a host `ember` binary; built when unset).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$repo_root"

board=qemu-mps2-an386
board_dir="$repo_root/boards/$board"
budgets="$board_dir/budgets.toml"

require_packages gcc-arm-none-eabi qemu-system-arm binutils-arm-none-eabi xxd
# `ember bench --board` picks the toolchain like cross_cargo: the rustup target when installed,
# else Debian's rustc with -Z build-std (install its packages here, when root).
rustup_has_target thumbv7em-none-eabihf || require_packages rustc-web rust-web-src cargo-web

models=("$@")
if ((${#models[@]} == 0)); then
  mapfile -t models < <(python3 -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))))' "$budgets")
fi

target_dir="${EMBER_BUDGET_TARGET_DIR:-$board_dir/target}"
work="$board_dir/target/mcu-budget"
mkdir -p "$work" "$target_dir"

ember="${EMBER_BIN:-}"
if [[ -z "$ember" ]]; then
  cargo build -q -p ember-cli --bin ember
  ember="${CARGO_TARGET_DIR:-$repo_root/target}/debug/ember"
fi

failed=0
summary=()
for name in "${models[@]}"; do
  emb="$work/$name.emb"
  "$ember" convert "$shared_dir/models/$name.tflite" -o "$emb" >/dev/null

  echo "==> $name: ember bench --board $board --json --profile"
  report="$work/$name.json"
  if ! "$ember" bench "$emb" --board "$board" --board-dir "$board_dir" --target-dir "$target_dir" \
    --json --profile >"$report"; then
    echo "error: $name: ember bench --board failed" >&2
    failed=1
    continue
  fi

  # Independent bit-exactness check: `ember run` on the firmware's input.
  python3 - "$report" "$work/$name.input.bin" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
if len(doc["inputs"]) != 1 or len(doc["outputs"]) != 1:
    sys.exit("mcu-budget compares single-input, single-output models only")
open(sys.argv[2], "wb").write(bytes.fromhex(doc["inputs"][0]))
EOF
  "$ember" run "$emb" --input "$work/$name.input.bin" --output "$work/$name.host.bin" >/dev/null
  host_out=$(xxd -p "$work/$name.host.bin" | tr -d '\n')

  # Prints the measured numbers, goal and ceiling; exit status 1 when over a ceiling, 2 when the
  # board's output differs from `ember run`, 3 when the model has no budget.
  set +e
  python3 - "$report" "$budgets" "$name" "$host_out" <<'EOF'
import json, sys, tomllib
doc = json.load(open(sys.argv[1]))
budgets = tomllib.load(open(sys.argv[2], "rb"))
name, host_out = sys.argv[3], sys.argv[4]
if doc["outputs"][0] != host_out or doc.get("bit_exact_with_host") is not True:
    print(f"   board output {doc['outputs'][0]}\n   host output  {host_out}")
    sys.exit(2)
budget = budgets.get(name)
if budget is None:
    print(f"   {name} has no table in budgets.toml")
    sys.exit(3)
over = False
print(f"   {'':<28}{'measured':>12}{'ceiling':>12}{'goal':>12}")
for what, measured in [("instructions", doc["instructions_per_inference"]), ("arena", doc["arena_bytes"])]:
    ceiling, goal = budget[f"{what}_ceiling"], budget[f"{what}_goal"]
    note = "goal met" if measured <= goal else f"{measured / goal:.2f}x the goal"
    if measured > ceiling:
        note = "OVER THE CEILING"
        over = True
    print(f"   {what:<28}{measured:>12,}{ceiling:>12,}{goal:>12,}   {note}")
for what in ["stack_bytes", "model_bytes", "runtime_code_bytes", "runtime_kernel_code_bytes", "code_bytes"]:
    print(f"   {what:<28}{doc[what]:>12,}")
print("   per operator (instructions, share):")
for op in doc["profile"]:
    print(f"     {op['index']:>3} {op['op']:<20} {op['kernel']:<20} {op['instructions']:>10,} {100 * op['share']:5.1f}%")
print(f"     outside operators: {doc['profile_unattributed_instructions']:,}")
sys.exit(1 if over else 0)
EOF
  verdict=$?
  set -e
  case $verdict in
    0) echo "   ok: bit-exact with the host, within the ceilings" ;;
    1) echo "error: $name: over its ceiling in $budgets" >&2; failed=1 ;;
    2) echo "error: $name: the board's output differs from ember run on the host" >&2; failed=1 ;;
    *) echo "error: $name: no budget in $budgets" >&2; failed=1 ;;
  esac
  instructions=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["instructions_per_inference"])' "$report")
  summary+=("$name instructions=$instructions (report: $report)")
done

echo
printf '%s\n' "${summary[@]}"
if ((failed)); then
  echo "mcu-budget: FAILED"
  exit 1
fi
echo "mcu-budget: all models bit-exact and within their ceilings"
