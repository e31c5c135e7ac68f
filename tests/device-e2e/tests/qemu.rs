//! The device end to end: the real firmware in QEMU mps2-an386, the host through the
//! `serialport` crate on QEMU's UART PTY, and at least 100 faults injected: damaged frames both
//! ways during info/infer/upload, truncated and abandoned uploads, a host killed mid-upload,
//! a model too big for the slot, well-framed malformed models and garbage at boot. After every
//! fault the device must answer `info` with the model it ran before, and every failure the
//! host reports must be a typed `LinkError` whose message names what went wrong.
//!
//! `harness = false`: one scenario on one emulator. The binary is also the child process of
//! the "host killed mid-upload" faults (see [`CHILD_PORT_ENV`]).
//!
//! Ignored unless run with `--ignored`/`--include-ignored` or EMBER_DEVICE_E2E=1
//! (scripts/firmware/test-qemu.sh does), so the host workspace's `cargo test` boots no emulator.
//! Environment: EMBER_SKIP_QEMU=1 skips (passing) when qemu-system-arm is missing;
//! EMBER_E2E_SEED picks the fault pattern (printed on every run); EMBER_SHARED_DIR points at
//! the shared models; EMBER_FIRMWARE_ELF overrides the firmware image.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use ember_convert::{convert, ConvertOptions};
use ember_device_e2e::qemu::{firmware_elf, qemu_installed};
use ember_device_e2e::{Fault, FaultControl, FaultyTransport, Qemu, Rng, SerialTransport};
use ember_link::{BoardInfo, Link, LinkConfig, LinkError};
use ember_protocol::{DeviceError, MAX_CHUNK};
use ember_runtime::crc32::crc32;
use ember_runtime::host::{run_once, AlignedBytes};
use ember_runtime::Model;

/// Set (to the PTY path) when this binary runs as the host that gets killed mid-upload.
const CHILD_PORT_ENV: &str = "EMBER_E2E_CHILD_PORT";
/// The .emb the child uploads.
const CHILD_MODEL_ENV: &str = "EMBER_E2E_CHILD_MODEL";
const MIN_FAULTS: u32 = 100;

type FaultyLink = Link<FaultyTransport<SerialTransport>>;

/// Patient enough for QEMU's ~10 KB/s UART on a busy machine, short enough that the faults
/// which cost a timeout (dropped and truncated frames) keep the run fast.
fn link_config() -> LinkConfig {
    LinkConfig {
        baud: Some(115_200),
        base_timeout: Duration::from_millis(300),
        per_kib_timeout: Duration::from_millis(20),
        attempts: 8,
    }
}

/// A converted model and its upload hash.
#[derive(Debug, Clone)]
struct Emb {
    name: &'static str,
    bytes: Vec<u8>,
    hash: u32,
}

impl Emb {
    fn new(name: &'static str, bytes: Vec<u8>) -> Self {
        Emb {
            name,
            hash: crc32(&bytes),
            bytes,
        }
    }

    /// The host runtime's outputs (concatenated) for one input buffer.
    fn host_output(&self, input: &[u8]) -> Vec<u8> {
        let aligned = AlignedBytes::from_slice(&self.bytes);
        let model = Model::load(aligned.as_slice())
            .unwrap_or_else(|e| panic!("{}: host cannot load the model: {e}", self.name));
        let mut inputs = Vec::new();
        let mut rest = input;
        for tensor in model.inputs() {
            let len = tensor.byte_len().expect("input size fits usize");
            let (head, tail) = rest.split_at(len);
            inputs.push(head);
            rest = tail;
        }
        run_once(&model, &inputs)
            .unwrap_or_else(|e| panic!("{}: host inference failed: {e}", self.name))
            .concat()
    }

    fn input_len(&self) -> usize {
        let aligned = AlignedBytes::from_slice(&self.bytes);
        let model = Model::load(aligned.as_slice()).expect("model loads on the host");
        model
            .inputs()
            .iter()
            .map(|t| t.byte_len().expect("input size fits usize"))
            .sum()
    }
}

fn shared_dir() -> PathBuf {
    std::env::var_os("EMBER_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

fn convert_shared(file: &str, options: &ConvertOptions) -> Vec<u8> {
    let path = shared_dir().join("models").join(file);
    let tflite = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}); set EMBER_SHARED_DIR to the shared data folder",
            path.display()
        )
    });
    convert(&tflite, options).unwrap_or_else(|e| panic!("converting {file}: {e}"))
}

