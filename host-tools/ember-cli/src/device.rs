//! Commands that talk to a board over a serial port (under construction).

/// Device commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List serial ports and the known boards on them (under construction).
    Devices,
}

pub fn run(_command: Command) -> anyhow::Result<()> {
    anyhow::bail!("device commands are not implemented yet")
}
