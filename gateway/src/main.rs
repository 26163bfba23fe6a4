//! `gateway`: Letterlock's daemon and administration command (SPEC.md,
//! "Command line").

use clap::{CommandFactory, Parser, Subcommand};
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
    /// Add an account: make its key, write the configuration, print the mail client's settings
    Init(gateway::init::InitArgs),
    /// Run the IMAP and SMTP proxies in the foreground until SIGINT/SIGTERM
    Run(gateway::daemon::RunArgs),
    /// Accounts, listeners, certificate and key fingerprints, contacts, archive
    Status(gateway::status::StatusArgs),
    /// Print a one-time login link for the local web page (valid 10 minutes, used once)
    WebLink,
    /// Search the archive of decrypted mail
    Search(gateway::search::SearchArgs),
    /// Write a new Thunderbird profile with the gateway's accounts already set up
    ThunderbirdProfile(gateway::thunderbird::ProfileArgs),
    /// The archive of decrypted mail
    #[command(subcommand)]
    Archive(ArchiveCommand),
    /// Contacts' keys, trust and verification (same as the `keytool` binary)
    #[command(subcommand)]
    Keytool(keytool::Command),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff) to standard output
    Man,
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
    let format = match &cli.command {
        Command::Run(args) => args.log_format,
        _ => gateway::LogFormat::Human,
    };
    gateway::init_logging(format);
    match cli.command {
        Command::Init(args) => gateway::run_main(gateway::init::run(&cli.global, args)),
        Command::Run(_) => gateway::run_main(gateway::daemon::run(&cli.global)),
        Command::Status(args) => gateway::run_main(gateway::status::run(&cli.global, args)),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "gateway",
                &mut std::io::stdout(),
            );
            std::process::ExitCode::SUCCESS
        }
        Command::Man => {
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: writing the manual page: {e}");
                    std::process::ExitCode::from(2)
                }
            }
        }
        Command::Keytool(command) => gateway::run_main(keytool::run(&cli.global, command)),
        Command::Search(args) => gateway::run_main(gateway::search::run(&cli.global, args)),
        Command::WebLink => gateway::run_main(gateway::web_link::run(&cli.global)),
        Command::ThunderbirdProfile(args) => {
            gateway::run_main(gateway::thunderbird::run(&cli.global, args))
        }
        Command::Archive(ArchiveCommand::Sync(args)) => {
            gateway::run_main(gateway::archive_sync::run(&cli.global, args))
        }
    }
}
