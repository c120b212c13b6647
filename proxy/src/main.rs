use clap::Parser;
use proxy::cli::{Cli, Command};
use proxy::ebpf::maps::List;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => {
            // The log level comes from the file's [log] section (RUST_LOG overrides);
            // a file that does not load is reported by the daemon below.
            let level = proxy::config::load(&config)
                .map(|c| c.log.level)
                .unwrap_or_else(|_| "info".into());
            proxy::logging::init(cli.log_format, &level);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(proxy::daemon::run(&config)))
        }
        command => {
            proxy::logging::init(cli.log_format, "info");
            match command {
                Command::Run { .. } => unreachable!("handled above"),
                Command::CheckConfig { file } => proxy::daemon::check_config(&file)
                    .map(|_| println!("{}: OK", file.display()))
                    .map_err(Into::into),
                Command::Block { action } => proxy::commands::list_command(List::Block, action),
                Command::Allow { action } => proxy::commands::list_command(List::Allow, action),
                Command::Stats { out, daemon } => proxy::commands::stats_command(&out, &daemon),
                Command::Top { n, json, daemon } => proxy::commands::top_command(n, json, &daemon),
                Command::Xdp { action } => proxy::commands::xdp_command(action),
            }
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
