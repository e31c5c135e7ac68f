//! Device logic on the host: upload/commit/revert, boot fallback, inference, streaming, and
//! power loss at every flash operation of an upload.

mod common;

use ember_firmware::{
    BootOptions, Buffers, Device, DeviceConfig, Event, FlashLayout, NoClock, SimFlash,
};
use ember_protocol::*;
use ember_runtime::crc32::crc32;
use ember_runtime::host::{run_once, AlignedBytes};
use ember_runtime::Model;

type Flash = SimFlash<Vec<u8>>;
const FLASH_LEN: usize = 4096 * 16;

const CONFIG: DeviceConfig = DeviceConfig {
    board: "host-test",
    firmware_version: "test",
    supported_ops: ember_firmware::RUNTIME_OPS,
    stream: Some(StreamCaps {
        sample_rate_hz: 16000,
        channels: 1,
        max_window_bytes: 0,
    }),
};

fn layout() -> FlashLayout {
    FlashLayout::split(FLASH_LEN as u32, 4096).unwrap()
}

/// Boots a device on `flash` with owned buffers and runs `f` on it.
fn with_device<R>(
    flash: Flash,
    f: impl FnOnce(&mut Device<'_, Flash, NoClock>) -> R,
) -> (R, Flash) {
    let mut arena = vec![0u8; 8192];
    let mut window = vec![0u8; 1024];
    let buffers = Buffers {
        arena: &mut arena,
        window: &mut window,
        frontend: None,
    };
    let mut device = Device::new(
        flash,
        layout(),
        NoClock,
        CONFIG,
        buffers,
        BootOptions::default(),
    )
    .unwrap();
    let r = f(&mut device);
    (r, device.into_flash())
}

/// Reboots: power back on, boot again.
fn reboot(mut flash: Flash) -> Flash {
    flash.power_on();
    flash
}

struct Client {
    id: u16,
}

impl Client {
    /// Sends one request, returns the reply payload.
    fn call(&mut self, device: &mut Device<'_, Flash, NoClock>, body: RequestBody<'_>) -> Vec<u8> {
        self.id = self.id.wrapping_add(1).max(1);
        let mut frame = [0u8; MAX_FRAME];
        let n = encode_request(&Request { id: self.id, body }, &mut frame).unwrap();
        let mut replies = Vec::new();
        device.receive(&frame[..n], |r| replies.push(r.to_vec()));
        assert_eq!(replies.len(), 1, "exactly one reply per request");
        let mut decoder = FrameDecoder::<MAX_FRAME>::new();
        for &b in &replies[0] {
            if let Some(Ok(p)) = decoder.push(b) {
                let payload = p.to_vec();
                assert_eq!(decode_response(&payload).unwrap().id, self.id);
                return payload;
            }
        }
        panic!("no valid reply frame");
    }
}

fn body(payload: &[u8]) -> ResponseBody<'_> {
    decode_response(payload).unwrap().body
}

/// Uploads and commits; returns the commit reply (or the first error).
fn flash_model(
    client: &mut Client,
    device: &mut Device<'_, Flash, NoClock>,
    model: &[u8],
) -> Result<(), String> {
    let p = client.call(
        device,
        RequestBody::UploadBegin {
            size: model.len() as u32,
            hash: crc32(model),
        },
    );
    if let ResponseBody::Error(e) = body(&p) {
        return Err(e.to_string());
    }
    for (i, chunk) in model.chunks(MAX_CHUNK).enumerate() {
        let p = client.call(
            device,
            RequestBody::UploadChunk {
                offset: (i * MAX_CHUNK) as u32,
                data: chunk,
            },
        );
        let error = match body(&p) {
            ResponseBody::Error(e) => Some(e.to_string()),
            _ => None,
        };
        if let Some(e) = error {
            return Err(e);
        }
    }
    let p = client.call(device, RequestBody::UploadCommit);
    let result = match body(&p) {
        ResponseBody::Committed { hash, .. } if hash == crc32(model) => Ok(()),
        ResponseBody::Error(e) => Err(e.to_string()),
        other => Err(format!("{other:?}")),
    };
    result
}

fn running_hash(flash: Flash) -> (Option<u32>, Flash) {
    with_device(flash, |d| d.running_model().map(|(_, c)| c.hash))
}

