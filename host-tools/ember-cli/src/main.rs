//! `ember`: convert, inspect, run and benchmark models; push them to boards and stream data.

use clap::{Parser, Subcommand};

mod bench;
mod convert;
mod device;
mod inspect;
mod run;
mod stream;

/// ember: an edge inference runtime for Cortex-M microcontrollers and Linux boards.
///
/// Typical flow: `ember convert model.tflite -o model.emb`, check it with `ember inspect`,
/// try it on the host with `ember run`, then `ember flash` it to a board and `ember stream` data.
#[derive(Debug, Parser)]
#[command(name = "ember", version, about, long_about, propagate_version = true)]
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
    let result = match cli.command {
        Command::Convert(args) => convert::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Run(args) => run::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Device(command) => device::run(command),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
