//! Host <-> device through in-memory pipes: a `Device` runs in a thread on a simulated flash,
//! the `Link` talks to it, and a fault injector corrupts, drops, duplicates and truncates
//! frames in both directions.

#[path = "../../../firmware/tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ember_firmware::{
    BootOptions, Buffers, Device, DeviceConfig, Event, FlashLayout, NoClock, SimFlash,
};
use ember_link::mem::{pipe, Closed, DeviceEnd, HostEnd};
use ember_link::{Link, LinkConfig, LinkError, Transport};
use ember_protocol::{DeviceError, StreamCaps};
use ember_runtime::crc32::crc32;
use ember_runtime::host::{run_once, AlignedBytes};
use ember_runtime::Model;

type Flash = SimFlash<Vec<u8>>;
const FLASH_LEN: usize = 4096 * 24;

const CONFIG: DeviceConfig = DeviceConfig {
    board: "pipe",
    firmware_version: "test",
    supported_ops: ember_firmware::RUNTIME_OPS,
    stream: Some(StreamCaps {
        sample_rate_hz: 16000,
        channels: 1,
        max_window_bytes: 0,
    }),
};

/// Deterministic xorshift.
#[derive(Debug, Clone)]
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Mangles whole writes (each write is one frame on both sides).
#[derive(Debug)]
struct Faults {
    rng: Rng,
    percent: u64,
    injected: Arc<AtomicU32>,
}

impl Faults {
    fn apply(&mut self, frame: &[u8]) -> Vec<Vec<u8>> {
        if self.percent == 0 || !self.rng.chance(self.percent) {
            return vec![frame.to_vec()];
        }
        self.injected.fetch_add(1, Ordering::Relaxed);
        let mut bytes = frame.to_vec();
        match self.rng.next() % 5 {
            0 => vec![],                     // dropped
            1 => vec![bytes.clone(), bytes], // duplicated
            2 => {
                let at = (self.rng.next() as usize) % bytes.len();
                bytes[at] ^= 1 << (self.rng.next() % 8); // bit flip (maybe in a delimiter)
                vec![bytes]
            }
            3 => {
                let keep = (self.rng.next() as usize) % bytes.len();
                bytes.truncate(keep); // truncated, delimiter lost
                vec![bytes]
            }
            _ => {
                let mut noise: Vec<u8> = (0..8).map(|_| self.rng.next() as u8).collect();
                noise.extend_from_slice(&bytes); // garbage before the frame
                vec![noise]
            }
        }
    }
}

#[derive(Debug)]
struct FaultyHost {
    inner: HostEnd,
    faults: Faults,
    /// Writes left before the line is cut (host "dies"); `None`: never.
    cut_after: Option<u32>,
}