/// Fails unless `err`'s message says which request failed and why, in words.
fn assert_clear(err: &LinkError, request: &str, why: &str) {
    let text = err.to_string();
    assert!(
        text.contains(request) && text.contains(why),
        "the error should name {request:?} and say {why:?}, it says: {text}"
    );
    println!("       host error: {text}");
}

/// The scenario's state: one link to one emulated device.
struct Scenario {
    link: Option<FaultyLink>,
    port: String,
    /// Hash of the model the device must be running (`None`: no model yet).
    expected: Option<u32>,
    models: Vec<Emb>,
    rng: Rng,
    tally: BTreeMap<String, u32>,
    checks: u32,
    /// Requests the host had to resend, over every link this scenario used.
    resends: u32,
    faults: FaultControl,
    /// The link's current configuration.
    config: LinkConfig,
    started: Instant,
}

impl Scenario {
    fn link(&mut self) -> &mut FaultyLink {
        self.link
            .as_mut()
            .expect("the link is only taken inside relink")
    }

    /// Replaces the link (same transport) by one with `config`.
    fn relink(&mut self, config: LinkConfig) {
        self.relink_with(config, |_| {});
    }

    /// Replaces the link, doing `between` to the bare transport.
    fn relink_with(
        &mut self,
        config: LinkConfig,
        between: impl FnOnce(&mut FaultyTransport<SerialTransport>),
    ) {
        let link = self.link.take().expect("link present");
        self.config = config;
        self.resends += link.retries();
        let mut transport = link.into_inner();
        between(&mut transport);
        self.link = Some(Link::new(transport, config));
    }

    /// Lets replies still in flight (answers to resends) land, and drops them: an impatient
    /// link counts a stale broken frame as its one failed attempt.
    fn settle(&mut self) {
        std::thread::sleep(Duration::from_millis(100));
        let config = self.config;
        self.relink_with(config, |t| {
            let _ = t.inner_mut().discard_input();
        });
    }

    fn model(&self, name: &str) -> Emb {
        self.models
            .iter()
            .find(|m| m.name == name)
            .cloned()
            .expect("known model")
    }

    fn model_by_hash(&self, hash: u32) -> Option<&Emb> {
        self.models.iter().find(|m| m.hash == hash)
    }

    /// Counts `faults` under `category`; at least one must have fired.
    fn count(&mut self, category: &str, faults: &[Fault]) {
        assert!(
            !faults.is_empty(),
            "{category}: the armed fault never fired"
        );
        *self.tally.entry(category.to_string()).or_default() += faults.len() as u32;
    }

    fn total_faults(&self) -> u32 {
        self.tally.values().sum()
    }

    /// The check after every fault: on a clean line the device answers `info` and runs the
    /// model it ran before.
    fn assert_previous_model(&mut self, after: &str) -> BoardInfo {
        self.faults.disarm();
        // Checked with the normal, patient link even where the scenario uses an impatient one.
        let config = self.config;
        self.relink(link_config());
        let answer = self.link().info();
        self.relink(config);
        let info = answer
            .unwrap_or_else(|e| panic!("after {after}: the device does not answer info: {e}"));
        let running = info.model.as_ref().map(|m| m.hash);
        assert_eq!(
            running, self.expected,
            "after {after}: the device runs {running:x?}, expected the previous model {:x?}",
            self.expected
        );
        assert!(!info.fell_back, "after {after}: the device fell back");
        self.checks += 1;
        info
    }

    /// Runs the device's model on random input and requires the host runtime's bytes.
    fn assert_infer_matches_host(&mut self, context: &str) {
        let hash = self.expected.expect("a model runs");
        let model = self.model_by_hash(hash).expect("a known model").clone();
        let input = self.rng.bytes(model.input_len());
        let inference = self
            .link()
            .infer(&input)
            .unwrap_or_else(|e| panic!("{context}: infer failed: {e}"));
        assert_eq!(
            inference.output,
            model.host_output(&input),
            "{context}: {} on the device differs from the host runtime",
            model.name
        );
        self.checks += 1;
    }

