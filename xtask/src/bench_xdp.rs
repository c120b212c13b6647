pub fn run(_a: Args) -> anyhow::Result<()> {
    Ok(())
}
#[derive(clap::Args)]
pub struct Args {}
