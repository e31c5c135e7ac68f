//! Exact-byte tests: these pin the wire format. If one fails, the protocol changed; read the
//! stability section of docs/PROTOCOL.md before touching the expected bytes.
//! The expected frames were computed independently (Python: zlib.crc32 and a separate COBS).

use ember_protocol::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn request_frame(request: &Request<'_>) -> Vec<u8> {
    let mut out = [0u8; MAX_FRAME];
    let n = encode_request(request, &mut out).unwrap();
    out[..n].to_vec()
}

fn response_frame(response: &Response<'_>) -> Vec<u8> {
    let mut out = [0u8; MAX_FRAME];
    let n = encode_response(response, &mut out).unwrap();
    out[..n].to_vec()
}

fn decode_all(bytes: &[u8]) -> Vec<Result<Vec<u8>, FrameError>> {
    let mut decoder = FrameDecoder::<MAX_FRAME>::new();
    let mut out = Vec::new();
    for &b in bytes {
        if let Some(result) = decoder.push(b) {
            out.push(result.map(|p| p.to_vec()));
        }
    }
    out
}

#[test]
fn info_request_bytes() {
    let frame = request_frame(&Request {
        id: 1,
        body: RequestBody::Info,
    });
    assert_eq!(frame, hex("020105be23c25800"));
}

#[test]
fn upload_begin_bytes() {
    let frame = request_frame(&Request {
        id: 42,
        body: RequestBody::UploadBegin {
            size: 1024,
            hash: 0x1234_5678,
        },
    });
    assert_eq!(frame, hex("0e2a018008f8acd19101791dd6b500"));
}

#[test]
fn upload_chunk_bytes_with_zero_in_data() {
    let frame = request_frame(&Request {
        id: 300,
        body: RequestBody::UploadChunk {
            offset: 512,
            data: &[0, 1, 2],
        },
    });
    assert_eq!(frame, hex("07ac0202800403070102993eb33f00"));
}

#[test]
fn hash_mismatch_error_bytes() {
    let frame = response_frame(&Response {
        id: 42,
        body: ResponseBody::Error(DeviceError::HashMismatch {
            expected: 1,
            actual: 2,
        }),
    });
    assert_eq!(frame, hex("0a2a0d080102b0193f4600"));
}

#[test]
fn prediction_bytes() {
    let frame = response_frame(&Response {
        id: 7,
        body: ResponseBody::Prediction(Prediction {
            cycles: 1000,
            instructions: None,
            output_len: 2,
            output: &[0x80, 0x7f],
        }),
    });
    assert_eq!(frame, hex("050707e807090202807fb54053f700"));
}

#[test]
fn info_reply_roundtrips_and_fits() {
    let mut ops = heapless::Vec::new();
    for name in [
        "FULLY_CONNECTED",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "AVERAGE_POOL_2D",
        "SOFTMAX",
    ] {
        ops.push(name).unwrap();
    }
    let tensor = TensorInfo {
        dtype: DType::I8,
        shape: heapless::Vec::from_slice(&[1, 49, 40, 1, 1]).unwrap(),
        quant: Some(Quant {
            scale: 0.1,
            zero_point: -128,
        }),
    };
    let info = DeviceInfo {
        protocol_version: PROTOCOL_VERSION,
        board: "a-board-name-of-thirty-two-chars",
        firmware_version: "0.1.0+abcdef",
        max_payload: MAX_PAYLOAD as u16,
        max_chunk: MAX_CHUNK as u16,
        arena_size: 200_000,
        slots: heapless::Vec::from_slice(&[
            SlotInfo {
                capacity: 1 << 20,
                contents: Some(SlotContents {
                    size: 12345,
                    hash: 0xdead_beef,
                }),
                running: true,
            },
            SlotInfo {
                capacity: 1 << 20,
                contents: None,
                running: false,
            },
        ])
        .unwrap(),
        model: Some(ModelInfo {
            slot: 0,
            size: 12345,
            hash: 0xdead_beef,
            arena_needed: 9000,
            op_count: 14,
            inputs: heapless::Vec::from_slice(&[tensor.clone(), tensor.clone()]).unwrap(),
            outputs: heapless::Vec::from_slice(&[tensor.clone(), tensor]).unwrap(),
        }),
        ops,
        stream: Some(StreamCaps {
            sample_rate_hz: 16000,
            channels: 1,
            max_window_bytes: 16000,
        }),
        fell_back: false,
        last_panic: Some("panicked at src/main.rs:10:5: index out of bounds"),
    };
    let response = Response {
        id: 9,
        body: ResponseBody::Info(info),
    };
    let frame = response_frame(&response);
    assert!(frame.len() <= MAX_FRAME);
    let decoded = decode_all(&frame);
    assert_eq!(decoded.len(), 1);
    let payload = decoded[0].clone().unwrap();
    assert_eq!(decode_response(&payload).unwrap(), response);
}

