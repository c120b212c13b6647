use clap::Parser;
use proxy::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            takeover,
            adopt_stdio,
        } => run(cli.log_format, &config, takeover, adopt_stdio),
        command => {
            proxy::logging::init(cli.log_format, "info");
            proxy::cli::run_admin(command)
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `proxy run`: reads the configuration once (its [log] section sets the level;
/// RUST_LOG overrides), then hands it to the composition root.
fn run(
    format: proxy::logging::LogFormat,
    path: &std::path::Path,
    takeover: bool,
    adopt_stdio: bool,
) -> anyhow::Result<()> {
    let config = proxy::config::load(path);
    let level = config.as_ref().map_or("info", |c| c.log.level.as_str());
    proxy::logging::init(format, level);
    let config = config?;
    // Only a valid configuration asks the running daemon for anything.
    let inherited = match takeover {
        true => {
            let mut t = proxy::control::handover::takeover::request(&config.admin.socket)?;
            t.adopt_stdio = adopt_stdio;
            Some(t)
        }
        false => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(proxy::app::run(path, config, inherited))
}
