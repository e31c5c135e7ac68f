#!/usr/bin/env python3
"""Host latency of ember against its peers, one thread, same run, same machine.

For every model in ../shared/models (or --models DIR) this measures, in rounds:
  ember              release `ember bench --json` (the .emb converted with `ember convert`)
  litert-xnnpack     ai-edge-litert, default resolver (XNNPACK delegate), num_threads=1
  litert-optimized   ai-edge-litert BUILTIN_WITHOUT_DEFAULT_DELEGATES (optimized kernels)
  litert-reference   ai-edge-litert BUILTIN_REF (reference kernels: what ember is bit-exact with)
  onnxruntime        only when `onnxruntime` and `tflite2onnx` import and the model converts
  tract              only when a `tract` binary is on PATH (building it takes far too long here)

Each round takes --runs timed inferences after --warmup untimed ones and records p10 and p50;
the report gives, per engine, the best p10 and best p50 over the rounds (the machine is shared and
noisy: the best round is the least disturbed one) and the ratio to ember's best p10.
LiteRT is timed from Python around `invoke()`, which adds about a microsecond of call overhead.

Usage: scripts/bench/compare.py [--rounds 5] [--runs 300] [--json out.json] [--no-build]
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def percentile(sorted_times, p):
    rank = max(1, min(len(sorted_times), int(-(-p * len(sorted_times) // 100))))
    return sorted_times[rank - 1]


def ember_binary(no_build):
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    if not no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "ember-cli"], cwd=ROOT, check=True)
    exe = os.path.join(target, "release", "ember")
    if not os.path.exists(exe):
        sys.exit(f"no ember binary at {exe}: build with `cargo build --release -p ember-cli`")
    return exe


def time_ember(exe, emb, runs, warmup):
    out = subprocess.run(
        [exe, "bench", emb, "--json", "--runs", str(runs), "--warmup", str(warmup)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    doc = json.loads(out)
    return doc["p10_us"], doc["p50_us"]


def litert_timer(path, resolver):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    import numpy as np

    kinds = {
        "xnnpack": OpResolverType.AUTO,
        "optimized": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        "reference": OpResolverType.BUILTIN_REF,
    }
    interp = Interpreter(model_path=path, num_threads=1, experimental_op_resolver_type=kinds[resolver])
    interp.allocate_tensors()
    for d in interp.get_input_details():
        interp.set_tensor(d["index"], np.zeros(d["shape"], dtype=d["dtype"]))
    return interp.invoke


def onnx_timer(path, workdir):
    import numpy as np
    import onnxruntime as ort
    import tflite2onnx

    onnx_path = os.path.join(workdir, os.path.basename(path) + ".onnx")
    tflite2onnx.convert(path, onnx_path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    types = {"tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(float)": np.float32}
    feeds = {
        i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], dtype=types[i.type])
        for i in sess.get_inputs()
    }
    return lambda: sess.run(None, feeds)


def time_callable(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - start) / 1e3)
    times.sort()
    return percentile(times, 10), percentile(times, 50)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=os.path.join(ROOT, "..", "shared", "models"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--json", default="bench-compare.json")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    exe = ember_binary(args.no_build)
    workdir = tempfile.mkdtemp(prefix="ember-compare-")
    notes = []
    try:
        import onnxruntime  # noqa: F401
        import tflite2onnx  # noqa: F401

        have_ort = True
    except ImportError as e:
        have_ort = False
        notes.append(f"onnxruntime skipped: {e} (pip install onnxruntime tflite2onnx)")
    if shutil.which("tract") is None:
        notes.append("tract skipped: no `tract` binary on PATH (`cargo install tract` takes far longer than a few minutes on this machine)")

    results = {}
    for model in sorted(glob.glob(os.path.join(args.models, "*.tflite"))):
        name = os.path.splitext(os.path.basename(model))[0]
        emb = os.path.join(workdir, name + ".emb")
        subprocess.run([exe, "convert", model, "-o", emb], check=True, capture_output=True)
        engines = {"ember": lambda: time_ember(exe, emb, args.runs, args.warmup)}
        for resolver in ("xnnpack", "optimized", "reference"):
            try:
                fn = litert_timer(model, resolver)
                engines[f"litert-{resolver}"] = lambda fn=fn: time_callable(fn, args.runs, args.warmup)
            except Exception as e:  # a resolver that cannot run the model is reported, not fatal
                notes.append(f"{name}: litert-{resolver} failed: {e}")
        if have_ort:
            try:
                fn = onnx_timer(model, workdir)
                engines["onnxruntime"] = lambda fn=fn: time_callable(fn, args.runs, args.warmup)
            except Exception as e:
                notes.append(f"{name}: onnxruntime skipped: {type(e).__name__}: {e}")
        best = {k: [float("inf"), float("inf")] for k in engines}
        # Interleave engines within each round so drift in machine load hits all of them alike.
        for _ in range(args.rounds):
            for engine, run in engines.items():
                p10, p50 = run()
                best[engine][0] = min(best[engine][0], p10)
                best[engine][1] = min(best[engine][1], p50)
        results[name] = {k: {"best_p10_us": v[0], "best_p50_us": v[1]} for k, v in best.items()}

    print(f"one thread; best over {args.rounds} rounds of {args.runs} runs; ratio = engine p10 / ember p10")
    print(f"{'model':<28} {'engine':<18} {'best p10 us':>12} {'best p50 us':>12} {'ratio':>7}")
    for name, engines in results.items():
        ember_p10 = engines["ember"]["best_p10_us"]
        for engine, r in engines.items():
            r["ratio_to_ember"] = r["best_p10_us"] / ember_p10
            print(f"{name:<28} {engine:<18} {r['best_p10_us']:>12.1f} {r['best_p50_us']:>12.1f} {r['ratio_to_ember']:>7.2f}")
        peers = [r["best_p10_us"] for e, r in engines.items() if e != "ember" and e != "litert-reference"]
        if peers:
            engines["ember"]["vs_fastest_peer"] = ember_p10 / min(peers)
            print(f"{name:<28} {'ember/fastest':<18} {'':>12} {'':>12} {ember_p10 / min(peers):>7.2f}")
    for note in notes:
        print("note:", note)
    with open(args.json, "w") as f:
        json.dump({"rounds": args.rounds, "runs": args.runs, "results": results, "notes": notes}, f, indent=2)
    print("wrote", args.json)
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
