//! `keytool`: manage contacts' keys (also reachable as `gateway keytool`).

use clap::Parser;
use gateway::keytool::{self, Command, Global};

#[derive(Debug, Parser)]
#[command(
    name = "keytool",
    version,
    about = "Letterlock: contacts' keys, trust and verification"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return std::process::ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    gateway::run_main(keytool::run(&cli.global, cli.command))
}
