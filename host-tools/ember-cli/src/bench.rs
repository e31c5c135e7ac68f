//! `ember bench`: host latency of a model, or instructions on a (emulated) board with `--board`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use ember_runtime::host::AlignedBytes;
use ember_runtime::{Model, Observer, Op, PreparedModel};
use serde_json::json;

use crate::inspect::load_file;

/// Measure inference latency on this machine, or instructions on an emulated board.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Measure how long one inference takes on this machine: runs the model \
--warmup times untimed, then --runs times, and reports p50/p90/p99 latency and MAC/s. The input \
is all zeros (latency does not depend on values). --profile adds time per operator. The model \
runs as a host application would run it (ember_runtime::PreparedModel): operators decoded once \
and, on a CPU with AVX-512 VNNI, weights packed for those kernels at load; the report names the \
host kernels (JSON: host_kernels, packed_weight_bytes).

Build with `cargo build --release -p ember-cli` for meaningful numbers.

With --board qemu-mps2-an386 it instead builds the board's benchmark firmware (release) with the \
model embedded, runs it on QEMU's emulated Cortex-M4 (-icount shift=0: deterministic instruction \
counts, SysTick ticks x 40), checks its output bytes equal the host runtime's for the same input, \
and reports instructions per inference, arena, stack high-water mark, model bytes and code bytes \
(function sizes from arm-none-eabi-nm: the ember_runtime ones, kernels separately, and all); \
--profile adds instructions per operator. Needs the repository's boards/ directory (found from \
the current directory, or --board-dir), a thumbv7em toolchain (rustup target, or Debian's \
rustc-web + rust-web-src), gcc-arm-none-eabi, binutils-arm-none-eabi and qemu-system-arm. \
Build progress goes to stderr; the first build takes minutes.

Examples:
  ember bench kws.emb
  ember bench kws.emb --runs 1000 --warmup 50 --profile
  ember bench kws.emb --json
  ember bench kws.emb --board qemu-mps2-an386 --profile
  ember bench ad.emb --board qemu-mps2-an386 --json --target-dir /tmp/ember-bench
  ember bench kws.emb --board qemu-mps2-an386 --no-default-features --features kws"
)]
pub struct Args {
    /// The .emb model.
    pub model: PathBuf,
    /// Timed runs.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// Untimed runs first.
    #[arg(long, default_value_t = 10)]
    pub warmup: u32,
    /// Also report time per operator.
    #[arg(long)]
    pub profile: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Run on this board's emulator instead of the host (qemu-mps2-an386).
    #[arg(long)]
    pub board: Option<String>,
    /// The board crate [default: boards/<board> in the current directory or a parent].
    #[arg(long, requires = "board")]
    pub board_dir: Option<PathBuf>,
    /// Cargo target directory for the firmware build [default: <board-dir>/target].
    #[arg(long, requires = "board")]
    pub target_dir: Option<PathBuf>,
    /// Seconds the emulator may run before it is stopped.
    #[arg(long, default_value_t = 300, requires = "board")]
    pub timeout: u64,
    /// Cargo features of the board crate for the firmware build (e.g. `kws`, its kernels only).
    #[arg(long, requires = "board")]
    pub features: Option<String>,
    /// Build the board crate without its default features (all kernels); use with --features.
    #[arg(long, requires = "board")]
    pub no_default_features: bool,
}

/// Accumulates time spent in each operator.
struct Profiler {
    started: Instant,
    per_op: Vec<(&'static str, &'static str, Duration)>,
}

impl Observer for Profiler {
    fn before_op(&mut self, _index: usize, _op: &Op) {
        self.started = Instant::now();
    }

