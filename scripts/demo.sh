#!/usr/bin/env bash
# ember's main job, end to end: boot the firmware on an emulated Cortex-M4 board (QEMU
# mps2-an386), push the MLPerf Tiny keyword-spotting model to it over the serial port (no
# reflash), stream spoken words to it, and print its live predictions.
#
#   scripts/demo.sh [--fast]     --fast streams as fast as the link allows instead of real time
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
pace=()
[[ "${1:-}" == "--fast" ]] && pace=(--as-fast-as-possible)

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "checking tools (apt packages are installed if missing)"
scripts/setup.sh
shared="${EMBER_SHARED_DIR:-$root/../shared}"
[[ -d "$shared/models" ]] || { echo "error: shared models not found at $shared (set EMBER_SHARED_DIR)"; exit 1; }

say "building the ember command"
cargo build --release -q -p ember-cli
ember="${CARGO_TARGET_DIR:-$root/target}/release/ember"
work="$root/target/demo"
mkdir -p "$work"

say "converting the keyword model, with its labels and audio front end"
"$ember" convert "$shared/models/kws_ref_model.tflite" -o "$work/kws.emb" \
  --frontend mlperf-kws --labels down,go,left,no,off,on,right,stop,up,yes,silence,unknown
"$ember" inspect "$work/kws.emb" | tail -4

say "on the host first: ember run on a recording"
"$ember" run "$work/kws.emb" --input "$shared/audio/yes_1000ms.wav"

say "preparing speech: real recordings, then words spoken by espeak-ng"
clips=()
for word in yes no silence noise; do
  clips+=("$shared/audio/${word}_1000ms.wav")
done
for word in stop left; do
  # 1 s of 16 kHz mono: synthesize, resample, centre the word, pad or cut to one second.
  espeak-ng -v en-us -s 150 -w "$work/$word.raw.wav" "$word"
  sox "$work/$word.raw.wav" -r 16000 -c 1 -b 16 "$work/$word.wav" pad 0.25 trim 0 1
  clips+=("$work/$word.wav")
done
sox "${clips[@]}" "$work/speech.wav"
echo "speech.wav: ${#clips[@]} one-second clips (yes, no, silence, noise from recordings; stop, left synthesized)"

say "booting the firmware on the emulated board (QEMU mps2-an386, Cortex-M4F)"
rm -f "$work/port.txt"
"$ember" emulate > "$work/port.txt" 2> "$work/emulate.log" &
emulate_pid=$!
cleanup() { pkill -P "$emulate_pid" 2>/dev/null || true; kill "$emulate_pid" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 600); do [[ -s "$work/port.txt" ]] && break; sleep 0.5; done
port=$(head -1 "$work/port.txt")
[[ -n "$port" ]] || { echo "error: the emulator did not start"; cat "$work/emulate.log"; exit 1; }
echo "board on $port"
"$ember" info --port "$port"

say "pushing the model to the running board over serial"
"$ember" flash --port "$port" "$work/kws.emb"
"$ember" info --port "$port" | grep -E "^model"

say "streaming speech to the board: it computes MFCCs and runs the model itself"
"$ember" stream --port "$port" --input "$work/speech.wav" --model "$work/kws.emb" "${pace[@]}"

say "swapping in ember's own keyword model, trained in burn (models/kws), on the same running board"
"$ember" flash --port "$port" "$root/models/kws/kws.emb"
"$ember" stream --port "$port" --input "$work/speech.wav" --model "$root/models/kws/kws.emb" "${pace[@]}"

say "done: the board ran every prediction; instructions are counted by QEMU (-icount)"