#[test]
fn upload_commit_survives_reboot_and_reverts() {
    let old = common::mlp_model(16, 32, 4, 1);
    let new = common::mlp_model(40, 64, 6, 2);
    let mut client = Client { id: 0 };
    let ((), flash) = with_device(Flash::new(vec![0; FLASH_LEN]), |d| {
        let p = client.call(d, RequestBody::Info);
        let ResponseBody::Info(info) = body(&p) else {
            panic!()
        };
        assert!(info.model.is_none());
        assert_eq!(info.protocol_version, PROTOCOL_VERSION);
        flash_model(&mut client, d, &old).unwrap();
        flash_model(&mut client, d, &new).unwrap();
    });
    let (hash, flash) = running_hash(reboot(flash));
    assert_eq!(hash, Some(crc32(&new)));
    let ((), flash) = with_device(flash, |d| {
        let p = client.call(d, RequestBody::Revert);
        assert_eq!(
            body(&p),
            ResponseBody::Reverted {
                slot: 0,
                hash: crc32(&old)
            }
        );
    });
    let (hash, _) = running_hash(reboot(flash));
    assert_eq!(hash, Some(crc32(&old)));
}

#[test]
fn bad_uploads_leave_the_old_model_running() {
    let old = common::mlp_model(16, 32, 4, 1);
    let mut client = Client { id: 0 };
    let ((), flash) = with_device(Flash::new(vec![0; FLASH_LEN]), |d| {
        flash_model(&mut client, d, &old).unwrap();
        // Too big for a slot.
        let p = client.call(
            d,
            RequestBody::UploadBegin {
                size: FLASH_LEN as u32,
                hash: 0,
            },
        );
        assert!(matches!(
            body(&p),
            ResponseBody::Error(DeviceError::TooBigForSlot { .. })
        ));
        // Wrong hash.
        let mut wrong = old.clone();
        wrong[100] ^= 1;
        let p = client.call(
            d,
            RequestBody::UploadBegin {
                size: old.len() as u32,
                hash: crc32(&old),
            },
        );
        assert!(matches!(body(&p), ResponseBody::UploadReady { .. }));
        for (i, chunk) in wrong.chunks(MAX_CHUNK).enumerate() {
            client.call(
                d,
                RequestBody::UploadChunk {
                    offset: (i * MAX_CHUNK) as u32,
                    data: chunk,
                },
            );
        }
        let p = client.call(d, RequestBody::UploadCommit);
        assert!(matches!(
            body(&p),
            ResponseBody::Error(DeviceError::HashMismatch { .. })
        ));
        // Malformed model with a correct hash: runtime rejects it with its message.
        let mut malformed = old.clone();
        malformed[0] = b'X';
        let err = flash_model(&mut client, d, &malformed).unwrap_err();
        assert!(err.contains("magic"), "{err}");
        // Out-of-order and truncated uploads.
        client.call(
            d,
            RequestBody::UploadBegin {
                size: old.len() as u32,
                hash: crc32(&old),
            },
        );
        let p = client.call(
            d,
            RequestBody::UploadChunk {
                offset: 512,
                data: &old[512..1024],
            },
        );
        assert_eq!(
            body(&p),
            ResponseBody::Error(DeviceError::OutOfOrderChunk {
                expected: 0,
                got: 512
            })
        );
        client.call(
            d,
            RequestBody::UploadChunk {
                offset: 0,
                data: &old[..512],
            },
        );
        let p = client.call(d, RequestBody::UploadCommit);
        assert!(matches!(
            body(&p),
            ResponseBody::Error(DeviceError::UploadIncomplete { .. })
        ));
        assert_eq!(d.running_model().map(|(_, c)| c.hash), Some(crc32(&old)));
    });
    let (hash, _) = running_hash(reboot(flash));
    assert_eq!(hash, Some(crc32(&old)));
}

