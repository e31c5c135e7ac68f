//! `ember bench --board`: builds the board's benchmark firmware with the model embedded, runs it
//! on the board's emulator and reports instructions per inference, memory and code size.
//!
//! The firmware (`boards/<board>/src/bin/bench.rs`, binary `ember-qemu-bench`) prints plain
//! `key=value` lines over semihosting; [`parse_firmware_output`] reads them. Everything that
//! needs a tool (cargo for the cross build, QEMU, `arm-none-eabi-nm`) is checked first and named
//! with the package that provides it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use ember_runtime::host::AlignedBytes;
use ember_runtime::Model;
use serde_json::json;

/// The benchmark binary every board crate that supports `ember bench --board` provides.
pub const BENCH_BIN: &str = "ember-qemu-bench";

/// What `ember bench --board` was asked to do.
#[derive(Debug)]
pub struct Request<'a> {
    pub model: &'a Path,
    pub board: &'a str,
    pub board_dir: Option<&'a Path>,
    pub target_dir: Option<&'a Path>,
    pub timeout: Duration,
    /// Board crate features for the build, and whether to drop its defaults.
    pub features: Option<&'a str>,
    pub no_default_features: bool,
    pub profile: bool,
    pub json: bool,
}

/// A board crate, described by its `board.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Board {
    pub name: String,
    pub dir: PathBuf,
    pub target: String,
    /// The emulator command line from `[runner] qemu`, without the kernel.
    pub runner: Vec<String>,
}

/// Finds the board crate: `--board-dir`, else `boards/<name>` in the current directory or one
/// above it, else in the repository this `ember` was built from.
pub fn locate_board(name: &str, board_dir: Option<&Path>) -> anyhow::Result<Board> {
    if let Some(dir) = board_dir {
        return read_board(dir, name);
    }
    let mut candidates = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        candidates.extend(cwd.ancestors().map(|dir| dir.join("boards").join(name)));
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../boards")
            .join(name),
    );
    match candidates
        .iter()
        .find(|dir| dir.join("board.toml").is_file())
    {
        Some(dir) => read_board(dir, name),
        None => bail!(
            "cannot find the board crate for {name}: no boards/{name}/board.toml in the current \
directory, its parents, or {}; run ember from the ember repository or pass --board-dir",
            candidates
                .last()
                .map(|dir| dir.display().to_string())
                .unwrap_or_default()
        ),
    }
}

/// Reads `dir/board.toml` and checks it describes board `name` with an emulator runner.
pub fn read_board(dir: &Path, name: &str) -> anyhow::Result<Board> {
    let manifest = dir.join("board.toml");
    let text = std::fs::read_to_string(&manifest).with_context(|| {
        format!(
            "{} is not a board crate: cannot read {} (pass the directory that holds board.toml, \
e.g. boards/{name})",
            dir.display(),
            manifest.display()
        )
    })?;
    let values = parse_board_toml(&text);
    let get = |key: &str| {
        values
            .get(key)
            .cloned()
            .ok_or_else(|| anyhow!("{} has no `{key}`", manifest.display()))
    };
    let found = get("board.name")?;
    if found != name {
        bail!("{} describes board {found}, not {name}", manifest.display());
    }
    if !dir.join("src/bin/bench.rs").is_file() {
        bail!(
            "board {name} has no benchmark firmware ({} is missing)",
            dir.join("src/bin/bench.rs").display()
        );
    }
    let runner: Vec<String> = get("runner.qemu")
        .with_context(|| format!("board {name} cannot be emulated"))?
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    // Counts are instructions only when time follows instructions one to one.
    if !runner
        .windows(2)
        .any(|w| w[0] == "-icount" && w[1] == "shift=0")
    {
        bail!(
            "{}: the [runner] qemu command lacks `-icount shift=0`, so SysTick would not count instructions",
            manifest.display()
        );
    }
    Ok(Board {
        name: found,
        dir: dir.to_path_buf(),
        target: get("board.target")?,
        runner,
    })
}