    fn flash_clean(&mut self, name: &str) {
        let model = self.model(name);
        let started = Instant::now();
        let report = self
            .link()
            .flash(&model.bytes, |_| {})
            .unwrap_or_else(|e| panic!("flashing {name}: {e}"));
        assert_eq!(report.hash, model.hash);
        self.expected = Some(model.hash);
        println!(
            "  flashed {name} ({} bytes) to slot {} in {:.2} s",
            model.bytes.len(),
            report.slot,
            started.elapsed().as_secs_f64()
        );
        self.assert_previous_model(&format!("flashing {name}"));
    }
}

fn main() -> ExitCode {
    if let Ok(port) = std::env::var(CHILD_PORT_ENV) {
        return child_upload(&port);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("qemu_end_to_end: test");
        return ExitCode::SUCCESS;
    }
    // Like an `#[ignore]`d test: the host workspace's `cargo test` stays free of emulators.
    let opted_in = args
        .iter()
        .any(|a| a == "--ignored" || a == "--include-ignored")
        || std::env::var("EMBER_DEVICE_E2E").is_ok_and(|v| v == "1");
    if !opted_in {
        println!("qemu_end_to_end ... ignored (needs QEMU: run scripts/firmware/test-qemu.sh, or `cargo test -p ember-device-e2e -- --include-ignored`, or set EMBER_DEVICE_E2E=1)");
        return ExitCode::SUCCESS;
    }
    if !qemu_installed() {
        if std::env::var("EMBER_SKIP_QEMU").is_ok_and(|v| v == "1") {
            println!("SKIPPED: qemu-system-arm is not installed (EMBER_SKIP_QEMU=1); device end to end NOT tested");
            return ExitCode::SUCCESS;
        }
        eprintln!("error: qemu-system-arm is not installed; install it (apt-get install qemu-system-arm) or set EMBER_SKIP_QEMU=1 to skip the device end-to-end tests");
        return ExitCode::FAILURE;
    }
    run();
    ExitCode::SUCCESS
}