#[test]
fn infer_matches_run_once_and_reads_long_outputs() {
    let model_bytes = common::mlp_model(600, 8, 700, 3);
    let aligned = AlignedBytes::from_slice(&model_bytes);
    let model = Model::load(aligned.as_slice()).unwrap();
    let input: Vec<u8> = (0..600).map(|i| (i * 7 % 256) as u8).collect();
    let expected = run_once(&model, &[&input]).unwrap().concat();
    let mut client = Client { id: 0 };
    with_device(Flash::new(vec![0; FLASH_LEN]), |d| {
        flash_model(&mut client, d, &model_bytes).unwrap();
        let p = client.call(
            d,
            RequestBody::Infer {
                offset: 0,
                data: &input[..512],
                last: false,
            },
        );
        assert_eq!(body(&p), ResponseBody::InputAck { next_offset: 512 });
        let p = client.call(
            d,
            RequestBody::Infer {
                offset: 512,
                data: &input[512..],
                last: true,
            },
        );
        let ResponseBody::Prediction(prediction) = body(&p) else {
            panic!("{:?}", body(&p))
        };
        assert_eq!(prediction.output_len as usize, expected.len());
        let mut output = prediction.output.to_vec();
        while output.len() < expected.len() {
            let p = client.call(
                d,
                RequestBody::ReadOutput {
                    offset: output.len() as u32,
                },
            );
            let ResponseBody::OutputChunk { data, .. } = body(&p) else {
                panic!()
            };
            output.extend_from_slice(data);
        }
        assert_eq!(output, expected);
        // Wrong input size is refused.
        let p = client.call(
            d,
            RequestBody::Infer {
                offset: 0,
                data: &input[..10],
                last: true,
            },
        );
        assert!(matches!(
            body(&p),
            ResponseBody::Error(DeviceError::InputSize { .. })
        ));
    });
}

#[test]
fn another_command_ends_an_abandoned_stream() {
    let model_bytes = common::mlp_model(64, 16, 3, 4);
    let mut client = Client { id: 0 };
    with_device(Flash::new(vec![0; FLASH_LEN]), |d| {
        flash_model(&mut client, d, &model_bytes).unwrap();
        let p = client.call(
            d,
            RequestBody::StreamBegin {
                window: 64,
                hop: 16,
            },
        );
        assert!(matches!(body(&p), ResponseBody::StreamStarted { .. }));
        // The streaming host went away; a new one runs an inference.
        let p = client.call(
            d,
            RequestBody::Infer {
                offset: 0,
                data: &[0; 64],
                last: true,
            },
        );
        assert!(
            matches!(body(&p), ResponseBody::Prediction(_)),
            "{:?}",
            body(&p)
        );
        let p = client.call(d, RequestBody::StreamData { samples: &[0; 16] });
        assert_eq!(body(&p), ResponseBody::Error(DeviceError::NotStreaming));
    });
}

#[test]
fn stream_runs_every_hop_on_a_sliding_window() {
    let model_bytes = common::mlp_model(64, 16, 3, 4);
    let aligned = AlignedBytes::from_slice(&model_bytes);
    let model = Model::load(aligned.as_slice()).unwrap();
    let samples: Vec<u8> = (0..400u32).map(|i| (i * 31 % 251) as u8).collect();
    let hop = 16usize;
    let mut client = Client { id: 0 };
    with_device(Flash::new(vec![0; FLASH_LEN]), |d| {
        flash_model(&mut client, d, &model_bytes).unwrap();
        let p = client.call(
            d,
            RequestBody::StreamBegin {
                window: 64,
                hop: hop as u32,
            },
        );
        assert_eq!(
            body(&p),
            ResponseBody::StreamStarted {
                window: 64,
                hop: 16
            }
        );
        let mut got = Vec::new();
        let mut sent = 0usize;
        while sent < samples.len() {
            let end = (sent + 100).min(samples.len());
            let p = client.call(
                d,
                RequestBody::StreamData {
                    samples: &samples[sent..end],
                },
            );
            let ResponseBody::StreamResult(result) = body(&p) else {
                panic!()
            };
            for (i, inference) in result.inferences.iter().enumerate() {
                let out = &result.outputs[i * 3..i * 3 + 3];
                got.push((inference.end_sample, out.to_vec()));
            }
            sent += result.consumed as usize;
        }
        let p = client.call(d, RequestBody::StreamEnd);
        let expected_count = (samples.len() - 64) / hop + 1;
        assert_eq!(
            body(&p),
            ResponseBody::StreamEnded {
                samples: 400,
                inferences: expected_count as u32
            }
        );
        assert_eq!(got.len(), expected_count);
        for (k, (end_sample, out)) in got.iter().enumerate() {
            let start = k * hop;
            assert_eq!(*end_sample as usize, start + 64);
            let expected = run_once(&model, &[&samples[start..start + 64]])
                .unwrap()
                .concat();
            assert_eq!(out, &expected, "window {k}");
        }
    });
}

