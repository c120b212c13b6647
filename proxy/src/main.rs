use clap::Parser;
use proxy::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => {
            // The log level comes from the file's [log] section (RUST_LOG overrides);
            // a file that does not load is reported by the daemon below.
            let level = proxy::config::load(&config)
                .map(|c| c.log.level)
                .unwrap_or_else(|_| "info".into());
            proxy::logging::init(cli.log_format, &level);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(proxy::daemon::run(&config))
        }
        Command::CheckConfig { file } => {
            proxy::logging::init(cli.log_format, "info");
            proxy::daemon::check_config(&file)?;
            println!("{}: OK", file.display());
            Ok(())
        }
    }
}
