#!/usr/bin/env python3
"""Host latency of ember against its peers, one thread, same run, same machine.

For every model in ../shared/models (or --models DIR) this measures, in rounds:
  ember              release `ember bench --json` (the .emb converted with `ember convert`)
  litert-xnnpack     ai-edge-litert, default resolver (XNNPACK delegate), num_threads=1
  litert-optimized   ai-edge-litert BUILTIN_WITHOUT_DEFAULT_DELEGATES (optimized kernels)
  litert-reference   ai-edge-litert BUILTIN_REF (reference kernels: what ember is bit-exact with)
  onnxruntime        ONNX Runtime (CPU provider, intra_op_num_threads=1) on an ONNX QDQ model made
                     from the .tflite by tflite_to_onnx_qdq.py; ORT fuses it into QLinearConv/QGemm
  tract              tract's Python bindings (prebuilt wheel) on the same ONNX model

Before timing, the ONNX engines' outputs are compared with LiteRT's reference kernels on --check
random inputs (they are not bit-exact: the report gives the largest difference in output steps and
how often the top-1 class agrees). The Python packages are pinned in requirements.txt beside this
script and installed with pip first (skip with --no-install).

Each round takes --runs timed inferences after --warmup untimed ones and records p10 and p50;
the report gives, per engine, the best p10 and best p50 over the rounds (the machine is shared and
noisy: the best round is the least disturbed one) and the ratio to ember's best p10.
LiteRT is timed from Python around `invoke()`, which adds about a microsecond of call overhead.

Usage: scripts/bench/compare.py [--rounds 5] [--runs 300] [--check 50] [--json out.json] [--no-build]
                               [--no-install] [--only kws_ref_model,ad01_int8] [--baseline-ember PATH]
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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


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


def install_requirements():
    """Installs the pinned peer packages (a no-op when they are already there)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "-r", os.path.join(HERE, "requirements.txt")],
        check=True,
    )


def onnx_model(path, workdir):
    sys.path.insert(0, HERE)
    import tflite_to_onnx_qdq

    onnx_path = os.path.join(workdir, os.path.basename(path) + ".onnx")
    return tflite_to_onnx_qdq.convert(path, onnx_path)


def zeros_like_inputs(path):
    from ai_edge_litert.interpreter import Interpreter
    import numpy as np

    interp = Interpreter(model_path=path)
    return [np.zeros(d["shape"], dtype=d["dtype"]) for d in interp.get_input_details()]


def onnx_runner(onnx_path):
    """A function running ONNX Runtime on a list of input arrays (one thread, QDQ fusion on)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return lambda xs: sess.run(None, dict(zip(names, xs)))[0]


def onnx_timer(onnx_path, inputs):
    """Times ORT through an IO binding, which keeps Python's per-call overhead small."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    binding = sess.io_binding()
    for i, x in zip(sess.get_inputs(), inputs):
        binding.bind_cpu_input(i.name, x)
    for o in sess.get_outputs():
        binding.bind_output(o.name)
    return lambda: sess.run_with_iobinding(binding)


def tract_runner(onnx_path):
    import tract

    runnable = tract.onnx().load(onnx_path).into_model().into_runnable()
    return lambda xs: runnable.run(list(xs))[0].to_numpy()


