//! Commands that talk to a board over a serial port, and `ember emulate`, which boots the
//! QEMU board so those commands have a port to talk to without hardware.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use ember_link::{Link, LinkConfig, LinkError, Transport};

/// Exit codes of the device commands, so scripts can tell a bad file from a refusing board
/// from a broken link. Keep in sync with `EXIT_CODES_HELP` and README's CLI section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Bad arguments or an input file that cannot be read or used (clap's usage errors are 2 too).
    BadInput = 2,
    /// The device answered and refused: invalid or too-big model, unsupported request.
    Refused = 3,
    /// No usable link: port missing or not openable, timeouts, corrupted or unexpected replies.
    Link = 4,
}

/// Appended to every device command's long help.
pub(crate) const EXIT_CODES_HELP: &str = "Exit codes:
  0  success
  1  any other failure
  2  usage error or bad input file (unreadable, wrong format, does not fit the model)
  3  the device refused the request (e.g. invalid or too-big model, streaming unsupported)
  4  link failure: no board found, port cannot be opened, timeout, corrupted replies";

/// An error whose exit code was chosen where it happened.
#[derive(Debug)]
pub(crate) struct Coded {
    pub exit: Exit,
    pub error: anyhow::Error,
}

impl std::fmt::Display for Coded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for Coded {}

/// Marks an error as a bad input file or argument (exit code 2).
pub(crate) fn bad_input(error: anyhow::Error) -> anyhow::Error {
    Coded {
        exit: Exit::BadInput,
        error,
    }
    .into()
}

/// Marks an error as the device refusing (exit code 3).
pub(crate) fn refused(error: anyhow::Error) -> anyhow::Error {
    Coded {
        exit: Exit::Refused,
        error,
    }
    .into()
}

fn link_error_exit(error: &LinkError) -> Exit {
    match error {
        LinkError::Device { .. } | LinkError::VerifyMismatch { .. } => Exit::Refused,
        LinkError::InputTooLarge(_) => Exit::BadInput,
        // Timeout, Corrupted, UnexpectedReply, ProtocolVersion, Io and future variants: the
        // host could not hold a conversation with the device.
        _ => Exit::Link,
    }
}

/// The process exit code for a failed device command: the first error in the chain that
/// says what kind of failure it was decides; anything else is 1.
pub(crate) fn exit_code(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(coded) = cause.downcast_ref::<Coded>() {
            return coded.exit as u8;
        }
        if let Some(link) = cause.downcast_ref::<LinkError>() {
            return link_error_exit(link) as u8;
        }
        if cause.downcast_ref::<serialport::Error>().is_some() {
            return Exit::Link as u8;
        }
    }
    1
}

/// Boards ember knows by their USB IDs (from boards/*/board.toml).
const KNOWN_BOARDS: &[(u16, Option<u16>, &str)] = &[
    (
        0x1366,
        Some(0x1015),
        "nrf52840-dk (J-Link OB virtual COM port)",
    ),
    (0x2E8A, None, "rp2040"),
];

/// Device commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List serial ports with USB VID/PID/serial number and the known boards on them.
    ///
    /// PTYs from `ember emulate` are not listed (the OS does not enumerate them); use the
    /// /dev/pts/N that `ember emulate` prints.
    #[command(after_long_help = EXIT_CODES_HELP)]
    Devices(DevicesArgs),
    /// Show the board, firmware, model slots and running model.
    #[command(after_long_help = EXIT_CODES_HELP)]
    Info(PortArgs),
    /// Upload a .emb model to the board's inactive slot and switch to it.
    #[command(after_long_help = EXIT_CODES_HELP)]
    Flash(FlashArgs),
    /// Run the board's model once on an input file (raw bytes) and print or save the output.
    #[command(after_long_help = EXIT_CODES_HELP)]
    Infer(InferArgs),
    /// Stream audio or sensor data to the board and print live predictions.
    #[command(after_long_help = EXIT_CODES_HELP)]
    Stream(crate::stream::StreamArgs),
    /// Boot the QEMU board (building it if needed) and print the serial port to use.
    #[command(after_long_help = EXIT_CODES_HELP)]
    Emulate(EmulateArgs),
}