/// The child: opens the PTY and uploads a model, printing progress, until it is killed.
fn child_upload(port: &str) -> ExitCode {
    let Some(model_path) = std::env::var_os(CHILD_MODEL_ENV) else {
        eprintln!("child: {CHILD_MODEL_ENV} is not set");
        return ExitCode::FAILURE;
    };
    let model = match std::fs::read(&model_path) {
        Ok(model) => model,
        Err(e) => {
            eprintln!("child: cannot read the model: {e}");
            return ExitCode::FAILURE;
        }
    };
    let transport = match SerialTransport::open(port) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("child: cannot open {port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut link = Link::new(transport, link_config());
    let mut stdout = std::io::stdout();
    let result = link.flash(&model, |p| {
        let _ = writeln!(stdout, "sent {}", p.sent);
        let _ = stdout.flush();
    });
    match result {
        Ok(_) => {
            println!("done");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("child: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() {
    let seed = std::env::var("EMBER_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x00e2_e5ee_d5ed_u64);
    println!("device end to end on QEMU mps2-an386, seed {seed} (EMBER_E2E_SEED to replay)");
    let started = Instant::now();
    let mut rng = Rng::new(seed);

    let kws = Emb::new(
        "kws",
        convert_shared("kws_ref_model.tflite", &ConvertOptions::default()),
    );
    let hello_a = Emb::new(
        "hello_world",
        convert_shared("hello_world_int8.tflite", &ConvertOptions::default()),
    );
    // The same network with a label stored: another file, another hash, same outputs.
    let hello_b = Emb::new(
        "hello_world+label",
        convert_shared(
            "hello_world_int8.tflite",
            &ConvertOptions {
                labels: vec!["sine".into()],
                ..ConvertOptions::default()
            },
        ),
    );
    assert_ne!(hello_a.hash, hello_b.hash);

    let elf = firmware_elf().unwrap_or_else(|e| panic!("{e}"));
    // Fault: garbage on the line as the firmware boots, before the first request.
    let mut boot_garbage = rng.bytes(300);
    boot_garbage.extend_from_slice(b"\x7fELF not a frame\x00\x00\xff");
    let (qemu, serial) = Qemu::boot(&elf, &boot_garbage).unwrap_or_else(|e| panic!("{e}"));
    println!("QEMU up, UART0 on {}", qemu.port());
    let (transport, faults) = FaultyTransport::new(serial, seed ^ 0x5eed);
    let mut s = Scenario {
        link: Some(Link::new(transport, link_config())),
        port: qemu.port().to_string(),
        expected: None,
        models: vec![kws, hello_a, hello_b],
        rng,
        tally: BTreeMap::new(),
        checks: 0,
        resends: 0,
        faults,
        config: link_config(),
        started,
    };
    let info = s.assert_previous_model("garbage at boot");
    *s.tally.entry("garbage at boot".into()).or_default() += 1;
    println!(
        "  info: {} firmware {}, slots {:?}",
        info.board, info.firmware_version, info.slots
    );

    println!("clean flow: flash and infer, device output equals the host runtime");
    s.flash_clean("kws");
    for _ in 0..3 {
        s.assert_infer_matches_host("kws");
    }
    s.flash_clean("hello_world");
    for _ in 0..3 {
        s.assert_infer_matches_host("hello_world");
    }
    let _ = &qemu;

    frame_faults_on_info(&mut s);
    frame_faults_on_infer(&mut s);
    frame_faults_during_upload(&mut s);
    surfaced_line_errors(&mut s);
    truncated_uploads(&mut s);
    host_killed_mid_upload(&mut s);
    model_too_big(&mut s);
    malformed_models(&mut s);
    garbage_at_reboot(&mut s);
    random_mix(&mut s);

    println!("clean flow at the end: kws back on the device");
    s.flash_clean("kws");
    s.assert_infer_matches_host("kws after all faults");
    let info = s.assert_previous_model("the last flash");
    assert!(
        info.last_panic.is_none(),
        "the firmware panicked: {:?}",
        info.last_panic
    );

    let total = s.total_faults();
    println!("faults injected, by kind:");
    for (kind, n) in &s.tally {
        println!("  {n:4}  {kind}");
    }
    let resends = s.resends + s.link().retries();
    println!(
        "{total} faults, {} device checks, {resends} link resends, {:.1} s",
        s.checks,
        s.started.elapsed().as_secs_f64()
    );
    assert!(
        total >= MIN_FAULTS,
        "only {total} faults injected, need {MIN_FAULTS}"
    );
    println!("PASS");
}

/// One frame fault on the `Info` request, one damaged reply: the link resends and succeeds.
fn frame_faults_on_info(s: &mut Scenario) {
    println!("line faults on info");
    for round in 0..4 {
        for fault in Fault::FRAME_FAULTS.into_iter().chain(Fault::REPLY_FAULTS) {
            if round >= 2 && Fault::REPLY_FAULTS.contains(&fault) {
                continue;
            }
            let retries = s.link().retries();
            if Fault::REPLY_FAULTS.contains(&fault) {
                s.faults.arm_read(0, fault);
            } else {
                s.faults.arm_write(0, fault);
            }
            let info = s
                .link()
                .info()
                .unwrap_or_else(|e| panic!("info through a {fault}: {e}"));
            let fired = s.faults.take_injected();
            s.count(&format!("{fault} on info"), &fired);
            assert_eq!(info.model.map(|m| m.hash), s.expected);
            let resent = s.link().retries() - retries;
            if fault.forces_resend() {
                assert!(resent > 0, "a {fault} cannot get through without a resend");
            }
            s.assert_previous_model(&format!("a {fault} on info"));
        }
    }
}

/// Frame faults on `Infer`/`ReadOutput`: the outputs still equal the host's.
fn frame_faults_on_infer(s: &mut Scenario) {
    println!("line faults on infer");
    for round in 0..3 {
        for fault in Fault::FRAME_FAULTS.into_iter().chain(Fault::REPLY_FAULTS) {
            if Fault::REPLY_FAULTS.contains(&fault) {
                s.faults.arm_read(0, fault);
            } else {
                s.faults.arm_write(0, fault);
            }
            s.assert_infer_matches_host(&format!("infer through a {fault} (round {round})"));
            let fired = s.faults.take_injected();
            s.count(&format!("{fault} on infer"), &fired);
            s.assert_previous_model(&format!("a {fault} on infer"));
        }
    }
}

/// Frames written by one `flash` of `model`: begin, chunks, commit, the verifying info.
fn flash_writes(model: &Emb) -> u64 {
    2 + model.bytes.len().div_ceil(MAX_CHUNK) as u64 + 1
}

/// One fault at a random step of an upload (alternating two small models): the upload
/// completes, and the device runs the new model bit-exactly.
fn frame_faults_during_upload(s: &mut Scenario) {
    println!("line faults during uploads");
    let names = ["hello_world+label", "hello_world"];
    let faults = Fault::FRAME_FAULTS
        .into_iter()
        .cycle()
        .take(20)
        .chain(Fault::REPLY_FAULTS.into_iter().cycle().take(6));
    for (round, fault) in faults.enumerate() {
        let model = s.model(names[round % 2]);
        let steps = flash_writes(&model);
        let at = s.rng.below(steps as usize) as u64;
        if Fault::REPLY_FAULTS.contains(&fault) {
            s.faults.arm_read(at, fault);
        } else {
            s.faults.arm_write(at, fault);
        }
        let report = s
            .link()
            .flash(&model.bytes, |_| {})
            .unwrap_or_else(|e| panic!("flash {} through a {fault} at step {at}: {e}", model.name));
        assert_eq!(report.hash, model.hash);
        let fired = s.faults.take_injected();
        s.count(&format!("{fault} during upload"), &fired);
        s.expected = Some(model.hash);
        s.assert_previous_model(&format!("a {fault} during an upload"));
        s.assert_infer_matches_host(&format!("{} after an upload with a {fault}", model.name));
    }
}

/// With one attempt per request, a damaged exchange surfaces as a typed timeout that names
/// the request; the device keeps its model.
fn surfaced_line_errors(s: &mut Scenario) {
    println!("line faults the host gives up on (1 attempt per request)");
    // A little more patience per attempt: a slow emulator must not fail the wrong request.
    s.relink(LinkConfig {
        attempts: 1,
        base_timeout: Duration::from_millis(500),
        ..link_config()
    });
    for fault in [Fault::CorruptByte, Fault::DropFrame, Fault::TruncateFrame]
        .into_iter()
        .cycle()
        .take(6)
    {
        s.settle();
        s.faults.arm_write(0, fault);
        let err = s.link().info().expect_err("one attempt cannot get through");
        assert!(
            matches!(err, LinkError::Timeout { attempts: 1, .. }),
            "a {fault} should end in a timeout: {err:?}"
        );
        assert_clear(&err, "Info", "no valid reply");
        let fired = s.faults.take_injected();
        s.count(&format!("{fault} on info, host gives up"), &fired);
        s.assert_previous_model(&format!("an unrecovered {fault} on info"));
    }
    // An upload that loses a chunk: the host gives up, aborts, the old model stays.
    for fault in [Fault::DropFrame, Fault::TruncateFrame, Fault::CorruptByte] {
        let model = s.model(if s.expected == Some(s.model("hello_world").hash) {
            "hello_world+label"
        } else {
            "hello_world"
        });
        s.settle();
        // Write 0 is UploadBegin; aim at a chunk.
        let chunk = 1 + s.rng.below(model.bytes.len().div_ceil(MAX_CHUNK)) as u64;
        s.faults.arm_write(chunk, fault);
        let err = s
            .link()
            .flash(&model.bytes, |_| {})
            .expect_err("one attempt cannot get a damaged chunk through");
        assert!(matches!(err, LinkError::Timeout { .. }), "{err:?}");
        assert_clear(&err, "UploadChunk", "no valid reply");
        let fired = s.faults.take_injected();
        s.count(&format!("{fault} during upload, host gives up"), &fired);
        s.assert_previous_model(&format!("an upload abandoned after a {fault}"));
    }
    s.relink(link_config());
}

/// Uploads that stop short: committed anyway (the device refuses, incomplete), or abandoned
/// because the line went dead or the chunks stopped coming.
fn truncated_uploads(s: &mut Scenario) {
    println!("truncated uploads");
    let kws = s.model("kws");
    for chunks in [1usize, 2, 3, 5] {
        let sent = chunks * MAX_CHUNK;
        s.faults.announce_upload(kws.bytes.len() as u32, kws.hash);
        let err = s
            .link()
            .flash(&kws.bytes[..sent], |_| {})
            .expect_err("an incomplete upload cannot commit");
        assert!(
            matches!(
                err.device_error(),
                Some(DeviceError::UploadIncomplete { received, size })
                    if received as usize == sent && size as usize == kws.bytes.len()
            ),
            "{err:?}"
        );
        assert_clear(&err, "UploadCommit", "upload incomplete");
        let fired = s.faults.take_injected();
        s.count("truncated upload, then commit", &fired[..1]);
        s.assert_previous_model("a truncated upload's commit");
    }
    // The host stops talking after UploadBegin and some chunks (its abort is lost too).
    s.relink(LinkConfig {
        attempts: 2,
        ..link_config()
    });
    for chunks in [1u64, 3, 6] {
        s.settle();
        s.faults.cut_line_after(1 + chunks);
        let err = s
            .link()
            .flash(&kws.bytes, |_| {})
            .expect_err("a dead line cannot finish an upload");
        assert!(matches!(err, LinkError::Timeout { .. }), "{err:?}");
        assert_clear(&err, "UploadChunk", "no valid reply");
        let fired = s.faults.take_injected();
        s.count("upload abandoned, line cut", &fired[..1]);
        s.assert_previous_model("an upload abandoned on a dead line");
    }
    // The chunks stop coming, the host's UploadAbort gets through.
    for chunks in [2u32, 4] {
        s.settle();
        s.faults.stop_chunks_at(chunks * MAX_CHUNK as u32);
        let err = s
            .link()
            .flash(&kws.bytes, |_| {})
            .expect_err("lost chunks cannot finish an upload");
        assert_clear(&err, "UploadChunk", "no valid reply");
        let fired = s.faults.take_injected();
        s.count("upload abandoned, chunks stopped", &fired[..1]);
        s.assert_previous_model("an upload abandoned with UploadAbort");
    }
    s.relink(link_config());
}

/// A host process uploading a model is killed partway; the device keeps its model, and the
/// next host finds it and can upload again.
fn host_killed_mid_upload(s: &mut Scenario) {
    println!("host killed mid-upload");
    let kws = s.model("kws");
    let model_path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-kws.emb");
    std::fs::write(&model_path, &kws.bytes).expect("write the child's model");
    let exe = std::env::current_exe().expect("the test binary's path");
    for round in 0..4 {
        let kill_after = (1 + s.rng.below(12)) * MAX_CHUNK;
        let mut child = Command::new(&exe)
            .env(CHILD_PORT_ENV, &s.port)
            .env(CHILD_MODEL_ENV, &model_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the upload child");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut reached = 0usize;
        let mut finished = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line == "done" {
                finished = true;
                break;
            }
            if let Some(sent) = line.strip_prefix("sent ").and_then(|n| n.parse().ok()) {
                reached = sent;
                if reached >= kill_after {
                    break;
                }
            }
        }
        let _ = child.kill();
        let status = child.wait().expect("reap the child");
        assert!(
            !finished && reached >= kill_after && !status.success(),
            "round {round}: the child should be killed after {kill_after} bytes (reached {reached}, {status})"
        );
        println!(
            "       killed the uploading host after {reached} of {} bytes ({status})",
            kws.bytes.len()
        );
        *s.tally.entry("host killed mid-upload".into()).or_default() += 1;
        // Replies to the dead host may still be on the line: let them land and drop them.
        s.settle();
        s.assert_previous_model("the uploading host was killed");
    }
    let _ = std::fs::remove_file(&model_path);
}

/// Models larger than a slot are refused at UploadBegin.
fn model_too_big(s: &mut Scenario) {
    println!("models too big for the slot");
    let info = s.assert_previous_model("nothing");
    let capacity = info
        .slots
        .iter()
        .map(|slot| slot.capacity)
        .max()
        .expect("the device reports its slots");
    for extra in [1usize, 4096] {
        let size = capacity as usize + extra;
        let too_big: Vec<u8> = s.rng.bytes(size);
        let err = s.link().flash(&too_big, |_| {}).expect_err("too big");
        assert!(
            matches!(err.device_error(), Some(DeviceError::TooBigForSlot { size: got, capacity: c })
                if got as usize == size && c <= capacity),
            "{err:?}"
        );
        assert_clear(&err, "UploadBegin", "does not fit");
        *s.tally
            .entry("model too big for the slot".into())
            .or_default() += 1;
        s.assert_previous_model("a model too big for the slot");
    }
    // A small upload that announces 4 GiB.
    let hello = s.model("hello_world");
    s.faults.announce_upload(u32::MAX, hello.hash);
    let err = s.link().flash(&hello.bytes, |_| {}).expect_err("4 GiB");
    assert!(
        matches!(err.device_error(), Some(DeviceError::TooBigForSlot { .. })),
        "{err:?}"
    );
    assert_clear(&err, "UploadBegin", "does not fit");
    let fired = s.faults.take_injected();
    s.count("model too big for the slot", &fired[..1]);
    s.assert_previous_model("an upload announcing 4 GiB");
}

/// Well-framed uploads (correct upload CRC) of models the runtime must refuse.
fn malformed_models(s: &mut Scenario) {
    println!("valid frames holding malformed models");
    let good = s.model("hello_world").bytes;
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut bad_magic = good.clone();
    bad_magic[0] = b'?';
    cases.push(("bad magic", bad_magic));
    let mut bad_version = good.clone();
    bad_version[4] = 0x7f;
    cases.push(("unknown format version", bad_version));
    cases.push(("cut to half its length", good[..good.len() / 2].to_vec()));
    cases.push(("header only", good[..32].to_vec()));
    let mut flipped = good.clone();
    let at = 32 + s.rng.below(good.len() - 32);
    flipped[at] ^= 0x10;
    cases.push(("one flipped byte after the header", flipped));
    // A corrupted graph whose inner CRC was fixed up, so only validation can catch it.
    let mut fixed_up = None;
    for _ in 0..200 {
        let mut candidate = good.clone();
        let graph_len = u32::from_le_bytes([good[8], good[9], good[10], good[11]]) as usize;
        let at = 32 + s.rng.below(graph_len.max(1));
        candidate[at] = s.rng.next_u64() as u8;
        let crc = crc32(&candidate[32..]);
        candidate[24..28].copy_from_slice(&crc.to_le_bytes());
        if Model::load(AlignedBytes::from_slice(&candidate).as_slice()).is_err() {
            fixed_up = Some(candidate);
            break;
        }
    }
    cases.push((
        "a corrupted graph with a valid checksum",
        fixed_up.expect("some graph corruption is rejected"),
    ));
    cases.push(("random bytes", s.rng.bytes(good.len())));
    for (what, bytes) in cases {
        // The host runtime refuses it too, so the device must.
        assert!(
            Model::load(AlignedBytes::from_slice(&bytes).as_slice()).is_err(),
            "{what}: the host runtime accepts it, not a malformed model"
        );
        let err = s
            .link()
            .flash(&bytes, |_| {})
            .expect_err("a malformed model cannot commit");
        assert!(
            matches!(err.device_error(), Some(DeviceError::InvalidModel { reason }) if !reason.is_empty()),
            "{what}: {err:?}"
        );
        assert_clear(&err, "UploadCommit", "rejected the model");
        *s.tally
            .entry("malformed model in valid frames".into())
            .or_default() += 1;
        s.assert_previous_model(&format!("a malformed model ({what})"));
    }
}

/// The device restarts and line noise arrives as it boots; it comes back with its model.
fn garbage_at_reboot(s: &mut Scenario) {
    println!("garbage at boot after a reset");
    for _ in 0..3 {
        s.link().reset().expect("reset");
        let mut noise = s.rng.bytes(200);
        noise.extend_from_slice(&[0, 0, 0x55, 0xaa, 0]);
        s.link().write_raw(&noise).expect("write garbage");
        *s.tally.entry("garbage at boot".into()).or_default() += 1;
        s.assert_previous_model("garbage at boot after a reset");
        s.assert_infer_matches_host("after a reset with garbage at boot");
    }
}

/// Random faults on random requests, from the seed.
fn random_mix(s: &mut Scenario) {
    println!("random faults on random requests");
    let all: Vec<Fault> = Fault::FRAME_FAULTS
        .into_iter()
        .chain(Fault::REPLY_FAULTS)
        .collect();
    for _ in 0..15 {
        let fault = all[s.rng.below(all.len())];
        let op = s.rng.below(3);
        if Fault::REPLY_FAULTS.contains(&fault) {
            s.faults.arm_read(0, fault);
        } else {
            s.faults.arm_write(0, fault);
        }
        let what = match op {
            0 => {
                s.link()
                    .info()
                    .unwrap_or_else(|e| panic!("info with a {fault}: {e}"));
                "info"
            }
            1 => {
                s.assert_infer_matches_host(&format!("infer with a {fault}"));
                "infer"
            }
            _ => {
                let name = if s.expected == Some(s.model("hello_world").hash) {
                    "hello_world+label"
                } else {
                    "hello_world"
                };
                let model = s.model(name);
                s.link()
                    .flash(&model.bytes, |_| {})
                    .unwrap_or_else(|e| panic!("flash with a {fault}: {e}"));
                s.expected = Some(model.hash);
                "upload"
            }
        };
        let fired = s.faults.take_injected();
        s.count(&format!("{fault} on {what} (random)"), &fired);
        s.assert_previous_model(&format!("a random {fault} on {what}"));
    }
}
