//! Runs the built `ember` binary end to end on the shared models.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ember(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(args)
        .output()
        .expect("run ember")
}

fn shared_model(name: &str) -> PathBuf {
    let dir = match std::env::var_os("EMBER_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    dir.join("models").join(name)
}

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ember-cli-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn convert(dir: &Path, model: &str, labels: Option<&str>) -> PathBuf {
    let emb = dir.join(model.replace(".tflite", ".emb"));
    let src = shared_model(model);
    let mut args = vec![
        "convert",
        src.to_str().unwrap(),
        "-o",
        emb.to_str().unwrap(),
    ];
    if let Some(l) = labels {
        args.extend(["--labels", l]);
    }
    let out = ember(&args);
    assert!(
        out.status.success(),
        "convert failed: {}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("arena"));
    emb
}

#[test]
fn help_teaches_with_examples() {
    for cmd in ["convert", "inspect", "run", "bench"] {
        let out = ember(&[cmd, "--help"]);
        assert!(out.status.success());
        let help = text(&out.stdout);
        assert!(help.contains("Examples:"), "{cmd} --help has no examples");
        assert!(help.contains(&format!("ember {cmd}")), "{cmd} --help");
    }
}

#[test]
fn convert_inspect_run_bench_kws() {
    let dir = temp_dir("kws");
    let emb = convert(
        &dir,
        "kws_ref_model.tflite",
        Some("down,go,left,no,off,on,right,stop,up,yes,silence,unknown"),
    );
    let emb_s = emb.to_str().unwrap();

    let out = ember(&["inspect", emb_s, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["totals"]["ops"], 13);
    assert!(doc["totals"]["arena_bytes"].as_u64().unwrap() <= 18_000);
    assert_eq!(doc["totals"]["macs"], 2_656_768);
    assert_eq!(doc["ops"][0]["op"], "CONV_2D");
    assert_eq!(doc["labels"][9], "yes");

    let out = ember(&["inspect", emb_s]);
    assert!(text(&out.stdout).contains("DepthwiseConv2dS8"));

    // A raw input of the right size runs and prints ranked labels.
    let input = dir.join("zeros.bin");
    std::fs::write(&input, vec![0u8; 490]).unwrap();
    let out = ember(&["run", emb_s, "--input", input.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["output"]["values"].as_array().unwrap().len(), 12);
    assert!(doc["top"][0]["label"].is_string());

    // .npy output round trip.
    let npy = dir.join("out.npy");
    let out = ember(&[
        "run",
        emb_s,
        "--input",
        input.to_str().unwrap(),
        "--output",
        npy.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let written = std::fs::read(&npy).unwrap();
    assert!(written.starts_with(b"\x93NUMPY"));
    // The header is padded to 64 bytes; 12 int8 scores follow.
    assert_eq!(written.len() % 64, 12);

    let out = ember(&[
        "bench",
        emb_s,
        "--runs",
        "2",
        "--warmup",
        "0",
        "--profile",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["p50_us"].as_f64().unwrap() > 0.0);
    assert_eq!(doc["profile"].as_array().unwrap().len(), 13);
}

#[test]
fn wrong_input_size_says_what_is_needed() {
    let dir = temp_dir("wrong");
    let emb = convert(&dir, "hello_world_int8.tflite", None);
    let input = dir.join("bad.bin");
    std::fs::write(&input, [0u8; 3]).unwrap();
    let out = ember(&[
        "run",
        emb.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("needs exactly 1"), "{err}");
}

#[test]
fn inspecting_a_tflite_file_suggests_convert() {
    let src = shared_model("hello_world_int8.tflite");
    let out = ember(&["inspect", src.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("ember convert"));
}

#[test]
fn corrupt_tflite_fails_cleanly() {
    let dir = temp_dir("corrupt");
    let bad = dir.join("bad.tflite");
    let mut bytes = std::fs::read(shared_model("hello_world_int8.tflite")).unwrap();
    bytes.truncate(100);
    std::fs::write(&bad, bytes).unwrap();
    let out = ember(&["convert", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).starts_with("error: cannot convert"));
}

const KWS_LABELS: &str = "down,go,left,no,off,on,right,stop,up,yes,silence,unknown";

fn kws_with_frontend(dir: &Path) -> PathBuf {
    let emb = dir.join("kws.emb");
    let src = shared_model("kws_ref_model.tflite");
    let out = ember(&[
        "convert",
        src.to_str().unwrap(),
        "-o",
        emb.to_str().unwrap(),
        "--frontend",
        "mlperf-kws",
        "--labels",
        KWS_LABELS,
    ]);
    assert!(
        out.status.success(),
        "convert failed: {}",
        text(&out.stderr)
    );
    emb
}

fn shared_audio(name: &str) -> PathBuf {
    shared_model("x")
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("audio")
        .join(name)
}

#[test]
fn run_on_a_recording_names_the_word() {
    let dir = temp_dir("wav");
    let emb = kws_with_frontend(&dir);
    let wav = shared_audio("yes_1000ms.wav");
    let out = ember(&[
        "run",
        emb.to_str().unwrap(),
        "--input",
        wav.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["top"][0]["label"], "yes", "{doc}");
    let silence = shared_audio("silence_1000ms.wav");
    let out = ember(&[
        "run",
        emb.to_str().unwrap(),
        "--input",
        silence.to_str().unwrap(),
    ]);
    let printed = text(&out.stdout);
    let first = printed.lines().nth(1).unwrap_or_default();
    assert!(first.trim_start().starts_with("silence"), "{printed}");
}

#[test]
fn audio_into_a_model_without_front_end_says_how_to_fix_it() {
    let dir = temp_dir("wav-nofrontend");
    let emb = convert(&dir, "kws_ref_model.tflite", None);
    let wav = shared_audio("yes_1000ms.wav");
    let out = ember(&[
        "run",
        emb.to_str().unwrap(),
        "--input",
        wav.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--frontend"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn device_commands_have_distinct_exit_codes() {
    let dir = temp_dir("exit-codes");
    let missing = dir.join("missing.emb");
    // A model file that cannot be read is bad input (2), before any port is touched.
    let out = ember(&[
        "flash",
        "--port",
        "/nonexistent/tty",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // A port that cannot be opened is a link failure (4).
    let input = dir.join("input.bin");
    std::fs::write(&input, [0u8; 4]).unwrap();
    let out = ember(&[
        "infer",
        "--port",
        "/nonexistent/tty",
        "--input",
        input.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let out = ember(&["info", "--port", "/nonexistent/tty"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    // A stream input of an unknown kind is bad input (2).
    let out = ember(&[
        "stream",
        "--port",
        "/nonexistent/tty",
        "--input",
        input.to_str().unwrap(),
        "--window",
        "16",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let help = text(&ember(&["flash", "--help"]).stdout);
    assert!(
        help.contains("Exit codes:") && help.contains("device refused"),
        "{help}"
    );
}

#[test]
fn devices_json_is_an_array() {
    let out = ember(&["devices", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for port in doc.as_array().expect("a JSON array") {
        assert!(port["port"].is_string(), "{port}");
    }
}

/// A mono 16-bit WAV of the given recordings back to back.
fn concatenated_wav(path: &Path, parts: &[&str]) {
    let mut pcm = Vec::new();
    for part in parts {
        let bytes = std::fs::read(shared_audio(part)).unwrap();
        // The shared recordings are canonical 44-byte-header PCM files.
        pcm.extend_from_slice(&bytes[44..]);
    }
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + pcm.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&16_000u32.to_le_bytes());
    wav.extend_from_slice(&32_000u32.to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(pcm.len() as u32).to_le_bytes());
    wav.extend_from_slice(&pcm);
    std::fs::write(path, wav).unwrap();
}

#[test]
fn host_stream_slides_over_a_recording_like_the_board() {
    let dir = temp_dir("host-stream");
    let emb = kws_with_frontend(&dir);
    let wav = dir.join("yes-silence-yes.wav");
    concatenated_wav(
        &wav,
        &["yes_1000ms.wav", "silence_1000ms.wav", "yes_1000ms.wav"],
    );
    let out = ember(&[
        "stream",
        "--host",
        "--model",
        emb.to_str().unwrap(),
        "--input",
        wav.to_str().unwrap(),
        "--hop",
        "8000",
        "--as-fast-as-possible",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let ends: Vec<u64> = lines
        .iter()
        .map(|l| l["end_sample"].as_u64().unwrap())
        .collect();
    assert_eq!(ends, [16_000, 24_000, 32_000, 40_000, 48_000]);
    // Windows that line up with a whole recording get that recording's word.
    assert_eq!(lines[0]["top"][0]["label"], "yes", "{}", lines[0]);
    assert_eq!(lines[2]["top"][0]["label"], "silence", "{}", lines[2]);
    assert_eq!(lines[4]["top"][0]["label"], "yes", "{}", lines[4]);
    assert!(lines[0]["host_us"].as_f64().unwrap() > 0.0);
}

#[test]
fn host_stream_needs_the_model() {
    let wav = shared_audio("yes_1000ms.wav");
    let out = ember(&["stream", "--host", "--input", wav.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--model"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn host_stream_runs_a_sensor_model_on_csv_rows() {
    let dir = temp_dir("host-stream-imu");
    let emb = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/imu-basicmotions/basicmotions.emb");
    // 250 rows of 6 channels; the model's window is 100 rows (600 elements).
    let mut csv = String::from("acc_x,acc_y,acc_z,gyr_x,gyr_y,gyr_z\n");
    for t in 0..250 {
        let phase = t as f64 * 0.7;
        let row: Vec<String> = (0..6)
            .map(|c| format!("{:.3}", (phase + c as f64).sin() * 2.0))
            .collect();
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    let input = dir.join("imu.csv");
    std::fs::write(&input, csv).unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "stream",
            "--host",
            "--model",
            emb.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--as-fast-as-possible",
            "--json",
        ];
        args.extend_from_slice(extra);
        ember(&args)
    };
    let out = run(&["--rate", "60", "--hop", "300"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let labels = ["Standing", "Running", "Walking", "Badminton"];
    let mut ends = Vec::new();
    for line in text(&out.stdout).lines() {
        let doc: serde_json::Value = serde_json::from_str(line).unwrap();
        ends.push(doc["end_sample"].as_u64().unwrap());
        let label = doc["top"][0]["label"].as_str().unwrap().to_string();
        assert!(labels.contains(&label.as_str()), "{doc}");
    }
    assert_eq!(ends, [600, 900, 1200, 1500]);
    // A sensor stream has no inherent rate on the host: it must be given.
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--rate"),
        "{}",
        text(&out.stderr)
    );
}
