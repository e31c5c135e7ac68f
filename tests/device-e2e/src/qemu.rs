//! The emulated board: QEMU mps2-an386 running the real firmware ELF, UART0 on a PTY.
//! [`Qemu`] kills the emulator when dropped, also when a test panics.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::serial::SerialTransport;

/// The board's name in boards/ and in `scripts/firmware/build.sh --board`.
pub const BOARD: &str = "qemu-mps2-an386";

/// Why the emulated board could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QemuError {
    #[error("qemu-system-arm is not installed (apt-get install qemu-system-arm), or set EMBER_SKIP_QEMU=1 to skip the device tests")]
    NotInstalled,
    #[error("building the firmware with scripts/firmware/build.sh --board {BOARD} failed ({0})")]
    Build(String),
    #[error("cannot start qemu-system-arm: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("QEMU did not report its serial PTY within {0:?}; its output: {1}")]
    NoPty(Duration, String),
    #[error("cannot open the PTY {path}: {source}")]
    OpenPort {
        path: String,
        #[source]
        source: serialport::Error,
    },
    #[error("cannot talk to QEMU's monitor: {0}")]
    Monitor(#[source] std::io::Error),
}

/// True when `qemu-system-arm` runs.
pub fn qemu_installed() -> bool {
    Command::new("qemu-system-arm")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The repository root (this crate lives in tests/device-e2e).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The debug firmware ELF, built with `scripts/firmware/build.sh` when missing
/// (`EMBER_FIRMWARE_ELF` overrides the path).
pub fn firmware_elf() -> Result<PathBuf, QemuError> {
    if let Some(path) = std::env::var_os("EMBER_FIRMWARE_ELF") {
        return Ok(PathBuf::from(path));
    }
    let root = repo_root();
    let elf = root.join(format!(
        "boards/{BOARD}/target/thumbv7em-none-eabihf/debug/ember-{BOARD}"
    ));
    if elf.exists() {
        return Ok(elf);
    }
    eprintln!("building the firmware: scripts/firmware/build.sh --board {BOARD}");
    let status = Command::new(root.join("scripts/firmware/build.sh"))
        .args(["--board", BOARD])
        // The script picks its own target dirs; ours is for the host.
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .map_err(|e| QemuError::Build(e.to_string()))?;
    if !status.success() || !elf.exists() {
        return Err(QemuError::Build(format!("{status}")));
    }
    Ok(elf)
}

/// A running emulator. Dropping it kills QEMU.
#[derive(Debug)]
pub struct Qemu {
    child: Child,
    monitor: Option<ChildStdin>,
    port: String,
    /// QEMU's own output (monitor, semihosting), for failure messages.
    log: Arc<Mutex<Vec<String>>>,
}

impl Qemu {
    /// Boots `elf` halted, opens its UART PTY (QEMU drops UART output while the PTY is not
    /// open), resumes the CPU and writes `boot_garbage` to the line at once, before any request.
    pub fn boot(elf: &Path, boot_garbage: &[u8]) -> Result<(Qemu, SerialTransport), QemuError> {
        let mut child = Command::new("qemu-system-arm")
            .args(["-M", "mps2-an386", "-cpu", "cortex-m4", "-nographic", "-S"])
            .args(["-icount", "shift=0"])
            .args(["-semihosting-config", "enable=on,target=native"])
            .args(["-serial", "pty", "-monitor", "stdio", "-kernel"])
            .arg(elf)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    QemuError::NotInstalled
                } else {
                    QemuError::Spawn(e)
                }
            })?;
        let monitor = child.stdin.take();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (found_pty, pty) = mpsc::channel();
        let outputs: [Option<Box<dyn std::io::Read + Send>>; 2] = [
            child.stdout.take().map(|s| Box::new(s) as _),
            child.stderr.take().map(|s| Box::new(s) as _),
        ];
        for stream in outputs.into_iter().flatten() {
            let found_pty = found_pty.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(start) = line.find("/dev/pts/") {
                        let path: String = line[start..]
                            .chars()
                            .take_while(|c| !c.is_whitespace())
                            .collect();
                        let _ = found_pty.send(path);
                    }
                    log.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            });
        }
        // From here on the guard owns QEMU: any early return kills it.
        let mut qemu = Qemu {
            child,
            monitor,
            port: String::new(),
            log,
        };
        let wait = Duration::from_secs(20);
        qemu.port = pty
            .recv_timeout(wait)
            .map_err(|_| QemuError::NoPty(wait, qemu.log_text()))?;
        let mut transport =
            SerialTransport::open(&qemu.port).map_err(|source| QemuError::OpenPort {
                path: qemu.port.clone(),
                source,
            })?;
        qemu.monitor_command("cont")?;
        if !boot_garbage.is_empty() {
            transport
                .write_all(boot_garbage)
                .and_then(|()| transport.flush())
                .map_err(QemuError::Monitor)?;
        }
        Ok((qemu, transport))
    }

    /// The PTY path (`/dev/pts/N`).
    pub fn port(&self) -> &str {
        &self.port
    }

    /// What QEMU printed so far.
    pub fn log_text(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    fn monitor_command(&mut self, command: &str) -> Result<(), QemuError> {
        let monitor = self
            .monitor
            .as_mut()
            .ok_or_else(|| QemuError::Monitor(std::io::ErrorKind::BrokenPipe.into()))?;
        writeln!(monitor, "{command}")
            .and_then(|()| monitor.flush())
            .map_err(QemuError::Monitor)
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.monitor_command("quit");
        // Give `quit` a moment, then make sure.
        for _ in 0..20 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
