//! `gateway`: Letterlock's daemon and administration command.
//!
//! The daemon commands (`init`, `run`, `status`, `archive sync`) arrive with
//! their issues; today it carries `gateway search` and `gateway keytool`.

use clap::{Parser, Subcommand};
use gateway::keytool::{self, Global};

#[derive(Debug, Parser)]
#[command(
    name = "gateway",
    version,
    about = "Letterlock: end-to-end encrypting mail gateway"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Search the archive of decrypted mail
    Search(gateway::search::SearchArgs),
    /// Contacts' keys, trust and verification (same as the `keytool` binary)
    #[command(subcommand)]
    Keytool(keytool::Command),
}

fn main() -> std::process::ExitCode {
    let cli: Cli = match gateway::parse_cli() {
        Ok(c) => c,
        Err(code) => return code,
    };
    match cli.command {
        Command::Keytool(command) => gateway::run_main(keytool::run(&cli.global, command)),
        Command::Search(args) => gateway::run_main(gateway::search::run(&cli.global, args)),
    }
}
