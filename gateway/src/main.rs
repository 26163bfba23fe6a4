//! `gateway`: Letterlock's daemon and administration command.
//!
//! The daemon commands (`init`, `run`, `status`) arrive with their issues;
//! today it carries `gateway archive sync`, `gateway search` and
//! `gateway keytool`.

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
    /// The archive of decrypted mail
    #[command(subcommand)]
    Archive(ArchiveCommand),
    /// Contacts' keys, trust and verification (same as the `keytool` binary)
    #[command(subcommand)]
    Keytool(keytool::Command),
}

#[derive(Debug, Subcommand)]
enum ArchiveCommand {
    /// Fetch, decrypt and index mail from the provider (asks for the
    /// provider password, or reads LETTERLOCK_UPSTREAM_PASSWORD)
    Sync(gateway::archive_sync::SyncArgs),
}

fn main() -> std::process::ExitCode {
    let cli: Cli = match gateway::parse_cli() {
        Ok(c) => c,
        Err(code) => return code,
    };
    gateway::init_logging();
    match cli.command {
        Command::Keytool(command) => gateway::run_main(keytool::run(&cli.global, command)),
        Command::Search(args) => gateway::run_main(gateway::search::run(&cli.global, args)),
        Command::Archive(ArchiveCommand::Sync(args)) => {
            gateway::run_main(gateway::archive_sync::run(&cli.global, args))
        }
    }
}
