//! Mailbox benchmark (BENCHMARKS.md, issue 21; `scripts/bench-mailbox`): a
//! mailbox made by `scripts/bench/make-mailbox` (mail from gpg, rnp and sq
//! peers, half encrypted), read the way mail clients read it, straight from
//! Dovecot and through the gateway, in one run:
//!
//! - Thunderbird's header sync: `UID FETCH 1:* (UID RFC822.SIZE FLAGS
//!   BODY.PEEK[HEADER.FIELDS (…)])`, the command it sends when it opens a
//!   folder it has not seen; direct (Dovecot's own first run, when it builds
//!   its cache, and warm), and through the gateway cold (fresh vault and
//!   archive: every encrypted message downloaded, decrypted, archived) and
//!   warm;
//! - the whole mailbox, `UID FETCH a:b (UID BODY.PEEK[])` 200 at a time, as
//!   an offline sync does: direct, gateway cold and warm;
//! - `UID SEARCH TEXT` for a word that is only inside encrypted bodies:
//!   direct (which cannot find it) and through the gateway, warm;
//! - `gateway archive sync` (`imap_proxy::sync`, on both cores) into a fresh
//!   archive, in messages per second.
//!
//! The client is a minimal one written here (it reads lines and literals and
//! counts them), the same for both paths; to Dovecot it talks over plain
//! loopback IMAP, to the gateway too, while the gateway reaches Dovecot over
//! TLS, as in use. The gateway runs in a process of its own (this program,
//! `serve` or `archive-sync`), so each gateway figure comes with that
//! process's CPU time and peak RSS (the peak reset at the start of each
//! phase, through `/proc/PID/clear_refs`). Usage, as root (the fixture starts
//! Dovecot): `cargo run --release -p imap-proxy --example mailbox_bench CORPUS [ROUNDS]`

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, ensure, Context};
use archive::Archive;
use autocrypt::PreferEncrypt;
use imap_proxy::proxy::{AccountConfig, Config, Proxy};
use imap_proxy::sync::{sync, SyncOptions};
use imap_proxy::upstream::{Endpoint, Security, Session};
use imap_proxy::view::Keys;
use keystore::{Keystore, Unlock};
use secrecy::SecretString;
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::Cert;
use testbed::Dovecot;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

const ALICE: &str = "alice@example.org";
const HEADER_SYNC: &str = "UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To \
     Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To \
     Content-Type Reply-To Received)])";
/// In the encrypted bodies only (make-mailbox plants it).
const SECRET_WORD: &str = "zanzibar";
const BATCH: usize = 200;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.first().map(String::as_str) {
        // The gateway's side, in a process of its own.
        Some("serve") => runtime.block_on(serve(&Child::from_args(&args[1..])?)),
        Some("archive-sync") => runtime.block_on(archive_sync(&Child::from_args(&args[1..])?)),
        _ => {
            let corpus = PathBuf::from(
                args.first()
                    .context("usage: mailbox_bench CORPUS [ROUNDS]")?,
            );
            let rounds: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(3);
            runtime.block_on(run(&corpus, rounds))
        }
    }
}

/// What a gateway process is given: Alice's key and the provider.
struct Child {
    key: PathBuf,
    provider: Endpoint,
}

impl Child {
    fn args(&self) -> Vec<String> {
        vec![
            self.key.display().to_string(),
            self.provider.port.to_string(),
            self.provider
                .ca_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ]
    }

    fn from_args(args: &[String]) -> anyhow::Result<Self> {
        let [key, port, ca] = args else {
            bail!("expected KEY PORT CA");
        };
        Ok(Child {
            key: key.into(),
            provider: provider(port.parse()?, ca.into()),
        })
    }
}

fn provider(port: u16, ca_file: PathBuf) -> Endpoint {
    Endpoint {
        host: "localhost".into(),
        port,
        security: Security::Tls,
        ca_file: Some(ca_file),
        pinned: None,
    }
}

/// A figure: wall seconds, CPU seconds and peak RSS (MiB) of this process.
#[derive(Clone, Copy)]
struct Figure {
    wall: f64,
    cpu: f64,
    rss: f64,
}

/// Times `work`; CPU and peak RSS are those of the gateway process `pid`
/// (none for Dovecot direct: zero).
async fn measure<T>(
    pid: Option<u32>,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, Figure)> {
    if let Some(pid) = pid {
        reset_peak_rss(pid);
    }
    let cpu = pid.map(cpu_seconds).transpose()?;
    let start = Instant::now();
    let out = work.await?;
    let wall = start.elapsed().as_secs_f64();
    let figure = match (pid, cpu) {
        (Some(pid), Some(cpu)) => Figure {
            wall,
            cpu: cpu_seconds(pid)? - cpu,
            rss: peak_rss_mib(pid)?,
        },
        _ => Figure {
            wall,
            cpu: 0.0,
            rss: 0.0,
        },
    };
    Ok((out, figure))
}

