//! Streaming audio through the device's front end: a real recording in, the converted MLPerf
//! keyword model's predictions out, equal to the host computing the same window.

use ember_firmware::{
    AudioFrontend, BootOptions, Buffers, Device, DeviceConfig, FlashLayout, NoClock, SimFlash,
};
use ember_protocol::*;
use ember_runtime::crc32::crc32;
use ember_runtime::frontend::wav::Wav;
use ember_runtime::frontend::{Frontend, FrontendConfig};
use ember_runtime::host::{run_once, AlignedBytes};
use ember_runtime::Model;

type Flash = SimFlash<Vec<u8>>;
const FLASH_LEN: usize = 4096 * 32;
const LABELS: [&str; 12] = [
    "down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes", "silence", "unknown",
];

fn shared(path: &str) -> std::path::PathBuf {
    let dir = match std::env::var_os("EMBER_SHARED_DIR") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    };
    dir.join(path)
}

fn kws_model() -> Vec<u8> {
    let tflite =
        std::fs::read(shared("models/kws_ref_model.tflite")).expect("shared kws_ref_model.tflite");
    let options = ember_convert::ConvertOptions {
        labels: LABELS.iter().map(|s| s.to_string()).collect(),
        metadata: vec![(
            "frontend".into(),
            FrontendConfig::mlperf_kws().to_metadata(),
        )],
    };
    ember_convert::convert(&tflite, &options).expect("convert kws")
}

struct Client {
    id: u16,
}

impl Client {
    fn call(&mut self, device: &mut Device<'_, Flash, NoClock>, body: RequestBody<'_>) -> Vec<u8> {
        self.id = self.id.wrapping_add(1).max(1);
        let mut frame = [0u8; MAX_FRAME];
        let n = encode_request(&Request { id: self.id, body }, &mut frame).unwrap();
        let mut replies = Vec::new();
        device.receive(&frame[..n], |r| replies.push(r.to_vec()));
        let mut decoder = FrameDecoder::<MAX_FRAME>::new();
        for &b in replies.concat().iter() {
            if let Some(Ok(p)) = decoder.push(b) {
                return p.to_vec();
            }
        }
        panic!("no valid reply frame");
    }
}

fn body(payload: &[u8]) -> ResponseBody<'_> {
    decode_response(payload).unwrap().body
}

#[test]
fn streamed_recordings_are_classified_like_the_host() {
    let model_bytes = kws_model();
    let mut pcm: Vec<u8> = Vec::new();
    let mut clips: Vec<Vec<i16>> = Vec::new();
    for name in ["yes_1000ms.wav", "silence_1000ms.wav"] {
        let bytes = std::fs::read(shared(&format!("audio/{name}"))).unwrap();
        let wav = Wav::parse(&bytes).unwrap();
        let samples: Vec<i16> = wav.samples().collect();
        assert_eq!(samples.len(), 16000);
        pcm.extend(samples.iter().flat_map(|s| s.to_le_bytes()));
        clips.push(samples);
    }
    let config = FrontendConfig::mlperf_kws();
    let mut workspace = vec![0f32; config.workspace_len()];
    let mut features = vec![0f32; config.feature_len()];
    let mut arena = vec![0u8; 32 * 1024];
    let mut window = vec![0u8; 32000];
    let mut frontend = AudioFrontend::new(&mut workspace, &mut features);
    let buffers = Buffers {
        arena: &mut arena,
        window: &mut window,
        frontend: Some(&mut frontend),
    };
    let device_config = DeviceConfig {
        board: "host-test",
        firmware_version: "test",
        supported_ops: ember_firmware::RUNTIME_OPS,
        stream: Some(StreamCaps {
            sample_rate_hz: 16000,
            channels: 1,
            max_window_bytes: 0,
        }),
    };
    let layout = FlashLayout::split(FLASH_LEN as u32, 4096).unwrap();
    let mut device = Device::new(
        Flash::new(vec![0; FLASH_LEN]),
        layout,
        NoClock,
        device_config,
        buffers,
        BootOptions::default(),
    )
    .unwrap();
    let mut client = Client { id: 0 };
    let p = client.call(
        &mut device,
        RequestBody::UploadBegin {
            size: model_bytes.len() as u32,
            hash: crc32(&model_bytes),
        },
    );
    assert!(
        !matches!(body(&p), ResponseBody::Error(_)),
        "{:?}",
        body(&p)
    );
    for (i, chunk) in model_bytes.chunks(MAX_CHUNK).enumerate() {
        let p = client.call(
            &mut device,
            RequestBody::UploadChunk {
                offset: (i * MAX_CHUNK) as u32,
                data: chunk,
            },
        );
        assert!(
            !matches!(body(&p), ResponseBody::Error(_)),
            "{:?}",
            body(&p)
        );
    }
    let p = client.call(&mut device, RequestBody::UploadCommit);
    assert!(
        matches!(body(&p), ResponseBody::Committed { .. }),
        "{:?}",
        body(&p)
    );

    // One-second windows, one hop per clip: each inference sees exactly one recording.
    let p = client.call(
        &mut device,
        RequestBody::StreamBegin {
            window: 16000,
            hop: 16000,
        },
    );
    assert_eq!(
        body(&p),
        ResponseBody::StreamStarted {
            window: 16000,
            hop: 16000
        }
    );
    let mut outputs: Vec<Vec<u8>> = Vec::new();
    let mut sent = 0;
    while sent < pcm.len() {
        let end = (sent + MAX_CHUNK).min(pcm.len());
        let p = client.call(
            &mut device,
            RequestBody::StreamData {
                samples: &pcm[sent..end],
            },
        );
        let ResponseBody::StreamResult(result) = body(&p) else {
            panic!("{:?}", body(&p))
        };
        let len = result.output_len as usize;
        for i in 0..result.inferences.len() {
            outputs.push(result.outputs[i * len..(i + 1) * len].to_vec());
        }
        sent += result.consumed as usize;
    }
    assert_eq!(outputs.len(), 2);

    let aligned = AlignedBytes::from_slice(&model_bytes);
    let model = Model::load(aligned.as_slice()).unwrap();
    let quant = model.inputs()[0].quant.unwrap();
    for (clip, (output, expected_word)) in clips.iter().zip(outputs.iter().zip(["yes", "silence"]))
    {
        let mut ws = vec![0f32; config.workspace_len()];
        let mut fe = Frontend::new(&config, &mut ws).unwrap();
        let mut feats = vec![0f32; config.feature_len()];
        let mut input = vec![0i8; config.feature_len()];
        fe.process_clip_quantized(clip, quant, &mut feats, &mut input)
            .unwrap();
        let input: Vec<u8> = input.into_iter().map(|v| v as u8).collect();
        let host = run_once(&model, &[&input]).unwrap();
        assert_eq!(
            &host[0], output,
            "device and host differ on the {expected_word} clip"
        );
        let best = (0..12).max_by_key(|&i| output[i] as i8).unwrap();
        assert_eq!(LABELS[best], expected_word);
    }
}
