#!/usr/bin/env bash
# End to end over a real serial port: boots the device firmware in QEMU (`ember emulate`),
# then with the `ember` CLI over the PTY: info, flash a converted model, infer and compare
# with `ember run` on the host, stream a WAV file (the board computes the features) and check the
# predicted words, plus faults injected on the real PTY (line noise, a corrupt
# model upload) after which the device must still serve the last good model.
# Skips loudly (exit 0) only when qemu-system-arm is missing and cannot be installed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$repo_root"
if ! command -v qemu-system-arm >/dev/null && ! require_packages qemu-system-arm; then
  echo "## SKIPPED: qemu-system-arm is not installed; device end-to-end NOT tested ##"
  exit 0
fi
host_target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
CARGO_TARGET_DIR="$host_target_dir" cargo build -q -p ember-cli
ember="$host_target_dir/debug/ember"
work="$repo_root/boards/qemu-mps2-an386/target/e2e"
mkdir -p "$work"
scripts/firmware/build.sh --board qemu-mps2-an386 >/dev/null

"$ember" convert "$shared_dir/models/kws_ref_model.tflite" -o "$work/kws.emb" >/dev/null
head -c 490 /dev/urandom > "$work/input.bin"
"$ember" run "$work/kws.emb" --input "$work/input.bin" --output "$work/host.bin" >/dev/null
host_hex=$(xxd -p "$work/host.bin" | tr -d '\n')

rm -f "$work/port.txt"
"$ember" emulate > "$work/port.txt" 2> "$work/emulate.log" &
emulate_pid=$!
qemu_cleanup() { pkill -P "$emulate_pid" 2>/dev/null || true; kill "$emulate_pid" 2>/dev/null || true; }
trap qemu_cleanup EXIT
for _ in $(seq 60); do [[ -s "$work/port.txt" ]] && break; sleep 0.5; done
port=$(head -1 "$work/port.txt")
[[ -n "$port" ]] || { echo "FAIL: ember emulate printed no port"; cat "$work/emulate.log"; exit 1; }

passed=0 failed=0
check() { # name, command...
  local name=$1; shift
  if "$@"; then echo "ok   $name"; passed=$((passed + 1)); else echo "FAIL $name"; failed=$((failed + 1)); fi
}
infer_matches() { [[ "$("$ember" infer --port "$port" --input "$work/input.bin" | sed -n 's/^output: //p')" == "$host_hex" ]]; }

check "info answers" "$ember" info --port "$port"
check "flash kws" "$ember" flash --port "$port" "$work/kws.emb"
check "infer equals host" infer_matches
# Fault: line noise on the real PTY, then the protocol must resynchronise.
head -c 300 /dev/urandom > "$port"
check "info after line noise" "$ember" info --port "$port"
check "infer after line noise" infer_matches
# Fault: a corrupted model (one flipped byte in the graph) must be refused...
cp "$work/kws.emb" "$work/corrupt.emb"
printf '\xff' | dd of="$work/corrupt.emb" bs=1 seek=40 conv=notrunc status=none
check "corrupt model refused" bash -c "! '$ember' flash --port '$port' '$work/corrupt.emb'"
# ...and the device keeps serving the last good model.
check "infer after refused flash" infer_matches
# Fault: a truncated model.
head -c 1000 "$work/kws.emb" > "$work/truncated.emb"
check "truncated model refused" bash -c "! '$ember' flash --port '$port' '$work/truncated.emb'"
check "infer after truncated flash" infer_matches

# Streaming a file: the keyword model with its audio front end; the board computes the features.
"$ember" convert "$shared_dir/models/kws_ref_model.tflite" -o "$work/kws-audio.emb" --frontend mlperf-kws \
  --labels down,go,left,no,off,on,right,stop,up,yes,silence,unknown >/dev/null
check "flash kws with front end" "$ember" flash --port "$port" "$work/kws-audio.emb"
sox "$shared_dir/audio/yes_1000ms.wav" "$shared_dir/audio/silence_1000ms.wav" "$work/stream.wav"
stream_is_yes_then_silence() {
  local labels
  labels=$("$ember" stream --port "$port" --input "$work/stream.wav" --model "$work/kws-audio.emb" --json \
    --as-fast-as-possible | python3 -c 'import json,sys; print(" ".join(json.loads(l)["top"][0]["label"] for l in sys.stdin))')
  echo "   streamed predictions: $labels"
  [[ "$labels" == "yes silence" ]]
}
check "stream a file: yes, then silence" stream_is_yes_then_silence
echo "$passed passed, $failed failed"
((failed == 0))
