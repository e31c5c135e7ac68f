//! Bytes on the wire and the time they take at common baud rates for uploading a model.
//!
//! `cargo run -p ember-protocol --example upload_time -- [MODEL_BYTES]` (default 50,000)

use ember_protocol::*;

fn main() {
    let model_len: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000);
    let model = vec![0xA5u8; model_len];
    let mut frame = [0u8; MAX_FRAME];
    let (mut up, mut down, mut round_trips) = (0usize, 0usize, 0usize);
    let mut id = 1u16;
    let mut send =
        |body: RequestBody<'_>, reply: ResponseBody<'_>, up: &mut usize, down: &mut usize| {
            *up += encode_request(&Request { id, body }, &mut frame).expect("request fits a frame");
            *down += encode_response(&Response { id, body: reply }, &mut frame)
                .expect("reply fits a frame");
            id = id.wrapping_add(1);
        };
    send(
        RequestBody::UploadBegin {
            size: model_len as u32,
            hash: 0xDEAD_BEEF,
        },
        ResponseBody::ChunkAck { next_offset: 0 },
        &mut up,
        &mut down,
    );
    round_trips += 1;
    for (i, chunk) in model.chunks(MAX_CHUNK).enumerate() {
        let next = (i * MAX_CHUNK + chunk.len()) as u32;
        send(
            RequestBody::UploadChunk {
                offset: (i * MAX_CHUNK) as u32,
                data: chunk,
            },
            ResponseBody::ChunkAck { next_offset: next },
            &mut up,
            &mut down,
        );
        round_trips += 1;
    }
    send(
        RequestBody::UploadCommit,
        ResponseBody::Committed {
            slot: 1,
            hash: 0xDEAD_BEEF,
        },
        &mut up,
        &mut down,
    );
    round_trips += 1;
    println!(
        "model {model_len} bytes: {up} bytes to the device, {down} back, {round_trips} round trips"
    );
    println!(
        "wire overhead: {:.1}%",
        100.0 * (up + down - model_len) as f64 / model_len as f64
    );
    for baud in [115_200u32, 921_600] {
        // 8N1: 10 bit times per byte; the link is half duplex in practice (request, then ack).
        let seconds = (up + down) as f64 * 10.0 / baud as f64;
        println!("{baud:>7} baud: {seconds:.2} s on the wire (plus device flash-write and validation time)");
    }
}
