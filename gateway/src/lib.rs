//! Wiring for Letterlock's binaries: configuration, unlocking the vault, and
//! the command implementations shared by `gateway` and `keytool`.
//!
//! The libraries do the work (`keystore`, `autocrypt`, …); this crate turns
//! their results into output people read (tables) or scripts parse (`--json`)
//! and into exit codes: 0 success, 1 "no" (e.g. a fingerprint mismatch),
//! 2 usage or runtime errors.
//!
//! The configuration as SPEC.md writes it, read and checked:
//!
//! ```
//! let config: gateway::config::Config = toml::from_str(r#"
//!     [[account]]
//!     address = "alice@example.org"
//!     imap = { host = "imap.example.org", port = 993, security = "tls" }
//!     smtp = { host = "smtp.example.org", port = 465, security = "tls" }
//! "#)?;
//! assert_eq!(config.imap_listen().to_string(), "127.0.0.1:1143");
//! assert_eq!(config.accounts[0].username(), "alice@example.org");
//! // A misspelt key is an error, not a silent default.
//! assert!(toml::from_str::<gateway::config::Config>("data_dri = \"/x\"").is_err());
//! # Ok::<(), toml::de::Error>(())
//! ```

pub mod archive_sync;
pub mod config;
pub mod daemon;
pub mod init;
pub mod keytool;
pub mod search;
pub mod status;
pub mod thunderbird;
pub mod unlock;
pub mod vcard;
pub mod web_link;

/// Exit status of a command that ran to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Yes,
    No,
}

impl Answer {
    pub fn exit_code(self) -> std::process::ExitCode {
        match self {
            Answer::Yes => std::process::ExitCode::SUCCESS,
            Answer::No => std::process::ExitCode::from(1),
        }
    }
}

/// Parses the command line; on a usage error (or `--help`) prints clap's
/// message and returns the exit status to end with (2 for errors).
pub fn parse_cli<T: clap::Parser>() -> Result<T, std::process::ExitCode> {
    T::try_parse().map_err(|e| {
        let _ = e.print();
        std::process::ExitCode::from(if e.use_stderr() { 2 } else { 0 })
    })
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event
    Human,
    /// One JSON object per line (for journald, Loki, jq …)
    Json,
}

/// The crates whose log lines are Letterlock's own, written to carry no
/// password, key or message text at any level.
const OWN_LOG_TARGETS: [&str; 9] = [
    "gateway",
    "keytool",
    "imap_proxy",
    "smtp_proxy",
    "keystore",
    "archive",
    "mailcrypt",
    "autocrypt",
    "net_edge",
];

/// What dependencies may log, whatever `LETTERLOCK_LOG` asks for: warnings
/// and errors. Below that they write what they handle: lettre logs every
/// SMTP line at debug (`AUTH PLAIN` with the password, the message text),
/// imap-next every byte at trace (LOGIN, FETCH bodies). Rule 8: no log
/// level a user can set reveals a password, a key or message text.
pub fn dependency_log_cap() -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::LevelFilter;
    OWN_LOG_TARGETS.iter().fold(
        tracing_subscriber::filter::Targets::new().with_default(LevelFilter::WARN),
        |targets, own| targets.with_target(*own, LevelFilter::TRACE),
    )
}

/// Sends `tracing` output to standard error, filtered by `LETTERLOCK_LOG`
/// (e.g. `debug`, `imap_proxy=trace`; default `info`) and capped for
/// dependencies ([`dependency_log_cap`]).
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("LETTERLOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let output = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let output = match format {
        LogFormat::Json => output.json().boxed(),
        // Colour codes only for people, never into files and pipes.
        LogFormat::Human => output
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(output.with_filter(filter).with_filter(dependency_log_cap()))
        .with(recent_warnings().layer().with_filter(dependency_log_cap()))
        .try_init();
    log_panics();
}

/// The warnings and errors this process logged lately, for the web page's
/// status ("last errors").
pub fn recent_warnings() -> &'static web::RecentWarnings {
    static RECENT: std::sync::OnceLock<web::RecentWarnings> = std::sync::OnceLock::new();
    RECENT.get_or_init(web::RecentWarnings::default)
}

/// Sends panic reports through `tracing` so they reach the same log (and the
/// same JSON format) as everything else. A dependency may panic on hostile
/// input (sequoia-openpgp 2.4.2 does on some truncated ciphertexts); mailcrypt
/// catches such panics and refuses the message, and this line is how an
/// operator learns it happened.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(
            %location,
            "internal error (a bug, please report it): {message}; \
             if it came from parsing a message, that message was refused"
        );
    }));
}

/// Runs an async command on a fresh runtime and maps the outcome to an exit
/// status, printing errors with their causes.
pub fn run_main<F>(future: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = anyhow::Result<Answer>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match runtime.block_on(future) {
        Ok(answer) => answer.exit_code(),
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::from(2)
        }
    }
}