impl std::io::Read for FaultyHost {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl std::io::Write for FaultyHost {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(left) = self.cut_after.as_mut() {
            if *left == 0 {
                return Ok(buf.len());
            }
            *left -= 1;
        }
        for piece in self.faults.apply(buf) {
            self.inner.write_all(&piece)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Transport for FaultyHost {
    fn set_timeout(&mut self, timeout: Duration) -> std::io::Result<()> {
        self.inner.set_timeout(timeout)
    }
}

struct FaultyDevice {
    inner: DeviceEnd,
    faults: Faults,
}

impl embedded_io::ErrorType for FaultyDevice {
    type Error = Closed;
}
impl embedded_io::Read for FaultyDevice {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Closed> {
        self.inner.read(buf)
    }
}
impl embedded_io::Write for FaultyDevice {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Closed> {
        for piece in self.faults.apply(buf) {
            embedded_io::Write::write_all(&mut self.inner, &piece)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Closed> {
        Ok(())
    }
}

/// Runs a device (rebooting on `Reset`) until the host hangs up; returns the flash.
fn spawn_device(flash: Flash, mut port: FaultyDevice) -> thread::JoinHandle<Flash> {
    thread::spawn(move || {
        let mut flash = flash;
        let mut arena = vec![0u8; 16 * 1024];
        let mut window = vec![0u8; 2048];
        loop {
            flash.power_on();
            let buffers = Buffers {
                arena: &mut arena,
                window: &mut window,
                frontend: None,
            };
            let layout = FlashLayout::split(FLASH_LEN as u32, 4096).unwrap();
            let mut device = Device::new(
                flash,
                layout,
                NoClock,
                CONFIG,
                buffers,
                BootOptions::default(),
            )
            .unwrap();
            loop {
                match device.poll(&mut port) {
                    Ok(None) => {}
                    Ok(Some(Event::Reset)) => break,
                    Ok(Some(_)) => {}
                    Err(Closed) => return device.into_flash(),
                }
            }
            flash = device.into_flash();
        }
    })
}

struct Setup {
    link: Link<FaultyHost>,
    device: thread::JoinHandle<Flash>,
    injected: Arc<AtomicU32>,
}

fn connect(flash: Flash, percent: u64, seed: u64) -> Setup {
    let (host, device_end) = pipe();
    let injected = Arc::new(AtomicU32::new(0));
    let device = spawn_device(
        flash,
        FaultyDevice {
            inner: device_end,
            faults: Faults {
                rng: Rng(seed ^ 0xabcdef),
                percent,
                injected: injected.clone(),
            },
        },
    );
    let config = LinkConfig {
        baud: None,
        base_timeout: Duration::from_millis(40),
        per_kib_timeout: Duration::from_millis(2),
        attempts: 12,
    };
    let link = Link::new(
        FaultyHost {
            inner: host,
            faults: Faults {
                rng: Rng(seed),
                percent,
                injected: injected.clone(),
            },
            cut_after: None,
        },
        config,
    );
    Setup {
        link,
        device,
        injected,
    }
}

fn expected_output(model: &[u8], input: &[u8]) -> Vec<u8> {
    let aligned = AlignedBytes::from_slice(model);
    let model = Model::load(aligned.as_slice()).unwrap();
    run_once(&model, &[input]).unwrap().concat()
}

#[test]
fn clean_flow_info_flash_infer_stream_revert() {
    let old = common::mlp_model(32, 48, 5, 11);
    let new = common::mlp_model(64, 96, 7, 12);
    let Setup {
        mut link, device, ..
    } = connect(Flash::new(vec![0; FLASH_LEN]), 0, 1);
    let info = link.info().unwrap();
    assert_eq!(info.board, "pipe");
    assert!(info.model.is_none());
    assert_eq!(info.slots.len(), 2);
    link.flash(&old, |_| {}).unwrap();
    let mut progress = Vec::new();
    let report = link.flash(&new, |p| progress.push(p.sent)).unwrap();
    assert_eq!(report.hash, crc32(&new));
    assert_eq!(progress.last(), Some(&new.len()));
    assert!(progress.len() > 1, "upload should take several chunks");
    let info = link.info().unwrap();
    let model = info.model.unwrap();
    assert_eq!(model.hash, crc32(&new));
    assert_eq!(model.inputs[0].shape.as_slice(), &[1, 64]);

    let input: Vec<u8> = (0..64).map(|i| (i * 13) as u8).collect();
    let inference = link.infer(&input).unwrap();
    assert_eq!(inference.output, expected_output(&new, &input));

    let samples: Vec<u8> = (0..300u32).map(|i| (i * 7 % 253) as u8).collect();
    let results = link.stream(&samples, 64, 32).unwrap();
    assert_eq!(results.len(), (300 - 64) / 32 + 1);
    for (k, r) in results.iter().enumerate() {
        let window = &samples[k * 32..k * 32 + 64];
        assert_eq!(r.output, expected_output(&new, window));
        assert_eq!(r.end_sample as usize, k * 32 + 64);
    }

    assert_eq!(link.revert().unwrap(), crc32(&old));
    link.reset().unwrap();
    let info = link.info().unwrap();
    assert_eq!(info.model.unwrap().hash, crc32(&old));
    drop(link);
    device.join().unwrap();
}

#[test]
fn refused_models_are_typed_errors_and_the_old_model_stays() {
    let old = common::mlp_model(32, 48, 5, 11);
    let Setup {
        mut link, device, ..
    } = connect(Flash::new(vec![0; FLASH_LEN]), 0, 2);
    // Garbage before hello.
    link.write_raw(b"\x7f\x45\x4c\x46 random noise \x00\x01\x02")
        .unwrap();
    link.flash(&old, |_| {}).unwrap();

    let too_big = vec![0u8; FLASH_LEN];
    let err = link.flash(&too_big, |_| {}).unwrap_err();
    assert!(
        matches!(err.device_error(), Some(DeviceError::TooBigForSlot { .. })),
        "{err}"
    );

    let mut malformed = common::mlp_model(16, 16, 4, 3);
    malformed[0] = b'?';
    let err = link.flash(&malformed, |_| {}).unwrap_err();
    assert!(
        matches!(err.device_error(), Some(DeviceError::InvalidModel { reason }) if reason.contains("magic")),
        "{err}"
    );

    let input = vec![1u8; 3];
    let err = link.infer(&input).unwrap_err();
    assert!(
        matches!(err.device_error(), Some(DeviceError::InputSize { .. })),
        "{err}"
    );
    assert!(matches!(
        link.revert().unwrap_err().device_error(),
        Some(DeviceError::NoPreviousModel)
    ));
    assert_eq!(link.info().unwrap().model.unwrap().hash, crc32(&old));
    drop(link);
    device.join().unwrap();
}

#[test]
fn survives_hundreds_of_line_faults() {
    let models = [
        common::mlp_model(32, 48, 5, 21),
        common::mlp_model(64, 128, 7, 22),
        common::mlp_model(48, 64, 3, 23),
    ];
    let Setup {
        mut link,
        device,
        injected,
    } = connect(Flash::new(vec![0; FLASH_LEN]), 12, 3);
    let mut successes = 0;
    let mut running: Option<usize> = None;
    for round in 0..30 {
        let which = round % models.len();
        let model = &models[which];
        match link.flash(model, |_| {}) {
            Ok(report) => {
                assert_eq!(report.hash, crc32(model));
                running = Some(which);
                successes += 1;
            }
            Err(LinkError::Timeout { .. } | LinkError::Corrupted { .. }) => {}
            Err(e) => panic!("round {round}: {e}"),
        }
        if let Some(which) = running {
            let inputs = models[which].len(); // any deterministic bytes
            let info = loop {
                if let Ok(info) = link.info() {
                    break info;
                }
            };
            let model_info = info.model.expect("a model runs");
            // A failed flash may still have committed (its verify reply was lost).
            let idx = models
                .iter()
                .position(|m| crc32(m) == model_info.hash)
                .unwrap();
            running = Some(idx);
            let len = model_info.inputs[0].byte_len();
            let input: Vec<u8> = (0..len).map(|i| (i * 5 + inputs) as u8).collect();
            if let Ok(inference) = link.infer(&input) {
                assert_eq!(inference.output, expected_output(&models[idx], &input));
            }
        }
    }
    let faults = injected.load(Ordering::Relaxed);
    assert!(faults >= 100, "only {faults} faults injected");
    assert!(
        successes >= 15,
        "only {successes} of 30 flashes got through {faults} faults"
    );
    assert!(link.retries() > 0);
    drop(link);
    let flash = device.join().unwrap();

    // Afterwards, on a clean line, the device answers Info with a model we flashed.
    let Setup {
        mut link, device, ..
    } = connect(flash, 0, 4);
    let info = link.info().unwrap();
    let hash = info.model.unwrap().hash;
    assert!(models.iter().any(|m| crc32(m) == hash));
    drop(link);
    device.join().unwrap();
}

#[test]
fn truncated_upload_then_reconnect_keeps_the_previous_model() {
    let old = common::mlp_model(32, 48, 5, 31);
    let new = common::mlp_model(64, 128, 7, 32);
    let Setup {
        mut link, device, ..
    } = connect(Flash::new(vec![0; FLASH_LEN]), 0, 5);
    link.flash(&old, |_| {}).unwrap();
    // The line is cut mid-upload (the host dies): begin plus 5 chunks get through.
    let mut link = {
        let mut transport = link.into_inner();
        transport.cut_after = Some(6);
        Link::new(
            transport,
            LinkConfig {
                baud: None,
                base_timeout: Duration::from_millis(20),
                per_kib_timeout: Duration::ZERO,
                attempts: 2,
            },
        )
    };
    let mut sent = 0;
    let err = link.flash(&new, |p| sent = p.sent).unwrap_err();
    assert!(matches!(err, LinkError::Timeout { .. }), "{err}");
    assert_eq!(sent, 5 * ember_protocol::MAX_CHUNK);
    assert!(new.len() > sent * 2);
    drop(link);
    let flash = device.join().unwrap();
    let Setup {
        mut link, device, ..
    } = connect(flash, 0, 6);
    assert_eq!(link.info().unwrap().model.unwrap().hash, crc32(&old));
    link.flash(&new, |_| {}).unwrap();
    assert_eq!(link.info().unwrap().model.unwrap().hash, crc32(&new));
    drop(link);
    device.join().unwrap();
}