/// The `key = "string"` entries of a board.toml as `section.key` (the subset board.toml uses).
fn parse_board_toml(text: &str) -> BTreeMap<String, String> {
    let mut section = String::new();
    let mut values = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_owned();
            continue;
        }
        let Some((key, rest)) = line.split_once('=') else {
            continue;
        };
        let rest = rest.trim();
        let Some(value) = rest
            .strip_prefix('"')
            .and_then(|r| r.split_once('"'))
            .map(|(v, _)| v)
        else {
            continue;
        };
        values.insert(format!("{section}.{}", key.trim()), value.to_owned());
    }
    values
}

/// How the Cortex-M benchmark gets built.
#[derive(Debug, Clone, PartialEq)]
enum Toolchain {
    /// rustup's toolchain with the target installed.
    Rustup,
    /// Debian's rustc/cargo building `core` from source (`-Z build-std`, `RUSTC_BOOTSTRAP=1`).
    DebianBuildStd,
}

fn command_exists(program: &str) -> bool {
    Process::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn pick_toolchain(board: &Board) -> anyhow::Result<Toolchain> {
    let installed = Process::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(&board.dir)
        .output();
    if let Ok(out) = installed {
        if String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|t| t.trim() == board.target)
        {
            return Ok(Toolchain::Rustup);
        }
    }
    let debian_sources = Path::new("/usr/lib/rustlib/src/rust/library/core");
    if Path::new("/usr/bin/rustc").is_file()
        && Path::new("/usr/bin/cargo").is_file()
        && debian_sources.is_dir()
    {
        return Ok(Toolchain::DebianBuildStd);
    }
    bail!(
        "no Rust toolchain for {target}: install the target with `rustup target add {target}`, or \
on Debian/Ubuntu `sudo apt-get install rustc-web cargo-web rust-web-src` (ember then builds core \
with -Z build-std)",
        target = board.target
    )
}

/// Cargo feature selection for the board crate.
#[derive(Debug, Clone, Copy, Default)]
struct Features<'a> {
    list: Option<&'a str>,
    no_default: bool,
}

/// Builds the benchmark with `model` embedded and returns the ELF's path.
fn build_firmware(
    board: &Board,
    model: &Path,
    target_dir: &Path,
    features: Features<'_>,
) -> anyhow::Result<PathBuf> {
    let toolchain = pick_toolchain(board)?;
    if !command_exists("arm-none-eabi-gcc") {
        bail!(
            "arm-none-eabi-gcc (the board's linker) is not installed: sudo apt-get install gcc-arm-none-eabi"
        );
    }
    let mut cargo = match toolchain {
        Toolchain::Rustup => Process::new("cargo"),
        Toolchain::DebianBuildStd => {
            let mut cargo = Process::new("/usr/bin/cargo");
            cargo
                .env("RUSTC", "/usr/bin/rustc")
                .env("RUSTC_BOOTSTRAP", "1");
            cargo
        }
    };
    cargo.arg("build");
    if toolchain == Toolchain::DebianBuildStd {
        cargo.arg("-Z").arg("build-std=core");
    }
    if features.no_default {
        cargo.arg("--no-default-features");
    }
    if let Some(list) = features.list {
        cargo.args(["--features", list]);
    }
    cargo
        .args(["--release", "--target", &board.target, "--bin", BENCH_BIN])
        .current_dir(&board.dir)
        .env("CARGO_TARGET_DIR", target_dir)
        .env("EMBER_BENCH_MODEL", model)
        .stdout(Stdio::from(std::io::stderr()));
    eprintln!(
        "building {BENCH_BIN} for {} with {} embedded (release, {}; the first build takes minutes)",
        board.name,
        model.display(),
        match toolchain {
            Toolchain::Rustup => "rustup toolchain",
            Toolchain::DebianBuildStd => "Debian rustc with -Z build-std=core",
        }
    );
    let status = cargo
        .status()
        .context("cannot run cargo to build the benchmark firmware")?;
    if !status.success() {
        bail!(
            "building the {} benchmark firmware failed ({status})",
            board.name
        );
    }
    let elf = target_dir
        .join(&board.target)
        .join("release")
        .join(BENCH_BIN);
    if !elf.is_file() {
        bail!("the build succeeded but {} is missing", elf.display());
    }
    Ok(elf)
}

