#!/usr/bin/env bash
# The demos without a board: `ember stream --host` runs each model on this machine with the
# board's sliding window and (for speech) the same on-device audio front end.
#   1. speech: real recordings + espeak-ng words through the MLPerf KWS model and ember's
#      burn-trained keyword model (models/kws);
#   2. IMU: BasicMotions test recordings (accelerometer + gyroscope, 10 Hz, from the aeon 1.6.0
#      wheel) through the burn-trained 1-D CNN (models/imu-basicmotions), one window per recording.
#
#   scripts/demo-host.sh [--realtime]   --realtime paces the data at its sample rate
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
pace=(--as-fast-as-possible)
[[ "${1:-}" == "--realtime" ]] && pace=()

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

shared="${EMBER_SHARED_DIR:-$root/../shared}"
[[ -d "$shared/models" ]] || { echo "error: shared models not found at $shared (set EMBER_SHARED_DIR)"; exit 1; }
for tool in espeak-ng sox python3; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing; run scripts/setup.sh (installs it)"; exit 1; }
done

say "building the ember command"
cargo build --release -q -p ember-cli
ember="${CARGO_TARGET_DIR:-$root/target}/release/ember"
work="$root/target/demo-host"
mkdir -p "$work"

say "speech: two recordings and two synthesized words, one second each"
"$ember" convert "$shared/models/kws_ref_model.tflite" -o "$work/kws_ref.emb" \
  --frontend mlperf-kws --labels down,go,left,no,off,on,right,stop,up,yes,silence,unknown >/dev/null
clips=("$shared/audio/yes_1000ms.wav" "$shared/audio/no_1000ms.wav")
for word in stop left; do
  espeak-ng -v en-us -s 150 -w "$work/$word.raw.wav" "$word"
  sox "$work/$word.raw.wav" -r 16000 -c 1 -b 16 "$work/$word.wav" pad 0.25 trim 0 1
  clips+=("$work/$word.wav")
done
sox "${clips[@]}" "$work/speech.wav"
echo "speech.wav: yes, no (recordings), stop, left (espeak-ng)"

say "speech -> MLPerf Tiny KWS model (kws_ref_model.tflite, converted), on this machine"
"$ember" stream --host --model "$work/kws_ref.emb" --input "$work/speech.wav" "${pace[@]}"

say "speech -> ember's burn-trained keyword model (models/kws/kws.emb), on this machine"
"$ember" stream --host --model "$root/models/kws/kws.emb" --input "$work/speech.wav" "${pace[@]}"

say "IMU: BasicMotions test recordings from the aeon 1.6.0 wheel"
wheel_dir="$root/models/data-cache"
wheel="$wheel_dir/aeon-1.6.0-py3-none-any.whl"
if [[ ! -f "$wheel" ]]; then
  python3 -m pip download --quiet --no-deps aeon==1.6.0 -d "$wheel_dir"
fi
python3 - "$wheel" "$work/basicmotions.csv" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
name = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("BasicMotions_TEST.ts"))
lines = zipfile.ZipFile(wheel).read(name).decode().splitlines()
data = lines[[l.strip().lower() for l in lines].index("@data") + 1:]
picked, seen = [], {}
for line in data:
    *dims, label = line.strip().split(":")
    if seen.get(label, 0) < 2:  # two recordings of each activity
        seen[label] = seen.get(label, 0) + 1
        picked.append((label, [d.split(",") for d in dims]))
with open(out, "w") as f:
    f.write("acc_x,acc_y,acc_z,gyr_x,gyr_y,gyr_z\n")
    for _, dims in picked:
        for t in range(len(dims[0])):
            f.write(",".join(d[t] for d in dims) + "\n")
print("basicmotions.csv: 6 channels at 10 Hz, 100 rows per recording; true activities in order:")
print("  " + ", ".join(label for label, _ in picked))
PY

say "IMU -> ember's burn-trained 1-D CNN (models/imu-basicmotions), one 10 s window per recording"
# A stream sample is one element of the model's input: 6 channels x 10 Hz = 60 per second.
"$ember" stream --host --model "$root/models/imu-basicmotions/basicmotions.emb" \
  --input "$work/basicmotions.csv" --rate 60 "${pace[@]}"

say "done: every prediction above ran in ember's int8 engine on this machine, no board involved"
