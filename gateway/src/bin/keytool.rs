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
    let cli: Cli = match gateway::parse_cli() {
        Ok(c) => c,
        Err(code) => return code,
    };
    gateway::run_main(keytool::run(&cli.global, cli.command))
}