/// Runs the ELF on the board's emulator and returns what the firmware printed.
fn run_emulator(board: &Board, elf: &Path, timeout: Duration) -> anyhow::Result<String> {
    let Some((program, args)) = board.runner.split_first() else {
        bail!("board {} has an empty [runner] qemu command", board.name);
    };
    if !command_exists(program) {
        bail!("{program} is not installed: sudo apt-get install qemu-system-arm");
    }
    eprintln!("running on {program} (-icount shift=0)");
    let mut command = Process::new(program);
    crate::device::stop_with_parent(&mut command);
    let mut child = command
        .args(args)
        .args(["-monitor", "none", "-serial", "null", "-kernel"])
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut stream| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            text
        })
    })
    .collect();
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for the emulator")? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output: String = readers
        .into_iter()
        .map(|reader| reader.join().unwrap_or_default())
        .collect();
    match status {
        None => bail!(
            "the emulator did not finish within {} s (raise --timeout); it printed:\n{}",
            timeout.as_secs(),
            tail(&output, 20)
        ),
        Some(status) if !status.success() => bail!(
            "the benchmark failed on the emulator ({status}); it printed:\n{}",
            tail(&output, 20)
        ),
        Some(_) => Ok(output),
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One operator's count from the profiled run.
#[derive(Debug, Clone, PartialEq)]
pub struct OpCount {
    pub index: usize,
    pub name: String,
    pub kernel: String,
    /// As measured: SysTick ticks x 40, observer window included.
    pub raw_instructions: u64,
}

/// Stack high-water marks, bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StackMark {
    pub max: u64,
    pub setup: u64,
    pub inference: u64,
}

/// Everything the benchmark firmware reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FirmwareReport {
    pub model_bytes: u64,
    pub arena_bytes: u64,
    pub ops: usize,
    pub inputs: Vec<Vec<u8>>,
    pub outputs: Vec<Vec<u8>>,
    pub instructions_per_inference: u64,
    pub stack: StackMark,
    pub profile: Vec<OpCount>,
    /// Instructions one empty observer window measures (averaged over many).
    pub window_overhead: u64,
    /// The profiled run's total, observer included.
    pub profiled_run_instructions: u64,
}

/// `key=value` pairs of a line (values end at whitespace or `;`/`,`/`)`).
fn fields(line: &str) -> BTreeMap<&str, &str> {
    line.split_whitespace()
        .filter_map(|word| word.split_once('='))
        .map(|(k, v)| (k, v.trim_end_matches([';', ',', ')'])))
        .collect()
}

fn number(fields: &BTreeMap<&str, &str>, key: &str, line: &str) -> anyhow::Result<u64> {
    fields
        .get(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no number `{key}=` in the firmware line `{line}`"))
}

fn hex_bytes(hex: &str) -> anyhow::Result<Vec<u8>> {
    let hex = hex.trim();
    if !hex.len().is_multiple_of(2) {
        bail!("odd-length hex from the firmware");
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| anyhow!("bad hex from the firmware"))
        })
        .collect()
}

/// `prefix[<i>]=<rest>`: the index and the rest.
fn indexed<'l>(line: &'l str, prefix: &str) -> Option<(usize, &'l str)> {
    let rest = line.strip_prefix(prefix)?.strip_prefix('[')?;
    let (index, rest) = rest.split_once(']')?;
    Some((index.parse().ok()?, rest))
}