    fn after_op(&mut self, index: usize, op: &Op) {
        let elapsed = self.started.elapsed();
        if let Some(entry) = self.per_op.get_mut(index) {
            entry.2 += elapsed;
        }
        let _ = op;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(board) = &args.board {
        return crate::board_bench::run(crate::board_bench::Request {
            model: &args.model,
            board,
            board_dir: args.board_dir.as_deref(),
            target_dir: args.target_dir.as_deref(),
            timeout: Duration::from_secs(args.timeout),
            features: args.features.as_deref(),
            no_default_features: args.no_default_features,
            profile: args.profile,
            json: args.json,
        });
    }
    let bytes = load_file(&args.model)?;
    let model = Model::load(bytes.as_slice())?;
    // Operators decoded once, as a host application would (the device decodes per run to keep
    // the decoded graph out of RAM).
    let prepared = PreparedModel::new(model.clone())?;
    let mut arena = AlignedBytes::zeroed(model.arena_size());
    let total_macs: u64 = model.ops().flatten().map(|op| op.macs()).sum();
    for _ in 0..args.warmup {
        prepared
            .run(arena.as_mut_slice())
            .context("inference failed")?;
    }
    let mut times = Vec::with_capacity(args.runs as usize);
    for _ in 0..args.runs {
        let start = Instant::now();
        prepared
            .run(arena.as_mut_slice())
            .context("inference failed")?;
        times.push(start.elapsed());
    }
    times.sort();
    let (p10, p50, p90, p99) = (
        percentile(&times, 10.0),
        percentile(&times, 50.0),
        percentile(&times, 90.0),
        percentile(&times, 99.0),
    );
    let macs_per_s = total_macs as f64 / p50.as_secs_f64().max(1e-12);
    let host_kernels = ember_runtime::kernels::host_simd::describe();

    let mut profile = Vec::new();
    if args.profile {
        let mut profiler = Profiler {
            started: Instant::now(),
            per_op: model
                .ops()
                .flatten()
                .map(|op| (op.name(), op.variant_name(), Duration::ZERO))
                .collect(),
        };
        for _ in 0..args.runs {
            prepared
                .run_observed(arena.as_mut_slice(), &mut profiler)
                .context("inference failed")?;
        }
        profile = profiler.per_op;
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    if args.json {
        let ops: Vec<_> = profile
            .iter()
            .enumerate()
            .map(|(i, (name, variant, total))| {
                json!({"index": i, "op": name, "kernel": variant, "mean_us": us(*total) / args.runs as f64})
            })
            .collect();
        let doc = json!({
            "runs": args.runs, "warmup": args.warmup,
            "min_us": us(times[0]), "p10_us": us(p10),
            "p50_us": us(p50), "p90_us": us(p90), "p99_us": us(p99),
            "macs": total_macs, "macs_per_s": macs_per_s,
            "host_kernels": host_kernels, "packed_weight_bytes": prepared.packed_bytes(),
            "profile": ops,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!(
        "{}: {} runs after {} warmup",
        args.model.display(),
        args.runs,
        args.warmup
    );
    println!(
        "latency  p50 {:.1} us  p90 {:.1} us  p99 {:.1} us",
        us(p50),
        us(p90),
        us(p99)
    );
    println!(
        "MACs     {total_macs} per inference, {:.1} MMAC/s at p50",
        macs_per_s / 1e6
    );
    match prepared.packed_bytes() {
        0 => println!("kernels  {host_kernels}"),
        packed => println!(
            "kernels  {host_kernels}, {:.1} KB of weights packed for them at load",
            packed as f64 / 1024.0
        ),
    }
    if !profile.is_empty() {
        let total: f64 = profile.iter().map(|p| us(p.2)).sum();
        println!();
        println!(
            "{:>3}  {:<18} {:<24} {:>10} {:>6}",
            "#", "op", "kernel", "mean us", "%"
        );
        for (i, (name, variant, t)) in profile.iter().enumerate() {
            let mean = us(*t) / args.runs as f64;
            println!(
                "{i:>3}  {name:<18} {variant:<24} {mean:>10.2} {:>5.1}%",
                100.0 * us(*t) / total.max(1e-12)
            );
        }
    }
    Ok(())
}