#[test]
fn largest_chunk_fits_a_frame() {
    let data = [0u8; MAX_CHUNK];
    let frame = request_frame(&Request {
        id: u16::MAX,
        body: RequestBody::UploadChunk {
            offset: u32::MAX,
            data: &data,
        },
    });
    assert!(frame.len() <= MAX_FRAME);
    let infer = request_frame(&Request {
        id: u16::MAX,
        body: RequestBody::Infer {
            offset: u32::MAX,
            data: &data,
            last: true,
        },
    });
    assert!(infer.len() <= MAX_FRAME);
}

#[test]
fn oversized_message_is_refused() {
    let data = [1u8; MAX_PAYLOAD];
    let mut out = [0u8; MAX_FRAME];
    let request = Request {
        id: 1,
        body: RequestBody::StreamData { samples: &data },
    };
    assert_eq!(
        encode_request(&request, &mut out),
        Err(CodecError::TooLarge)
    );
}

#[test]
fn decoder_resyncs_after_garbage_truncation_and_corruption() {
    let good = request_frame(&Request {
        id: 5,
        body: RequestBody::Info,
    });
    let mut stream = Vec::new();
    stream.extend_from_slice(b"\x13\x37garbage before hello"); // no delimiter yet
    stream.push(0);
    stream.extend_from_slice(&good[..good.len() / 2]); // truncated frame...
    stream.extend_from_slice(&good); // ...swallowed by the next one's start
    let mut corrupted = good.clone();
    corrupted[2] ^= 0x40;
    stream.extend_from_slice(&corrupted);
    stream.extend_from_slice(&good);
    stream.extend_from_slice(&good); // duplicate
    stream.extend_from_slice(&[0, 0, 0]); // idle zeros are ignored
    let results = decode_all(&stream);
    let oks = results.iter().filter(|r| r.is_ok()).count();
    let errors = results.iter().filter(|r| r.is_err()).count();
    assert_eq!(oks, 2, "{results:?}");
    assert_eq!(errors, 3, "{results:?}");
    for ok in results.iter().flatten() {
        assert_eq!(
            decode_request(ok).unwrap(),
            Request {
                id: 5,
                body: RequestBody::Info
            }
        );
    }
}

#[test]
fn overlong_frame_reports_once_then_resyncs() {
    let mut stream = vec![0x55u8; MAX_FRAME * 3];
    stream.push(0);
    let good = request_frame(&Request {
        id: 6,
        body: RequestBody::Reset,
    });
    stream.extend_from_slice(&good);
    let results = decode_all(&stream);
    assert_eq!(results.len(), 2);
    assert_eq!(results[0], Err(FrameError::TooLong));
    assert!(results[1].is_ok());
}

#[test]
fn random_bytes_never_panic_and_single_bit_flips_are_caught() {
    // Deterministic xorshift so failures reproduce.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut decoder = FrameDecoder::<MAX_FRAME>::new();
    for _ in 0..200_000 {
        let byte = (next() % 7) as u8; // many zeros and small codes: the hard cases
        if let Some(Ok(payload)) = decoder.push(byte) {
            let _ = decode_request(payload);
        }
    }
    let good = request_frame(&Request {
        id: 77,
        body: RequestBody::UploadChunk {
            offset: 0,
            data: &[9; 40],
        },
    });
    for bit in 0..(good.len() - 1) * 8 {
        let mut flipped = good.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let results = decode_all(&flipped);
        assert!(
            results.iter().all(|r| r.is_err()),
            "bit {bit} flip went unnoticed: {results:?}"
        );
    }
}