/// Reads the benchmark firmware's output (see `boards/qemu-mps2-an386/src/bin/bench.rs`).
pub fn parse_firmware_output(text: &str) -> anyhow::Result<FirmwareReport> {
    let mut report = FirmwareReport::default();
    let (mut header, mut count, mut stack, mut calibration, mut done) =
        (false, false, false, false, false);
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        let kv = fields(line);
        if line.starts_with("ember-bench model_bytes=") {
            report.model_bytes = number(&kv, "model_bytes", line)?;
            report.arena_bytes = number(&kv, "arena_bytes", line)?;
            report.ops = number(&kv, "ops", line)? as usize;
            header = true;
        } else if line == "ember-bench done" {
            done = true;
        } else if let Some(message) = line.strip_prefix("ember-bench: ") {
            bail!("the benchmark firmware reported: {message}");
        } else if let Some(message) = line.strip_prefix("ember: panic: ") {
            bail!("the benchmark firmware panicked: {message}");
        } else if let Some((index, rest)) = indexed(line, "input") {
            if index != report.inputs.len() {
                bail!("firmware input lines out of order at input[{index}]");
            }
            report.inputs.push(hex_bytes(rest.trim_start_matches('='))?);
        } else if let Some((index, rest)) = indexed(line, "output") {
            if index != report.outputs.len() {
                bail!("firmware output lines out of order at output[{index}]");
            }
            report
                .outputs
                .push(hex_bytes(rest.trim_start_matches('='))?);
        } else if let Some(value) = line.strip_prefix("instructions_per_inference=") {
            report.instructions_per_inference = value
                .trim()
                .parse()
                .with_context(|| format!("bad count in `{line}`"))?;
            count = true;
        } else if let Some(rest) = line.strip_prefix("stack high-water mark: ") {
            // `<max> bytes (load and setup: <n>, inference: <n>); arena: <n> bytes`
            let numbers: Vec<u64> = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            let [max, setup, inference, ..] = numbers[..] else {
                bail!("cannot read the stack line `{line}`");
            };
            report.stack = StackMark {
                max,
                setup,
                inference,
            };
            stack = true;
        } else if let Some((index, _)) = indexed(line, "op") {
            if index != report.profile.len() {
                bail!("firmware profile lines out of order at op[{index}]");
            }
            let name = kv.get("name").copied().unwrap_or_default().to_owned();
            let kernel = kv.get("kernel").copied().unwrap_or_default().to_owned();
            report.profile.push(OpCount {
                index,
                name,
                kernel,
                raw_instructions: number(&kv, "instructions", line)?,
            });
        } else if line.starts_with("profile window_overhead_instructions=") {
            report.window_overhead = number(&kv, "window_overhead_instructions", line)?;
            report.profiled_run_instructions = number(&kv, "run_instructions", line)?;
            calibration = true;
        }
    }
    let missing: Vec<&str> = [
        (header, "the `ember-bench model_bytes=` header"),
        (count, "instructions_per_inference"),
        (stack, "the stack high-water mark"),
        (calibration, "the profile calibration line"),
        (done, "`ember-bench done`"),
    ]
    .into_iter()
    .filter(|(seen, _)| !seen)
    .map(|(_, what)| what)
    .collect();
    if !missing.is_empty() {
        bail!(
            "the firmware output lacks {} (is the board's bench binary older than this ember?); it printed:\n{}",
            missing.join(", "),
            tail(text, 20)
        );
    }
    if report.profile.len() != report.ops.min(1024) {
        bail!(
            "the firmware profiled {} of {} operators",
            report.profile.len(),
            report.ops
        );
    }
    Ok(report)
}

/// Code bytes of the benchmark ELF by owner, from `arm-none-eabi-nm --print-size -C`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CodeSize {
    /// Every function symbol's size (all of the firmware's code, the model excluded).
    pub total: u64,
    /// Functions whose demangled name mentions `ember_runtime::` (loader, interpreter, kernels).
    pub runtime: u64,
    /// The part of `runtime` under `ember_runtime::kernels::`.
    pub runtime_kernels: u64,
}

