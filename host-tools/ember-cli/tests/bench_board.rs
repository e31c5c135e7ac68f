//! `ember bench --board` failures that need no emulator or cross toolchain: the board crate is
//! located and checked before anything is built. The real run on QEMU is
//! scripts/firmware/mcu-budget.sh (called by scripts/firmware/test-qemu.sh).

use std::path::PathBuf;
use std::process::{Command, Output};

fn ember_in(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run ember")
}

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ember-bench-board-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_directory_without_board_toml_is_not_a_board() {
    let dir = temp_dir("no-toml");
    let out = ember_in(
        &dir,
        &[
            "bench",
            "model.emb",
            "--board",
            "qemu-mps2-an386",
            "--board-dir",
            dir.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("is not a board crate"), "{err}");
    assert!(err.contains("board.toml"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_board_dir_for_another_board_is_refused() {
    let repo_board = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../boards/qemu-mps2-an386");
    let dir = temp_dir("other-board");
    let out = ember_in(
        &dir,
        &[
            "bench",
            "model.emb",
            "--board",
            "nrf52840-dk",
            "--board-dir",
            repo_board.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("describes board qemu-mps2-an386, not nrf52840-dk"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_board_names_where_it_looked() {
    let dir = temp_dir("unknown");
    let out = ember_in(&dir, &["bench", "model.emb", "--board", "no-such-board"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot find the board crate for no-such-board"),
        "{err}"
    );
    assert!(err.contains("--board-dir"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_model_fails_before_any_build() {
    let repo_board = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../boards/qemu-mps2-an386");
    let dir = temp_dir("missing-model");
    let out = ember_in(
        &dir,
        &[
            "bench",
            "missing.emb",
            "--board",
            "qemu-mps2-an386",
            "--board-dir",
            repo_board.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("cannot read missing.emb"), "{err}");
    assert!(
        !err.contains("building"),
        "built before checking the model: {err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn board_options_need_board() {
    let dir = temp_dir("needs-board");
    let out = ember_in(&dir, &["bench", "model.emb", "--board-dir", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--board"), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(&dir);
}
