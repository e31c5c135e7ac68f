#!/usr/bin/env python3
"""Microcontroller side of the benchmark: every shared model on the emulated Cortex-M4.

For each .tflite in ../shared/models (or --models DIR) this converts it with `ember convert`, runs
`ember bench MODEL.emb --board qemu-mps2-an386 --json --profile` (release firmware with the model embedded,
QEMU mps2-an386 with -icount shift=0, output compared byte for byte with the host runtime) and
prints one table: instructions per inference, arena, stack high-water mark, model bytes and
runtime code bytes (the JSON report adds instructions per operator), next to TensorFlow Lite
Micro's figures for the same emulator (issue #5:
TFLM commit 90b983c, arm-none-eabi-gcc 12.2 -O2, reference kernels and CMSIS-NN) where there are
any. A model the board cannot run (too big, an op without a kernel) is listed with the reason.

Usage: scripts/bench/mcu.py [--models DIR] [--only kws_ref_model,ad01_int8] [--json out.json]
                            [--markdown out.md] [--ember PATH] [--target-dir DIR]

Needs what scripts/firmware/mcu-budget.sh needs (gcc-arm-none-eabi, qemu-system-arm, and the
thumbv7em target or Debian's rustc-web + rust-web-src); scripts/setup.sh installs them. The first
run builds the firmware per model (about a minute each); counts are deterministic.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BOARD = "qemu-mps2-an386"

# TFLite Micro on the same emulator, from issue #5 (instructions per Invoke(), arena_used_bytes()).
TFLM = {
    "kws_ref_model": {"reference": 43.0e6, "cmsis_nn": 7.70e6, "arena": 22_820, "goal": 5.4e6},
    "ad01_int8": {"reference": 1.95e6, "cmsis_nn": 0.583e6, "arena": 2_580, "goal": 0.41e6},
}


def millions(value: float | None) -> str:
    return "—" if value is None else f"{value / 1e6:.3f} M"


def ember_binary(args: argparse.Namespace) -> str:
    if args.ember:
        return args.ember
    target = os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "ember-cli", "--bin", "ember"],
                   cwd=REPO, check=True)
    return str(Path(target) / "release" / "ember")


def bench_one(ember: str, tflite: Path, work: Path, target_dir: str | None) -> dict:
    emb = work / f"{tflite.stem}.emb"
    convert = subprocess.run([ember, "convert", str(tflite), "-o", str(emb)],
                             capture_output=True, text=True)
    if convert.returncode != 0:
        return {"model": tflite.stem, "error": "convert: " + convert.stderr.strip().splitlines()[-1]}
    command = [ember, "bench", str(emb), "--board", BOARD, "--json", "--profile"]
    if target_dir:
        command += ["--target-dir", target_dir]
    print(f"==> {tflite.stem}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    run = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if run.returncode != 0:
        lines = [line for line in run.stderr.strip().splitlines() if line.strip()]
        return {"model": tflite.stem, "error": lines[-1] if lines else f"exit {run.returncode}"}
    doc = json.loads(run.stdout)
    doc["model"] = tflite.stem
    return doc


def markdown(results: list[dict]) -> str:
    rows = [
        "| model | ember instructions | TFLM reference | TFLM + CMSIS-NN | ember / CMSIS-NN | goal "
        "| arena B (TFLM) | stack B | model B | runtime code B | bit-exact |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for doc in results:
        name = doc["model"]
        if "error" in doc:
            rows.append(f"| {name} | not run: {doc['error']} |||||||||| |")
            continue
        tflm = TFLM.get(name, {})
        instructions = doc["instructions_per_inference"]
        ratio = f"{instructions / tflm['cmsis_nn']:.2f}x" if tflm else "—"
        goal = "—"
        if tflm:
            goal = f"{millions(tflm['goal'])} ({'met' if instructions <= tflm['goal'] else 'not met'})"
        arena = f"{doc['arena_bytes']:,}" + (f" ({tflm['arena']:,})" if tflm else "")
        rows.append(
            f"| {name} | {instructions:,} | {millions(tflm.get('reference'))} "
            f"| {millions(tflm.get('cmsis_nn'))} | {ratio} | {goal} | {arena} "
            f"| {doc['stack_bytes']:,} | {doc['model_bytes']:,} | {doc['runtime_code_bytes']:,} "
            f"| {'yes' if doc.get('bit_exact_with_host') else 'NO'} |"
        )
    return "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = Path(os.environ.get("EMBER_SHARED_DIR", REPO.parent / "shared"))
    parser.add_argument("--models", type=Path, default=shared / "models",
                        help="directory of .tflite models (default: $EMBER_SHARED_DIR/models)")
    parser.add_argument("--only", help="comma-separated model names (default: all)")
    parser.add_argument("--json", type=Path, help="write every report here")
    parser.add_argument("--markdown", type=Path, help="write the table here too")
    parser.add_argument("--ember", help="an `ember` binary (default: build release)")
    parser.add_argument("--target-dir", help="cargo target dir for the firmware builds")
    args = parser.parse_args()

    models = sorted(args.models.glob("*.tflite"))
    if args.only:
        wanted = set(args.only.split(","))
        models = [m for m in models if m.stem in wanted]
        missing = wanted - {m.stem for m in models}
        if missing:
            parser.error(f"not in {args.models}: {', '.join(sorted(missing))}")
    if not models:
        parser.error(f"no .tflite models in {args.models}")

    work = REPO / "boards" / BOARD / "target" / "bench-mcu"
    work.mkdir(parents=True, exist_ok=True)
    ember = ember_binary(args)
    results = [bench_one(ember, m, work, args.target_dir) for m in models]

    table = markdown(results)
    print(table)
    if args.markdown:
        args.markdown.write_text(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if any("error" in r and r["model"] in TFLM for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