#[derive(Debug, clap::Args)]
pub struct DevicesArgs {
    /// Print JSON: an array of {port, type, vid, pid, serial_number, manufacturer, product, board}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct PortArgs {
    /// Serial port [default: the only known board attached].
    #[arg(long, short)]
    pub port: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct FlashArgs {
    #[command(flatten)]
    pub port: PortArgs,
    /// The .emb model.
    pub model: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct InferArgs {
    #[command(flatten)]
    pub port: PortArgs,
    /// Input tensor bytes (all graph inputs concatenated, raw little-endian).
    #[arg(long, short)]
    pub input: PathBuf,
    /// Write the output bytes here instead of printing them as hex.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct EmulateArgs {
    /// Board to emulate.
    #[arg(long, default_value = "qemu-mps2-an386")]
    pub board: String,
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Devices(args) => devices(args),
        Command::Info(args) => info(args),
        Command::Flash(args) => flash(args),
        Command::Infer(args) => infer(args),
        Command::Stream(args) => crate::stream::stream(args),
        Command::Emulate(args) => emulate(args),
    }
}

/// A serial port as an ember-link transport.
pub(crate) struct SerialTransport(Box<dyn serialport::SerialPort>);

impl std::io::Read for SerialTransport {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for SerialTransport {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Transport for SerialTransport {
    fn set_timeout(&mut self, timeout: Duration) -> std::io::Result<()> {
        self.0.set_timeout(timeout).map_err(std::io::Error::from)
    }
}

fn known_board(vid: u16, pid: u16) -> Option<&'static str> {
    KNOWN_BOARDS
        .iter()
        .find(|(v, p, _)| *v == vid && p.is_none_or(|p| p == pid))
        .map(|(_, _, name)| *name)
}

fn devices(args: DevicesArgs) -> anyhow::Result<()> {
    let ports = serialport::available_ports().context("cannot list serial ports")?;
    if args.json {
        let list: Vec<_> = ports
            .iter()
            .map(|port| match &port.port_type {
                serialport::SerialPortType::UsbPort(usb) => serde_json::json!({
                    "port": port.port_name, "type": "usb",
                    "vid": usb.vid, "pid": usb.pid, "serial_number": usb.serial_number,
                    "manufacturer": usb.manufacturer, "product": usb.product,
                    "board": known_board(usb.vid, usb.pid),
                }),
                other => serde_json::json!({
                    "port": port.port_name,
                    "type": match other {
                        serialport::SerialPortType::PciPort => "pci",
                        serialport::SerialPortType::BluetoothPort => "bluetooth",
                        _ => "unknown",
                    },
                }),
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    if ports.is_empty() {
        println!("no serial ports found (for QEMU, use the port `ember emulate` prints)");
    }
    for port in ports {
        match port.port_type {
            serialport::SerialPortType::UsbPort(usb) => println!(
                "{}  usb {:04x}:{:04x}  serial {}  {}",
                port.port_name,
                usb.vid,
                usb.pid,
                usb.serial_number.as_deref().unwrap_or("-"),
                known_board(usb.vid, usb.pid).unwrap_or("(unknown board)")
            ),
            _ => println!("{}  (not USB)", port.port_name),
        }
    }
    Ok(())
}

/// The port named, or the only attached known board.
fn pick_port(port: &Option<String>) -> anyhow::Result<String> {
    if let Some(port) = port {
        return Ok(port.clone());
    }
    let ports = serialport::available_ports().context("cannot list serial ports")?;
    let known: Vec<_> = ports
        .into_iter()
        .filter(|p| match &p.port_type {
            serialport::SerialPortType::UsbPort(usb) => known_board(usb.vid, usb.pid).is_some(),
            _ => false,
        })
        .collect();
    match known.as_slice() {
        [only] => Ok(only.port_name.clone()),
        [] => Err(Coded {
            exit: Exit::Link,
            error: anyhow::anyhow!(
                "no known board attached; pass --port (see `ember devices`, or `ember emulate`)"
            ),
        }
        .into()),
        _ => Err(bad_input(anyhow::anyhow!(
            "{} known boards attached; choose one with --port (see `ember devices`)",
            known.len()
        ))),
    }
}

pub(crate) fn connect(port: &Option<String>) -> anyhow::Result<Link<SerialTransport>> {
    let name = pick_port(port)?;
    let mut serial = serialport::new(&name, 115_200)
        .timeout(Duration::from_millis(500))
        .open()
        .with_context(|| format!("cannot open serial port {name}"))?;
    discard_stale_input(serial.as_mut())
        .with_context(|| format!("cannot read serial port {name}"))?;
    Ok(Link::new(SerialTransport(serial), LinkConfig::default()))
}

/// Drops whatever the device sent before this command started: replies to an earlier,
/// interrupted command or the device's complaints about line noise would otherwise be taken for
/// answers to (or reasons to resend) this command's first request. Waits until the line has
/// been quiet for a moment, bounded so a chattering line cannot stall the command.
fn discard_stale_input(serial: &mut dyn serialport::SerialPort) -> std::io::Result<()> {
    const QUIET: Duration = Duration::from_millis(30);
    const MOST: Duration = Duration::from_millis(500);
    serial.clear(serialport::ClearBuffer::Input)?;
    serial.set_timeout(QUIET)?;
    let started = std::time::Instant::now();
    let mut scratch = [0u8; 256];
    while started.elapsed() < MOST {
        match serial.read(&mut scratch) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    serial.set_timeout(Duration::from_millis(500))?;
    Ok(())
}

fn info(args: PortArgs) -> anyhow::Result<()> {
    let mut link = connect(&args.port)?;
    let info = link.info().context("Info request failed")?;
    if args.json {
        let json = serde_json::json!({
            "protocol_version": info.protocol_version,
            "board": info.board,
            "firmware_version": info.firmware_version,
            "max_chunk": info.max_chunk,
            "arena_size": info.arena_size,
            "slots": format!("{:?}", info.slots),
            "model": info.model.as_ref().map(|m| format!("{m:?}")),
            "ops": info.ops,
            "fell_back": info.fell_back,
            "last_panic": info.last_panic,
        });
        println!("{json}");
    } else {
        println!(
            "board:       {} (firmware {})",
            info.board, info.firmware_version
        );
        println!("protocol:    {}", info.protocol_version);
        println!("arena:       {} bytes", info.arena_size);
        for slot in &info.slots {
            println!("slot:        {slot:?}");
        }
        match &info.model {
            Some(model) => println!("model:       {model:?}"),
            None => println!("model:       none"),
        }
        if info.fell_back {
            println!("note:        the newest model failed verification; running the previous one");
        }
        if let Some(panic) = &info.last_panic {
            println!("last panic:  {panic}");
        }
    }
    Ok(())
}

fn flash(args: FlashArgs) -> anyhow::Result<()> {
    let model = std::fs::read(&args.model)
        .with_context(|| format!("cannot read {}", args.model.display()))
        .map_err(bad_input)?;
    let mut link = connect(&args.port.port)?;
    // A progress bar on a terminal; logs and JSON get no progress noise.
    let quiet = args.port.json || !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = (!quiet).then(|| {
        let bar = indicatif::ProgressBar::new(model.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "flashing [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    });
    let result = link.flash(&model, |p| {
        if let Some(bar) = &bar {
            bar.set_length(p.total as u64);
            bar.set_position(p.sent as u64);
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = result.context("flash failed; the board keeps running its previous model")?;
    if args.port.json {
        let json = serde_json::json!({
            "slot": report.slot, "crc32": report.hash, "retries": report.retries,
            "bytes": model.len(),
        });
        println!("{json}");
    } else {
        println!(
            "flashed {} ({} bytes) to slot {}, crc32 {:08x}, {} retries",
            args.model.display(),
            model.len(),
            report.slot,
            report.hash,
            report.retries
        );
    }
    Ok(())
}

fn infer(args: InferArgs) -> anyhow::Result<()> {
    let input = std::fs::read(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))
        .map_err(bad_input)?;
    let mut link = connect(&args.port.port)?;
    let result = link.infer(&input).context("inference failed")?;
    let hex: String = result.output.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(path) = &args.output {
        std::fs::write(path, &result.output)
            .with_context(|| format!("cannot write {}", path.display()))
            .map_err(bad_input)?;
    }
    if args.port.json {
        let json = serde_json::json!({
            "output_hex": hex, "cycles": result.cycles, "instructions": result.instructions,
        });
        println!("{json}");
    } else {
        if args.output.is_none() {
            println!("output: {hex}");
        }
        match result.instructions {
            Some(n) => println!("cycles: {}  instructions: {n}", result.cycles),
            None => println!("cycles: {}", result.cycles),
        }
    }
    Ok(())
}

/// The repository's root, where boards/ lives (this is a development tool for now).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn emulate(args: EmulateArgs) -> anyhow::Result<()> {
    if args.board != "qemu-mps2-an386" {
        return Err(bad_input(anyhow::anyhow!(
            "only qemu-mps2-an386 can be emulated (got {})",
            args.board
        )));
    }
    let root = repo_root();
    let elf = root
        .join("boards/qemu-mps2-an386/target/thumbv7em-none-eabihf/debug/ember-qemu-mps2-an386");
    if !elf.exists() {
        eprintln!(
            "building the firmware (scripts/firmware/build.sh --board {})",
            args.board
        );
        let status = Process::new(root.join("scripts/firmware/build.sh"))
            .args(["--board", &args.board])
            .status()
            .context("cannot run scripts/firmware/build.sh")?;
        if !status.success() || !elf.exists() {
            bail!("building the {} firmware failed", args.board);
        }
    }
    let mut qemu = spawn_qemu(&elf)?;
    eprintln!("serial port: {}", qemu.port);
    println!("{}", qemu.port);
    eprintln!(
        "e.g. `ember info --port {}`; Ctrl-C stops the emulator",
        qemu.port
    );
    let status = qemu.child.wait().context("waiting for QEMU")?;
    if !status.success() {
        bail!("QEMU exited with {status}");
    }
    Ok(())
}

/// Asks Linux to send the emulator SIGTERM when ember exits for any reason (killed, crashed), so a
/// QEMU never outlives the command that started it. Elsewhere only Ctrl-C (which reaches the whole
/// process group) stops both. Linux sends the signal when the *thread* that spawned the child
/// exits, so call this only for children started from the main thread.
pub fn stop_with_parent(command: &mut Process) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt as _;
        // SAFETY: the closure runs in the forked child before exec and only calls prctl, which is
        // async-signal-safe; it allocates nothing and touches no locks.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// A running emulator and the PTY of its UART0.
pub struct Qemu {
    pub child: std::process::Child,
    pub port: String,
}

/// Boots `elf` halted (`-S`), finds the PTY QEMU created for UART0, opens it once so QEMU
/// sees a reader, then resumes the CPU through the monitor on QEMU's stdin.
pub fn spawn_qemu(elf: &Path) -> anyhow::Result<Qemu> {
    let mut command = Process::new("qemu-system-arm");
    stop_with_parent(&mut command);
    let mut child = command
        .args(["-M", "mps2-an386", "-cpu", "cortex-m4", "-nographic", "-S"])
        .args(["-icount", "shift=0"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .args(["-serial", "pty", "-monitor", "stdio", "-kernel"])
        .arg(elf)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start qemu-system-arm (install the qemu-system-arm package)")?;
    let (sender, receiver) = std::sync::mpsc::channel();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let sender = sender.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(start) = line.find("/dev/pts/") {
                    let port: String = line[start..]
                        .chars()
                        .take_while(|c| !c.is_whitespace())
                        .collect();
                    let _ = sender.send(port);
                } else {
                    eprintln!("[qemu] {line}");
                }
            }
        });
    }
    let port = match receiver.recv_timeout(Duration::from_secs(20)) {
        Ok(port) => port,
        Err(_) => {
            let _ = child.kill();
            bail!("QEMU did not report its serial PTY");
        }
    };
    // QEMU drops UART output while no one has the PTY open; open it before resuming.
    let probe = serialport::new(&port, 115_200)
        .open()
        .with_context(|| format!("cannot open {port}"))?;
    let Some(monitor) = child.stdin.as_mut() else {
        bail!("QEMU's monitor is not connected");
    };
    monitor
        .write_all(b"cont\n")
        .context("cannot resume QEMU through its monitor")?;
    monitor.flush()?;
    drop(probe);
    Ok(Qemu { child, port })
}