async fn run(corpus: &Path, rounds: usize) -> anyhow::Result<()> {
    let mail: Vec<PathBuf> = {
        let mut v: Vec<PathBuf> = std::fs::read_dir(corpus.join("mail"))
            .context("the corpus (scripts/bench/make-mailbox)")?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        v.sort();
        v
    };
    let messages = mail.len();
    let key = corpus.join("alice.sec.asc");
    let dovecot = tokio::task::spawn_blocking(|| Dovecot::start(&[("alice", "alicepw")])).await?;
    // Straight into the maildir, linked rather than copied (doveadm save per
    // message would take an hour at 100,000).
    let new_dir = dovecot.mail_dir("alice").join("new");
    std::fs::create_dir_all(&new_dir)?;
    for (n, path) in mail.iter().enumerate() {
        let to = new_dir.join(format!("{}.M{n}P1.bench", 1_700_000_000 + n));
        if std::fs::hard_link(path, &to).is_err() {
            std::fs::copy(path, &to)?;
        }
    }
    let status = std::process::Command::new("chown")
        .args(["-R", "mail:mail"])
        .arg(dovecot.mail_dir("alice"))
        .status()?;
    ensure!(status.success(), "chown of the maildir failed");
    let child = Child {
        key: std::fs::canonicalize(&key).context("alice.sec.asc")?,
        provider: provider(dovecot.imaps_port, dovecot.ca_file.clone()),
    };
    println!("{messages} messages; medians of {rounds} rounds; wall s / CPU s / peak RSS MiB");

    let mut rows: Vec<(&str, Vec<Figure>)> = [
        "direct header sync, Dovecot's first run",
        "direct header sync",
        "gateway header sync, cold",
        "gateway header sync, warm",
        "direct whole mailbox",
        "gateway whole mailbox, cold",
        "gateway whole mailbox, warm",
        "direct SEARCH TEXT",
        "gateway SEARCH TEXT, warm",
        "gateway archive sync",
    ]
    .into_iter()
    .map(|name| (name, Vec::new()))
    .collect();
    let mut record = |name: &str, figure: Figure| {
        if let Some((_, v)) = rows.iter_mut().find(|(n, _)| *n == name) {
            v.push(figure);
        }
        println!(
            "  {name}: {:.2} s, CPU {:.2} s, {:.0} MiB",
            figure.wall, figure.cpu, figure.rss
        );
    };
    let direct = dovecot.imap_port;
    let (_, first) = measure(None, header_sync(direct, messages)).await?;
    record("direct header sync, Dovecot's first run", first);
    let mut hits = (0, 0);
    for round in 0..rounds {
        println!("round {round}");
        let (_, f) = measure(None, header_sync(direct, messages)).await?;
        record("direct header sync", f);
        let (_, f) = measure(None, whole_mailbox(direct, messages)).await?;
        record("direct whole mailbox", f);
        let (found, f) = measure(None, search(direct)).await?;
        hits.0 = found;
        record("direct SEARCH TEXT", f);

        // Header sync first: Thunderbird's first open of the folder.
        let gateway = Gateway::start(&child).await?;
        let (port, pid) = (gateway.port, Some(gateway.pid));
        let (_, f) = measure(pid, header_sync(port, messages)).await?;
        record("gateway header sync, cold", f);
        let (_, f) = measure(pid, header_sync(port, messages)).await?;
        record("gateway header sync, warm", f);
        let (_, f) = measure(pid, whole_mailbox(port, messages)).await?;
        record("gateway whole mailbox, warm", f);
        let (found, f) = measure(pid, search(port)).await?;
        hits.1 = found;
        record("gateway SEARCH TEXT, warm", f);
        gateway.stop().await;

        // The whole mailbox first: an offline sync into a fresh vault.
        let gateway = Gateway::start(&child).await?;
        let (_, f) = measure(Some(gateway.pid), whole_mailbox(gateway.port, messages)).await?;
        record("gateway whole mailbox, cold", f);
        gateway.stop().await;

        // Its own process, which reports its own CPU time and peak.
        let start = Instant::now();
        let out = tokio::process::Command::new(std::env::current_exe()?)
            .arg("archive-sync")
            .args(child.args())
            .output()
            .await?;
        ensure!(
            out.status.success(),
            "archive sync: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let wall = start.elapsed().as_secs_f64();
        let said = String::from_utf8_lossy(&out.stdout);
        let [indexed, cpu, rss] = said.split_whitespace().collect::<Vec<_>>()[..] else {
            bail!("archive sync said {said:?}");
        };
        ensure!(
            indexed.parse::<usize>()? == messages,
            "{indexed} of {messages} archived"
        );
        let figure = Figure {
            wall,
            cpu: cpu.parse()?,
            rss: rss.parse()?,
        };
        record("gateway archive sync", figure);
    }

    let median = |v: &[Figure], get: fn(&Figure) -> f64| {
        let mut v: Vec<f64> = v.iter().map(get).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let get = |name: &str| -> Vec<Figure> {
        rows.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    println!("\nmeasure\twall_s\tcpu_s\tpeak_rss_mib");
    for (name, v) in &rows {
        println!(
            "{name}\t{:.2}\t{:.2}\t{:.0}",
            median(v, |f| f.wall),
            median(v, |f| f.cpu),
            median(v, |f| f.rss)
        );
    }
    let wall = |name: &str| median(&get(name), |f| f.wall);
    let ratio = |a: &str, b: &str| wall(a) / wall(b);
    println!("\nratio\tmedian");
    let warm_direct = "direct header sync";
    for (what, a, b) in [
        (
            "header sync cold / direct warm",
            "gateway header sync, cold",
            warm_direct,
        ),
        (
            "header sync cold / Dovecot's first run",
            "gateway header sync, cold",
            "direct header sync, Dovecot's first run",
        ),
        (
            "header sync warm / direct warm",
            "gateway header sync, warm",
            warm_direct,
        ),
        (
            "whole mailbox cold / direct",
            "gateway whole mailbox, cold",
            "direct whole mailbox",
        ),
        (
            "whole mailbox warm / direct",
            "gateway whole mailbox, warm",
            "direct whole mailbox",
        ),
        (
            "SEARCH TEXT warm / direct",
            "gateway SEARCH TEXT, warm",
            "direct SEARCH TEXT",
        ),
    ] {
        println!("{what}\t{:.2}", ratio(a, b));
    }
    println!(
        "archive sync msgs/s\t{:.0}",
        messages as f64 / wall("gateway archive sync")
    );
    println!("SEARCH hits: direct {}, gateway {}", hits.0, hits.1);
    Ok(())
}

/// A vault holding Alice's key, and her archive.
struct Vault {
    _dir: tempfile::TempDir,
    store: Keystore,
    archive: Archive,
}

impl Vault {
    async fn new(key: &Path) -> anyhow::Result<Self> {
        let alice = Cert::from_file(key).context("Alice's key")?;
        let dir = tempfile::tempdir()?;
        let store = Keystore::create(dir.path(), Unlock::KeyFile).await?;
        let at = SystemTime::now() - Duration::from_secs(60);
        store
            .put_identity(ALICE, &alice, PreferEncrypt::Mutual, at)
            .await?;
        let archive = Archive::open(&store).await?;
        Ok(Vault {
            _dir: dir,
            store,
            archive,
        })
    }
}

/// A gateway IMAP proxy with a fresh vault, in a process of its own.
struct Gateway {
    port: u16,
    pid: u32,
    process: tokio::process::Child,
}

impl Gateway {
    async fn start(child: &Child) -> anyhow::Result<Self> {
        let mut process = tokio::process::Command::new(std::env::current_exe()?)
            .arg("serve")
            .args(child.args())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = process.id().context("the gateway process")?;
        let stdout = process.stdout.take().context("stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).await?;
        let port = line.trim().parse().context("the gateway's port")?;
        Ok(Gateway { port, pid, process })
    }

    /// Closes its standard input, which stops it.
    async fn stop(mut self) {
        drop(self.process.stdin.take());
        let _ = self.process.wait().await;
    }
}

/// The gateway process: a proxy for Alice until standard input closes.
async fn serve(child: &Child) -> anyhow::Result<()> {
    let vault = Vault::new(&child.key).await?;
    let proxy = Proxy::bind(
        Config {
            listen: "127.0.0.1:0".parse()?,
            tls: None,
            provider_timeout: imap_proxy::proxy::DEFAULT_PROVIDER_TIMEOUT,
            accounts: vec![AccountConfig {
                address: ALICE.into(),
                username: "alice".into(),
                provider: child.provider.clone(),
            }],
        },
        vault.store.clone(),
        vault.archive.clone(),
    )
    .await?;
    println!("{}", proxy.local_addr()?.port());
    let stdin_closed = async {
        let mut sink = Vec::new();
        let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    };
    proxy.run(stdin_closed, Duration::from_secs(1)).await;
    Ok(())
}

async fn header_sync(port: u16, messages: usize) -> anyhow::Result<()> {
    let mut c = Raw::log_in(port).await?;
    let answer = c.command(HEADER_SYNC).await?;
    ensure!(
        answer.fetches == messages,
        "{} of {messages} headers",
        answer.fetches
    );
    c.command("LOGOUT").await?;
    Ok(())
}

async fn whole_mailbox(port: u16, messages: usize) -> anyhow::Result<()> {
    let mut c = Raw::log_in(port).await?;
    let mut fetched = 0;
    for first in (1..=messages).step_by(BATCH) {
        let last = (first + BATCH - 1).min(messages);
        fetched += c
            .command(&format!("UID FETCH {first}:{last} (UID BODY.PEEK[])"))
            .await?
            .fetches;
    }
    ensure!(fetched == messages, "{fetched} of {messages} messages");
    c.command("LOGOUT").await?;
    Ok(())
}

/// Messages found.
async fn search(port: u16) -> anyhow::Result<usize> {
    let mut c = Raw::log_in(port).await?;
    let answer = c.command(&format!("UID SEARCH TEXT {SECRET_WORD}")).await?;
    c.command("LOGOUT").await?;
    Ok(answer.found)
}

/// The archive-sync process: syncs Alice's INBOX into a fresh archive and
/// prints how many messages it archived, its CPU seconds and peak RSS.
async fn archive_sync(child: &Child) -> anyhow::Result<()> {
    let vault = Vault::new(&child.key).await?;
    let mut session = Session::connect(&child.provider).await?;
    session
        .login("alice", &SecretString::from("alicepw"))
        .await?;
    let keys = std::sync::Arc::new(Keys::load(&vault.store, ALICE).await?);
    let reports = sync(
        &mut session,
        &vault.archive,
        keys,
        &SyncOptions {
            account: ALICE.into(),
            mailbox: Some("INBOX".into()),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            // Learning from what it reads, as `gateway archive sync` does.
            learn: Some(vault.store.clone()),
        },
        &mut |_| {},
    )
    .await?;
    session.logout().await;
    let archived: u64 = reports
        .iter()
        .map(|r| r.indexed + r.not_indexed + r.linked)
        .sum();
    let pid = std::process::id();
    println!(
        "{archived} {:.2} {:.0}",
        cpu_seconds(pid)?,
        peak_rss_mib(pid)?
    );
    Ok(())
}

/// A bare IMAP client: one command at a time, reading lines and literals.
struct Raw {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    tag: u32,
}

/// What came back for one command.
struct Answer {
    fetches: usize,
    /// Numbers in `* SEARCH` lines.
    found: usize,
}

impl Raw {
    async fn log_in(port: u16) -> anyhow::Result<Self> {
        let (read, write) = TcpStream::connect(("127.0.0.1", port)).await?.into_split();
        let mut c = Raw {
            read: BufReader::with_capacity(256 * 1024, read),
            write,
            tag: 0,
        };
        c.line().await?;
        c.command("LOGIN alice alicepw").await?;
        c.command("SELECT INBOX").await?;
        Ok(c)
    }

    /// One response line, literals skipped (their length counted).
    async fn line(&mut self) -> anyhow::Result<String> {
        let mut line = Vec::new();
        loop {
            let start = line.len();
            if self.read.read_until(b'\n', &mut line).await? == 0 {
                bail!("the server closed the connection");
            }
            let got = &line[start..];
            let literal = got
                .strip_suffix(b"}\r\n")
                .and_then(|l| l.iter().rposition(|&b| b == b'{').map(|at| &l[at + 1..]))
                .and_then(|n| {
                    std::str::from_utf8(n)
                        .ok()?
                        .trim_end_matches('+')
                        .parse::<u64>()
                        .ok()
                });
            match literal {
                Some(n) => {
                    let skipped =
                        tokio::io::copy(&mut (&mut self.read).take(n), &mut tokio::io::sink())
                            .await?;
                    ensure!(skipped == n, "a literal ended early");
                }
                None => return Ok(String::from_utf8_lossy(&line).into_owned()),
            }
        }
    }

    async fn command(&mut self, command: &str) -> anyhow::Result<Answer> {
        self.tag += 1;
        let tag = format!("b{}", self.tag);
        self.write
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .await?;
        let mut answer = Answer {
            fetches: 0,
            found: 0,
        };
        loop {
            let line = self.line().await?;
            if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                ensure!(rest.starts_with("OK"), "{command}: {line}");
                return Ok(answer);
            }
            if line.starts_with("* ") && line.contains(" FETCH (") {
                answer.fetches += 1;
            } else if let Some(numbers) = line.strip_prefix("* SEARCH") {
                answer.found += numbers.split_whitespace().count();
            }
        }
    }
}

/// User plus system CPU seconds of process `pid` so far.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses.
    let after = stat.rsplit_once(')').context("stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks =
        |i: usize| -> anyhow::Result<f64> { Ok(fields.get(i).context("stat")?.parse::<f64>()?) };
    // utime and stime are fields 14 and 15 of stat (11 and 12 here), in
    // clock ticks of 1/100 s.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// Resets the peak resident set size the kernel reports (VmHWM) of `pid`.
fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .context("VmHWM")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib / 1024.0)
}