/// Sums text symbols from `nm --print-size --radix=d -C` output lines
/// (`<address> <size> <type> <name>`); `t`/`T` are functions.
pub fn code_size_from_nm(nm_output: &str) -> CodeSize {
    let mut size = CodeSize::default();
    for line in nm_output.lines() {
        let mut parts = line.splitn(4, ' ');
        let (Some(_address), Some(bytes), Some(kind), Some(name)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (Ok(bytes), "t" | "T") = (bytes.parse::<u64>(), kind) else {
            continue;
        };
        size.total += bytes;
        if name.contains("ember_runtime::") {
            size.runtime += bytes;
            if name.contains("ember_runtime::kernels::") {
                size.runtime_kernels += bytes;
            }
        }
    }
    size
}

fn code_size(elf: &Path) -> anyhow::Result<CodeSize> {
    let out = Process::new("arm-none-eabi-nm")
        .args(["--print-size", "--radix=d", "-C"])
        .arg(elf)
        .output()
        .context(
            "cannot run arm-none-eabi-nm for the code size: sudo apt-get install binutils-arm-none-eabi",
        )?;
    if !out.status.success() {
        bail!(
            "arm-none-eabi-nm failed on {}: {}",
            elf.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(code_size_from_nm(&String::from_utf8_lossy(&out.stdout)))
}

/// Runs the model on the host with the firmware's inputs and compares the outputs.
fn host_matches(model_bytes: &[u8], report: &FirmwareReport) -> anyhow::Result<()> {
    let model = Model::load(model_bytes)?;
    let mut arena = AlignedBytes::zeroed(model.arena_size());
    if report.inputs.len() != model.inputs().len() || report.outputs.len() != model.outputs().len()
    {
        bail!(
            "the firmware printed {} inputs and {} outputs; the model has {} and {}",
            report.inputs.len(),
            report.outputs.len(),
            model.inputs().len(),
            model.outputs().len()
        );
    }
    for (index, bytes) in report.inputs.iter().enumerate() {
        let input = model.input_mut(arena.as_mut_slice(), index)?;
        if input.len() != bytes.len() {
            bail!(
                "firmware input {index} has {} bytes, the model wants {}",
                bytes.len(),
                input.len()
            );
        }
        input.copy_from_slice(bytes);
    }
    model
        .run(arena.as_mut_slice())
        .context("host inference failed")?;
    for (index, device) in report.outputs.iter().enumerate() {
        let host = model.output(arena.as_slice(), index)?;
        if host != device.as_slice() {
            bail!(
                "output {index} on the board differs from the host runtime (not bit-exact):\n  board: {}\n  host:  {}",
                hex(device),
                hex(host)
            );
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One operator's count with the observer window subtracted.
fn net_instructions(op: &OpCount, window_overhead: u64) -> u64 {
    op.raw_instructions.saturating_sub(window_overhead)
}

/// The report as JSON (`ember bench --board ... --json`).
pub fn report_json(
    board: &Board,
    model: &Path,
    elf: &Path,
    report: &FirmwareReport,
    code: &CodeSize,
    profile: bool,
) -> serde_json::Value {
    let mut doc = json!({
        "board": board.name,
        "model": model.display().to_string(),
        "elf": elf.display().to_string(),
        "instructions_per_inference": report.instructions_per_inference,
        "arena_bytes": report.arena_bytes,
        "stack_bytes": report.stack.max,
        "stack_setup_bytes": report.stack.setup,
        "stack_inference_bytes": report.stack.inference,
        "model_bytes": report.model_bytes,
        "code_bytes": code.total,
        "runtime_code_bytes": code.runtime,
        "runtime_kernel_code_bytes": code.runtime_kernels,
        "ops": report.ops,
        "bit_exact_with_host": true,
        "inputs": report.inputs.iter().map(|b| hex(b)).collect::<Vec<_>>(),
        "outputs": report.outputs.iter().map(|b| hex(b)).collect::<Vec<_>>(),
    });
    if profile {
        let total = report.instructions_per_inference.max(1) as f64;
        let ops: Vec<_> = report
            .profile
            .iter()
            .map(|op| {
                let net = net_instructions(op, report.window_overhead);
                json!({
                    "index": op.index, "op": op.name, "kernel": op.kernel,
                    "instructions": net, "share": net as f64 / total,
                })
            })
            .collect();
        doc["profile"] = json!(ops);
        doc["profile_window_overhead_instructions"] = json!(report.window_overhead);
        doc["profile_unattributed_instructions"] = json!(unattributed(report));
        doc["profiled_run_instructions"] = json!(report.profiled_run_instructions);
    }
    doc
}

/// Instructions of the profiled run outside every operator window (op decoding, the loop, the
/// observer's bookkeeping), signed because each count is only good to 40 instructions.
fn unattributed(report: &FirmwareReport) -> i64 {
    let windows: u64 = report.profile.iter().map(|op| op.raw_instructions).sum();
    report.profiled_run_instructions as i64 - windows as i64
}

/// The report as text (`ember bench --board ...`).
pub fn report_text(
    board: &Board,
    model: &Path,
    report: &FirmwareReport,
    code: &CodeSize,
    profile: bool,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} on {} (QEMU -icount shift=0, bit-exact with the host)",
        model.display(),
        board.name
    );
    let rows = [
        (
            "instructions per inference",
            report.instructions_per_inference,
        ),
        ("arena bytes", report.arena_bytes),
        ("stack bytes (high-water)", report.stack.max),
        ("model bytes", report.model_bytes),
        ("runtime code bytes", code.runtime),
        ("  of which kernels", code.runtime_kernels),
        ("firmware code bytes (all)", code.total),
    ];
    for (what, value) in rows {
        let _ = writeln!(out, "{what:<28} {value:>12}");
    }
    if profile {
        let total = report.instructions_per_inference.max(1) as f64;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:>3}  {:<22} {:<24} {:>12} {:>6}",
            "#", "op", "kernel", "instructions", "share"
        );
        for op in &report.profile {
            let net = net_instructions(op, report.window_overhead);
            let _ = writeln!(
                out,
                "{:>3}  {:<22} {:<24} {:>12} {:>5.1}%",
                op.index,
                op.name,
                op.kernel,
                net,
                100.0 * net as f64 / total
            );
        }
        let _ = writeln!(
            out,
            "per-op counts: SysTick resolution 40 instructions; {} instructions of observer \
overhead subtracted per op; the profiled run took {} instructions, {} of them outside the \
operators (op decoding, the loop, the observer)",
            report.window_overhead,
            report.profiled_run_instructions,
            unattributed(report)
        );
    }
    out
}

/// `ember bench MODEL --board NAME`.
pub fn run(request: Request<'_>) -> anyhow::Result<()> {
    let board = locate_board(request.board, request.board_dir)?;
    let model_path = std::fs::canonicalize(request.model)
        .with_context(|| format!("cannot read {}", request.model.display()))?;
    // Rejects a bad model here rather than after a firmware build.
    let aligned = crate::inspect::load_file(&model_path)?;
    let target_dir = match request.target_dir {
        Some(dir) => dir.to_path_buf(),
        None => board.dir.join("target"),
    };
    let features = Features {
        list: request.features,
        no_default: request.no_default_features,
    };
    let elf = build_firmware(&board, &model_path, &target_dir, features)?;
    let output = run_emulator(&board, &elf, request.timeout)?;
    let report = parse_firmware_output(&output)?;
    if report.model_bytes != aligned.len() as u64 {
        bail!(
            "the firmware embedded {} model bytes, {} has {} (stale build?)",
            report.model_bytes,
            model_path.display(),
            aligned.len()
        );
    }
    host_matches(aligned.as_slice(), &report)?;
    let code = code_size(&elf)?;
    if request.json {
        let doc = report_json(&board, &model_path, &elf, &report, &code, request.profile);
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!(
            "{}",
            report_text(&board, request.model, &report, &code, request.profile)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output of the benchmark firmware as the QEMU board prints it (shortened hex).
    const CAPTURED: &str = "ember-bench model_bytes=31088 arena_bytes=16000 ops=3\r
input[0]=3c0a\r
output[0]=80017f\r
instructions_per_inference=8880480\r
stack high-water mark: 8356 bytes (load and setup: 3372, inference: 8356); arena: 16000 bytes\r
op[0] name=CONV_2D kernel=Conv2dS8 instructions=6000040\r
op[1] name=AVERAGE_POOL_2D kernel=AvgPool2dS8 instructions=80\r
op[2] name=SOFTMAX kernel=SoftmaxS8 instructions=2880000\r
profile window_overhead_instructions=20 calibration_windows=400 calibration_ticks=200 run_instructions=8881000\r
ember-bench done\r
";

    #[test]
    fn parses_captured_firmware_output() {
        let report = parse_firmware_output(CAPTURED).unwrap();
        assert_eq!(report.model_bytes, 31088);
        assert_eq!(report.arena_bytes, 16000);
        assert_eq!(report.ops, 3);
        assert_eq!(report.inputs, vec![vec![0x3c, 0x0a]]);
        assert_eq!(report.outputs, vec![vec![0x80, 0x01, 0x7f]]);
        assert_eq!(report.instructions_per_inference, 8_880_480);
        assert_eq!(
            report.stack,
            StackMark {
                max: 8356,
                setup: 3372,
                inference: 8356
            }
        );
        assert_eq!(report.window_overhead, 20);
        assert_eq!(report.profile[2].name, "SOFTMAX");
        assert_eq!(report.profile[2].kernel, "SoftmaxS8");
        assert_eq!(report.profile[1].raw_instructions, 80);
        assert_eq!(report.profiled_run_instructions, 8_881_000);
        // 8,881,000 - (6,000,040 + 80 + 2,880,000)
        assert_eq!(unattributed(&report), 880);
    }

    #[test]
    fn firmware_errors_and_truncated_runs_are_reported() {
        let err = parse_firmware_output(
            "ember-bench: model needs a 600000 byte arena, the bench has 524288\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("600000 byte arena"), "{err}");

        let err = parse_firmware_output("ember: panic: index out of bounds\n").unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");

        let cut = CAPTURED.replace("ember-bench done\r\n", "");
        let err = parse_firmware_output(&cut).unwrap_err();
        assert!(err.to_string().contains("ember-bench done"), "{err}");

        let missing_op = CAPTURED.replace(
            "op[1] name=AVERAGE_POOL_2D kernel=AvgPool2dS8 instructions=80\r\n",
            "",
        );
        assert!(parse_firmware_output(&missing_op).is_err());

        let bad_hex = CAPTURED.replace("output[0]=80017f", "output[0]=8g");
        assert!(parse_firmware_output(&bad_hex).is_err());
    }

    #[test]
    fn text_report_has_every_number_and_the_profile() {
        let report = parse_firmware_output(CAPTURED).unwrap();
        let board = Board {
            name: "qemu-mps2-an386".into(),
            dir: PathBuf::from("boards/qemu-mps2-an386"),
            target: "thumbv7em-none-eabihf".into(),
            runner: vec![],
        };
        let code = CodeSize {
            total: 100_000,
            runtime: 60_000,
            runtime_kernels: 40_000,
        };
        let text = report_text(&board, Path::new("kws.emb"), &report, &code, true);
        for needle in [
            "8880480", "16000", "8356", "31088", "60000", "CONV_2D", "67.6%",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
        let doc = report_json(
            &board,
            Path::new("kws.emb"),
            Path::new("x.elf"),
            &report,
            &code,
            true,
        );
        assert_eq!(doc["instructions_per_inference"], 8_880_480);
        assert_eq!(doc["profile"][0]["instructions"], 6_000_020);
        assert_eq!(doc["runtime_code_bytes"], 60_000);
        assert_eq!(doc["outputs"][0], "80017f");
        let without = report_json(
            &board,
            Path::new("kws.emb"),
            Path::new("x.elf"),
            &report,
            &code,
            false,
        );
        assert!(without.get("profile").is_none());
    }

    #[test]
    fn code_size_counts_functions_by_owner() {
        let nm = "\
0000001024 0000000400 T ember_runtime::kernels::dsp::conv::conv2d_s8_dsp
0000002048 0000000100 t <ember_runtime::ops::Op as postcard::Deserialize>::deserialize
0000003000 0000000050 T main
0000004000 0000009999 R ember_qemu_bench::MODEL
0000005000 0000000007 t core::fmt::write
00000060 a stray line
";
        let size = code_size_from_nm(nm);
        assert_eq!(
            size,
            CodeSize {
                total: 557,
                runtime: 500,
                runtime_kernels: 400
            }
        );
    }

    #[test]
    fn board_toml_is_read_and_checked() {
        let dir = std::env::temp_dir().join(format!("ember-board-toml-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src/bin")).unwrap();
        std::fs::write(dir.join("src/bin/bench.rs"), "").unwrap();
        let toml = "[board]\nname = \"qemu-x\"   # comment\ntarget = \"thumbv7em-none-eabihf\"\n\
[runner]\nqemu = \"qemu-system-arm -M mps2-an386 -icount shift=0\"\n";
        std::fs::write(dir.join("board.toml"), toml).unwrap();
        let board = read_board(&dir, "qemu-x").unwrap();
        assert_eq!(board.target, "thumbv7em-none-eabihf");
        assert_eq!(board.runner[0], "qemu-system-arm");

        let err = read_board(&dir, "other").unwrap_err();
        assert!(err.to_string().contains("not other"), "{err}");

        std::fs::write(dir.join("board.toml"), toml.replace(" -icount shift=0", "")).unwrap();
        let err = read_board(&dir, "qemu-x").unwrap_err();
        assert!(err.to_string().contains("-icount shift=0"), "{err}");

        let err = read_board(&dir.join("nope"), "qemu-x").unwrap_err();
        assert!(err.to_string().contains("not a board crate"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