#[test]
fn retried_request_gets_cached_reply_without_rerunning() {
    let model = common::mlp_model(16, 32, 4, 1);
    with_device(Flash::new(vec![0; FLASH_LEN]), |d| {
        let mut frame = [0u8; MAX_FRAME];
        let begin = Request {
            id: 9,
            body: RequestBody::UploadBegin {
                size: model.len() as u32,
                hash: crc32(&model),
            },
        };
        let n = encode_request(&begin, &mut frame).unwrap();
        let mut replies = Vec::new();
        d.receive(&frame[..n], |r| replies.push(r.to_vec()));
        let chunk = Request {
            id: 10,
            body: RequestBody::UploadChunk {
                offset: 0,
                data: &model[..512],
            },
        };
        let n = encode_request(&chunk, &mut frame).unwrap();
        d.receive(&frame[..n], |r| replies.push(r.to_vec()));
        d.receive(&frame[..n], |r| replies.push(r.to_vec()));
        assert_eq!(replies[1], replies[2]);
        // Garbage and a reset request.
        d.receive(b"\x01\x02\x03\x00", |r| replies.push(r.to_vec()));
        assert_eq!(replies.len(), 4);
        let n = encode_request(
            &Request {
                id: 11,
                body: RequestBody::Reset,
            },
            &mut frame,
        )
        .unwrap();
        assert_eq!(
            d.receive(&frame[..n], |r| replies.push(r.to_vec())),
            Some(Event::Reset)
        );
    });
}

/// Runs `old` committed, then an upload+commit of `new` that loses power at flash operation
/// `fail_at`; returns the flash afterwards.
fn interrupted_upload(baseline: &Flash, new: &[u8], fail_at: Option<u32>) -> Flash {
    let mut flash = baseline.clone();
    flash.operations = 0;
    if let Some(n) = fail_at {
        flash.fail_after(n);
    }
    let mut client = Client { id: 100 };
    let (_, flash) = with_device(flash, |d| flash_model(&mut client, d, new));
    flash
}

fn power_loss_at_every_operation(baseline: Flash, old: Option<&[u8]>, new: &[u8]) -> usize {
    let full = interrupted_upload(&baseline, new, None);
    let total = full.operations;
    assert!(total > 3, "upload should take several flash operations");
    let (hash, _) = running_hash(reboot(full));
    assert_eq!(hash, Some(crc32(new)));
    let mut saw = [0usize; 2];
    for n in 0..total {
        let flash = interrupted_upload(&baseline, new, Some(n));
        assert!(!flash.is_powered(), "operation {n} should have lost power");
        let (hash, flash) = running_hash(reboot(flash));
        match hash {
            h if h == Some(crc32(new)) => saw[1] += 1,
            h if h == old.map(crc32) => saw[0] += 1,
            other => panic!("power loss at op {n}/{total}: boots {other:?}, neither old nor new"),
        }
        // And the device can still be updated afterwards.
        if n % 7 == 0 {
            let mut client = Client { id: 500 };
            let (r, _) = with_device(flash, |d| flash_model(&mut client, d, new));
            r.unwrap();
        }
    }
    // Operation `total - 1` is the boot-record write: torn, it must leave the old model.
    assert_eq!(
        saw[0], total as usize,
        "a torn operation never switches: {saw:?}"
    );
    total as usize
}

#[test]
fn power_loss_during_first_upload_leaves_no_model_or_the_new_one() {
    let new = common::mlp_model(40, 120, 6, 2);
    assert!(new.len() > 4096, "model should span several sectors");
    power_loss_at_every_operation(Flash::new(vec![0; FLASH_LEN]), None, &new);
}

#[test]
fn power_loss_at_every_write_boots_old_or_new() {
    let old = common::mlp_model(16, 32, 4, 1);
    let new = common::mlp_model(40, 120, 6, 2);
    let mut client = Client { id: 0 };
    let (r, baseline) = with_device(Flash::new(vec![0; FLASH_LEN]), |d| {
        flash_model(&mut client, d, &old)
    });
    r.unwrap();
    let ops = power_loss_at_every_operation(baseline, Some(&old), &new);
    assert!(ops > 10);
}

