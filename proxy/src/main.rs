use clap::Parser;
use proxy::cli::{Cli, Command};
use proxy::ebpf::maps::List;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    proxy::logging::init(cli.log_format, "info");
    let result = match cli.command {
        Command::Run { config } => proxy::daemon::run(&config),
        Command::CheckConfig { file } => proxy::config::load(&file)
            .map(|_| println!("{}: OK", file.display()))
            .map_err(Into::into),
        Command::Block { action } => proxy::commands::list_command(List::Block, action),
        Command::Allow { action } => proxy::commands::list_command(List::Allow, action),
        Command::Stats(out) => proxy::commands::stats_command(&out),
        Command::Xdp { action } => proxy::commands::xdp_command(action),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