def agreement(path, run, checks):
    """Largest |difference| in output steps against LiteRT's reference kernels, and top-1 agreement."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    import numpy as np

    ref = Interpreter(model_path=path, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    ref.allocate_tensors()
    rng = np.random.default_rng(1)
    worst, same_top1 = 0.0, 0
    for _ in range(checks):
        xs = []
        for d in ref.get_input_details():
            if d["dtype"] == np.float32:
                x = rng.standard_normal(d["shape"]).astype(np.float32)
            else:
                info = np.iinfo(d["dtype"])
                x = rng.integers(info.min, info.max + 1, d["shape"]).astype(d["dtype"])
            ref.set_tensor(d["index"], x)
            xs.append(x)
        ref.invoke()
        expected = ref.get_tensor(ref.get_output_details()[0]["index"]).astype(np.float64)
        got = np.asarray(run(xs)).astype(np.float64).reshape(expected.shape)
        worst = max(worst, float(np.abs(got - expected).max()))
        same_top1 += int(np.argmax(got) == np.argmax(expected))
    return {"max_abs_diff": worst, "top1_agree": f"{same_top1}/{checks}"}


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
    ap.add_argument("--check", type=int, default=50, help="random inputs for the ONNX engines' agreement check")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-install", action="store_true", help="do not pip-install requirements.txt")
    ap.add_argument("--only", default="", help="comma-separated model names (default: all)")
    ap.add_argument("--baseline-ember", default="",
                    help="another ember binary (e.g. an older commit's release build) timed in the same "
                         "rounds as engine ember-baseline, to measure a change against the same peers")
    args = ap.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    exe = ember_binary(args.no_build)
    workdir = tempfile.mkdtemp(prefix="ember-compare-")
    notes = []
    if not args.no_install:
        install_requirements()
    results = {}
    only = [m for m in args.only.split(",") if m]
    for model in sorted(glob.glob(os.path.join(args.models, "*.tflite"))):
        name = os.path.splitext(os.path.basename(model))[0]
        if only and name not in only:
            continue
        emb = os.path.join(workdir, name + ".emb")
        subprocess.run([exe, "convert", model, "-o", emb], check=True, capture_output=True)
        engines = {"ember": lambda: time_ember(exe, emb, args.runs, args.warmup)}
        if args.baseline_ember:
            base_emb = os.path.join(workdir, name + ".baseline.emb")
            subprocess.run([args.baseline_ember, "convert", model, "-o", base_emb], check=True, capture_output=True)
            engines["ember-baseline"] = lambda: time_ember(args.baseline_ember, base_emb, args.runs, args.warmup)
        for resolver in ("xnnpack", "optimized", "reference"):
            try:
                fn = litert_timer(model, resolver)
                engines[f"litert-{resolver}"] = lambda fn=fn: time_callable(fn, args.runs, args.warmup)
            except Exception as e:  # a resolver that cannot run the model is reported, not fatal
                notes.append(f"{name}: litert-{resolver} failed: {e}")
        try:
            onnx_path = onnx_model(model, workdir)
        except Exception as e:
            onnx_path = None
            notes.append(f"{name}: no ONNX model: {type(e).__name__}: {e}")
        checks = {}
        if onnx_path:
            inputs = zeros_like_inputs(model)
            peers = {"onnxruntime": (onnx_runner, lambda p: onnx_timer(p, inputs)),
                     "tract": (tract_runner, lambda p: (lambda r: lambda: r(inputs))(tract_runner(p)))}
            for engine, (runner, timer) in peers.items():
                try:
                    checks[engine] = agreement(model, runner(onnx_path), args.check)
                    fn = timer(onnx_path)
                    engines[engine] = lambda fn=fn: time_callable(fn, args.runs, args.warmup)
                except Exception as e:
                    notes.append(f"{name}: {engine} failed: {type(e).__name__}: {str(e)[:300]}")
        best = {k: [float("inf"), float("inf")] for k in engines}
        # Interleave engines within each round so drift in machine load hits all of them alike.
        for _ in range(args.rounds):
            for engine, run in engines.items():
                p10, p50 = run()
                best[engine][0] = min(best[engine][0], p10)
                best[engine][1] = min(best[engine][1], p50)
        results[name] = {k: {"best_p10_us": v[0], "best_p50_us": v[1]} for k, v in best.items()}
        for engine, check in checks.items():
            if engine in results[name]:
                results[name][engine]["vs_litert_reference"] = check

    print(f"one thread; best over {args.rounds} rounds of {args.runs} runs; ratio = engine p10 / ember p10")
    print(f"{'model':<28} {'engine':<18} {'best p10 us':>12} {'best p50 us':>12} {'ratio':>7}")
    for name, engines in results.items():
        ember_p10 = engines["ember"]["best_p10_us"]
        for engine, r in engines.items():
            r["ratio_to_ember"] = r["best_p10_us"] / ember_p10
            print(f"{name:<28} {engine:<18} {r['best_p10_us']:>12.1f} {r['best_p50_us']:>12.1f} {r['ratio_to_ember']:>7.2f}")
        peers = [r["best_p10_us"] for e, r in engines.items()
                 if e not in ("ember", "ember-baseline", "litert-reference")]
        if peers:
            engines["ember"]["vs_fastest_peer"] = ember_p10 / min(peers)
            print(f"{name:<28} {'ember/fastest':<18} {'':>12} {'':>12} {ember_p10 / min(peers):>7.2f}")
            if "ember-baseline" in engines:
                base = engines["ember-baseline"]["best_p10_us"] / min(peers)
                engines["ember-baseline"]["vs_fastest_peer"] = base
                print(f"{name:<28} {'baseline/fastest':<18} {'':>12} {'':>12} {base:>7.2f}")
    for name, engines in results.items():
        for engine, r in engines.items():
            if "vs_litert_reference" in r:
                c = r["vs_litert_reference"]
                print(f"check: {name} {engine} vs litert-reference on {args.check} random inputs: "
                      f"max |diff| {c['max_abs_diff']:g} (output steps; plain values for a float output), "
                      f"top-1 agrees {c['top1_agree']}")
    for note in notes:
        print("note:", note)
    with open(args.json, "w") as f:
        json.dump({"rounds": args.rounds, "runs": args.runs, "results": results, "notes": notes}, f, indent=2)
    print("wrote", args.json)
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