#[test]
fn power_loss_while_the_record_journal_wraps() {
    // Fill the record sector so the commit must erase the other record sector first.
    let old = common::mlp_model(16, 32, 4, 1);
    let other = common::mlp_model(16, 32, 4, 5);
    let new = common::mlp_model(40, 60, 6, 2);
    let mut client = Client { id: 0 };
    let ((), baseline) = with_device(Flash::new(vec![0; FLASH_LEN]), |d| {
        flash_model(&mut client, d, &other).unwrap();
        flash_model(&mut client, d, &old).unwrap();
        // 4096 / 32 = 128 records per sector; 2 are used.
        for _ in 0..125 {
            let p = client.call(d, RequestBody::Revert);
            assert!(matches!(body(&p), ResponseBody::Reverted { .. }));
        }
    });
    let (hash, baseline) = running_hash(reboot(baseline));
    assert_eq!(
        hash,
        Some(crc32(&other)),
        "125 reverts from `old` end on `other`"
    );
    let ((), baseline) = with_device(baseline, |d| {
        let p = client.call(d, RequestBody::Revert);
        assert!(matches!(body(&p), ResponseBody::Reverted { .. }));
    });
    // 128 records written: the next commit starts the other sector.
    power_loss_at_every_operation(baseline, Some(&old), &new);
}

#[test]
fn boot_falls_back_when_the_active_slot_is_corrupted() {
    let old = common::mlp_model(16, 32, 4, 1);
    let new = common::mlp_model(20, 32, 4, 2);
    let mut client = Client { id: 0 };
    let ((), flash) = with_device(Flash::new(vec![0; FLASH_LEN]), |d| {
        flash_model(&mut client, d, &old).unwrap();
        flash_model(&mut client, d, &new).unwrap();
    });
    // Corrupt slot 1 (new) behind the device's back: flip a bit in its constants.
    let mut bytes = flash.into_inner();
    let slot1 = layout().slots[1].start as usize;
    bytes[slot1 + new.len() - 3] ^= 0x10;
    let flash = Flash::with_contents(bytes);
    let ((hash, fell_back), _) = with_device(flash, |d| {
        (d.running_model().map(|(_, c)| c.hash), d.fell_back())
    });
    assert_eq!(hash, Some(crc32(&old)));
    assert!(fell_back);
}

/// The board's panic policy: the message of the panic before this boot is reported by Info, and a
/// model that crashed the board twice in a row is set aside for the last good one.
#[test]
fn after_repeated_panics_the_last_good_model_runs_and_the_panic_is_reported() {
    let old = common::mlp_model(16, 32, 4, 1);
    let new = common::mlp_model(40, 64, 6, 2);
    let mut client = Client { id: 0 };
    let ((), flash) = with_device(Flash::new(vec![0; FLASH_LEN]), |d| {
        flash_model(&mut client, d, &old).unwrap();
        flash_model(&mut client, d, &new).unwrap();
    });
    let boot = |flash: Flash, options: BootOptions<'static>, client: &mut Client| {
        let mut arena = vec![0u8; 8192];
        let mut window = vec![0u8; 1024];
        let buffers = Buffers {
            arena: &mut arena,
            window: &mut window,
            frontend: None,
        };
        let mut device = Device::new(flash, layout(), NoClock, CONFIG, buffers, options).unwrap();
        let p = client.call(&mut device, RequestBody::Info);
        let ResponseBody::Info(info) = body(&p) else {
            panic!("no info")
        };
        let result = (
            info.model.as_ref().map(|m| m.hash),
            info.last_panic.map(|s| s.to_string()),
            info.fell_back,
        );
        (result, device.into_flash())
    };
    // One panic: reported, the newest model still runs.
    let once = BootOptions {
        last_panic: Some("index out of bounds"),
        distrust_active: false,
    };
    let ((hash, panic, fell_back), flash) = boot(reboot(flash), once, &mut client);
    assert_eq!(hash, Some(crc32(&new)));
    assert_eq!(panic.as_deref(), Some("index out of bounds"));
    assert!(!fell_back);
    // Two in a row: the board distrusts the active model and boots the previous one.
    let twice = BootOptions {
        last_panic: Some("index out of bounds"),
        distrust_active: true,
    };
    let ((hash, _, fell_back), flash) = boot(reboot(flash), twice, &mut client);
    assert_eq!(
        hash,
        Some(crc32(&old)),
        "the last good model runs after repeated panics"
    );
    assert!(fell_back);
    // The choice is not permanent: a clean boot runs the newest model again.
    let ((hash, panic, _), _) = boot(reboot(flash), BootOptions::default(), &mut client);
    assert_eq!(hash, Some(crc32(&new)));
    assert_eq!(panic, None);
}
