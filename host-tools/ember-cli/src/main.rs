//! `ember`: convert, inspect, run and benchmark models; push them to boards and stream data.

use clap::{Parser, Subcommand};

mod bench;
mod board_bench;
mod convert;
mod device;
mod host_stream;
mod inspect;
mod run;
mod stream;

const DEVICE_EXIT_CODES_HELP: &str =
    "Device commands (devices, info, flash, infer, stream, emulate) \
exit with 0 on success, 1 on any other failure, 2 for a usage error or bad input file, 3 when the \
device refused the request, 4 when the link failed (no board, port cannot be opened, timeout, \
corrupted replies). Other commands exit with 1 on failure.";

/// ember: an edge inference runtime for Cortex-M microcontrollers and Linux boards.
///
/// Typical flow: `ember convert model.tflite -o model.emb`, check it with `ember inspect`,
/// try it on the host with `ember run`, then `ember flash` it to a board and `ember stream` data.
#[derive(Debug, Parser)]
#[command(name = "ember", version, about, long_about, propagate_version = true)]
#[command(after_long_help = DEVICE_EXIT_CODES_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Convert(convert::Args),
    Inspect(inspect::Args),
    Run(run::Args),
    Bench(bench::Args),
    #[command(flatten)]
    Device(device::Command),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Device commands choose distinct exit codes (see `device::EXIT_CODES_HELP`).
    let (result, coded) = match cli.command {
        Command::Convert(args) => (convert::run(args), false),
        Command::Inspect(args) => (inspect::run(args), false),
        Command::Run(args) => (run::run(args), false),
        Command::Bench(args) => (bench::run(args), false),
        Command::Device(command) => (device::run(command), true),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            match coded {
                true => std::process::ExitCode::from(device::exit_code(&err)),
                false => std::process::ExitCode::FAILURE,
            }
        }
    }
}
