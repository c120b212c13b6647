use clap::Parser;
use proxy::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    proxy::logging::init(cli.log_format, "info");
    match cli.command {
        Command::Run { config } => {
            let config = proxy::config::load(&config)?;
            tracing::info!(?config, "loaded configuration");
            anyhow::bail!("`proxy run` is not implemented yet")
        }
        Command::CheckConfig { file } => {
            proxy::config::load(&file)?;
            println!("{}: OK", file.display());
            Ok(())
        }
    }
}
