//! `ember inspect` (under construction).

/// (under construction)
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`ember inspect` is not implemented yet")
}
