//! `ember bench` (under construction).

/// (under construction)
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`ember bench` is not implemented yet")
}
