//! The SMTP proxy benchmark (BENCHMARKS.md; run by `scripts/bench-smtp`).
//!
//! In one run, against one real provider (testbed: Dovecot submission →
//! OpenSMTPD → LMTP → Dovecot):
//! - 10 KB messages with 1 and 8 concurrent clients, each on its own
//!   connection: through the proxy (running as a child process, encrypting
//!   to one recipient) and the same client straight to the provider;
//!   messages per second and p50/p99 latency of each message's 250;
//! - the encrypt+sign work per 10 KB message: mailcrypt in-process vs one
//!   `gpg -se` per message (what a gpg-based gateway does);
//! - the proxy's peak RSS (VmHWM) while relaying one message with a 25 MB
//!   attachment, in a fresh child process.
//!
//! Every figure is the median of `ROUNDS` rounds. Usage:
//! `cargo run --release -p smtp-proxy --example smtp_bench [ROUNDS]`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use autocrypt::PreferEncrypt;
use keystore::{KeySource, Keystore, Unlock};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::Address;
use sequoia_openpgp::serialize::SerializeInto;
use smtp_proxy::decision::Policy;
use smtp_proxy::outgoing::Account;
use smtp_proxy::relay::{Endpoint, Provider as Upstream, Security};
use smtp_proxy::server::{AccountConfig, Config, Server};
use smtp_proxy::session::Limits;

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";
const PASSWORD: &str = "bench-pw";
const PER_CLIENT_1: usize = 60;
const TOTAL_8: usize = 240;
const GPG_MESSAGES: usize = 40;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Runtime::new()?;
    if args.get(1).map(String::as_str) == Some("serve") {
        return runtime.block_on(serve(&args[2..]));
    }
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    runtime.block_on(bench(rounds))
}

/// The proxy as its own process: `serve DATA_DIR PROVIDER_PORT CA_FILE`;
/// prints its port, serves until stdin closes.
async fn serve(args: &[String]) -> Result<()> {
    let [dir, port, ca] = args else {
        return Err("serve DATA_DIR PROVIDER_PORT CA_FILE".into());
    };
    let keystore = Keystore::open(Path::new(dir), None).await?;
    let config = Config {
        listen: "127.0.0.1:0".parse()?,
        hostname: "localhost".into(),
        tls: None,
        limits: Limits::default(),
        idle_timeout: Duration::from_secs(300),
        accounts: vec![AccountConfig {
            account: Account {
                address: ALICE.into(),
                policy: Policy::Opportunistic,
            },
            username: ALICE.into(),
            provider: Upstream {
                endpoint: Endpoint {
                    host: "localhost".into(),
                    port: port.parse()?,
                    security: Security::Tls,
                    ca_file: Some(PathBuf::from(ca)),
                    pinned: None,
                },
                timeout: smtp_proxy::relay::DEFAULT_TIMEOUT,
            },
        }],
    };
    let server = Server::bind(config, keystore, None).await?;
    println!("{}", server.local_addr()?.port());
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        use std::io::Read;
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        let _ = closed_tx.send(());
    });
    let stdin_closed = async {
        let _ = closed_rx.await;
    };
    server.run(stdin_closed, Duration::from_secs(10)).await;
    Ok(())
}

struct ProxyProcess {
    child: std::process::Child,
    port: u16,
}

impl ProxyProcess {
    fn start(dir: &Path, provider_port: u16, ca: &Path) -> Result<Self> {
        use std::io::BufRead;
        let mut child = Command::new(std::env::current_exe()?)
            .arg("serve")
            .arg(dir)
            .arg(provider_port.to_string())
            .arg(ca)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let port = line.trim().parse()?;
        Ok(ProxyProcess { child, port })
    }

    /// Peak resident memory so far, in bytes.
    fn peak_rss(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or("no VmHWM")?;
        Ok(kb * 1024)
    }

    fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

#[derive(Clone)]
enum Target {
    Proxy(u16),
    Direct { port: u16, ca: PathBuf },
}

async fn connect(target: &Target) -> Result<AsyncSmtpConnection> {
    let hello = ClientId::Domain("bench.localhost".into());
    let (port, tls) = match target {
        Target::Proxy(port) => (*port, None),
        Target::Direct { port, ca } => {
            let tls = TlsParameters::builder("localhost".into())
                .add_root_certificate(Certificate::from_pem(&std::fs::read(ca)?)?)
                .build_rustls()?;
            (*port, Some(tls))
        }
    };
    let mut connection =
        AsyncSmtpConnection::connect_tokio1(("localhost", port), None, &hello, tls, None).await?;
    connection
        .auth(
            &[Mechanism::Plain],
            &Credentials::new(ALICE.into(), PASSWORD.into()),
        )
        .await?;
    Ok(connection)
}

/// `clients` connections sending `total` messages between them; returns
/// (messages per second, every latency).
async fn run_clients(
    target: &Target,
    clients: usize,
    total: usize,
) -> Result<(f64, Vec<Duration>)> {
    let message = ten_kb_message();
    let envelope = lettre::address::Envelope::new(
        Some(ALICE.parse::<Address>()?),
        vec![BOB.parse::<Address>()?],
    )?;
    let mut connections = Vec::new();
    for _ in 0..clients {
        connections.push(connect(target).await?);
    }
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut connection in connections {
        let message = message.clone();
        let envelope = envelope.clone();
        let count = total / clients;
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(count);
            for _ in 0..count {
                let t = Instant::now();
                connection.send(&envelope, &message).await?;
                latencies.push(t.elapsed());
            }
            let _ = connection.quit().await;
            Ok::<_, lettre::transport::smtp::Error>(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok((latencies.len() as f64 / elapsed, latencies))
}

fn ten_kb_message() -> Vec<u8> {
    let mut m = format!(
        "From: Alice <{ALICE}>\r\nTo: Bob <{BOB}>\r\nSubject: benchmark\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    .into_bytes();
    let line = b"The quick brown fox jumps over the lazy dog; a benchmark line of text.\r\n";
    while m.len() + line.len() <= 10 * 1024 {
        m.extend_from_slice(line);
    }
    m
}

fn big_message() -> Vec<u8> {
    use base64::Engine as _;
    let attachment: Vec<u8> = (0..25 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&attachment);
    let mut m = format!(
        "From: {ALICE}\r\nTo: {BOB}\r\nSubject: big\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
         see attached\r\n--b\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n"
    )
    .into_bytes();
    for line in encoded.as_bytes().chunks(76) {
        m.extend_from_slice(line);
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b"--b--\r\n");
    m
}

/// One scenario's figures, one per round.
struct Samples {
    name: &'static str,
    rate: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
}

impl Samples {
    fn new(name: &'static str) -> Self {
        Samples {
            name,
            rate: Vec::new(),
            p50: Vec::new(),
            p99: Vec::new(),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn bench(rounds: usize) -> Result<()> {
    let provider = testbed::Provider::start(&[(ALICE, PASSWORD), (BOB, PASSWORD)]);
    let work = tempfile::tempdir()?;
    let data = work.path().join("data");
    let now = SystemTime::now();
    let alice = autocrypt::key::generate(ALICE, now - Duration::from_secs(60))?;
    let bob = autocrypt::key::generate(BOB, now - Duration::from_secs(60))?;
    {
        let keystore = Keystore::create(&data, Unlock::KeyFile).await?;
        keystore
            .put_identity(ALICE, &alice, PreferEncrypt::Mutual, now)
            .await?;
        keystore.record_key(&bob, KeySource::Import, now).await?;
        keystore.close().await;
    }
    let ca = provider.dovecot.ca_file.clone();
    let direct = Target::Direct {
        port: provider.submissions_port,
        ca: ca.clone(),
    };

    println!("scenario\tclients\tmsgs_per_s\tp50_ms\tp99_ms");
    for (clients, total) in [(1, PER_CLIENT_1), (8, TOTAL_8)] {
        let mut results = [Samples::new("proxy"), Samples::new("direct")];
        for _ in 0..rounds {
            let proxy = ProxyProcess::start(&data, provider.submissions_port, &ca)?;
            let through = Target::Proxy(proxy.port);
            // Alternate, so that drift on a shared machine hits both.
            for (i, target) in [&through, &direct].into_iter().enumerate() {
                let (rate, mut lat) = run_clients(target, clients, total).await?;
                lat.sort();
                results[i].rate.push(rate);
                results[i].p50.push(percentile(&lat, 0.5));
                results[i].p99.push(percentile(&lat, 0.99));
            }
            proxy.stop();
        }
        for s in results {
            println!(
                "{}\t{clients}\t{:.1}\t{:.1}\t{:.1}",
                s.name,
                median(s.rate),
                median(s.p50),
                median(s.p99)
            );
        }
    }

    // Encrypt+sign per message: mailcrypt vs gpg -se.
    let message = ten_kb_message();
    let recipients = [bob.clone()];
    let header = autocrypt::AutocryptHeader::new(
        ALICE,
        PreferEncrypt::Mutual,
        autocrypt::key::minimize(&alice, ALICE, now)?,
    );
    let home = work.path().join("gnupg");
    std::fs::create_dir(&home)?;
    gpg(&home, &["--import"], &alice.as_tsk().armored().to_vec()?)?;
    gpg(&home, &["--import"], &bob.armored().to_vec()?)?;
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..GPG_MESSAGES {
            let request = mailcrypt::EncryptRequest {
                autocrypt: Some(&header),
                ..mailcrypt::EncryptRequest::new(&alice, &recipients)
            };
            mailcrypt::encrypt(&message, &request)?;
        }
        ours.push(start.elapsed().as_secs_f64() * 1000.0 / GPG_MESSAGES as f64);
        let start = Instant::now();
        for _ in 0..GPG_MESSAGES {
            gpg(
                &home,
                &[
                    "-se",
                    "-a",
                    "-r",
                    BOB,
                    "-u",
                    ALICE,
                    "--trust-model",
                    "always",
                ],
                &message,
            )?;
        }
        theirs.push(start.elapsed().as_secs_f64() * 1000.0 / GPG_MESSAGES as f64);
    }
    let (ours, theirs) = (median(ours), median(theirs));
    println!(
        "encrypt+sign 10 KB\tmailcrypt_ms={ours:.2}\tgpg_ms={theirs:.2}\tratio={:.1}",
        theirs / ours
    );

    // Peak RSS relaying one 25 MB attachment, each round in a fresh process.
    let big = big_message();
    let mut peaks = Vec::new();
    let mut baselines = Vec::new();
    for _ in 0..rounds {
        let proxy = ProxyProcess::start(&data, provider.submissions_port, &ca)?;
        let mut connection = connect(&Target::Proxy(proxy.port)).await?;
        baselines.push(proxy.peak_rss()? as f64);
        let envelope = lettre::address::Envelope::new(
            Some(ALICE.parse::<Address>()?),
            vec![BOB.parse::<Address>()?],
        )?;
        connection.send(&envelope, &big).await?;
        peaks.push(proxy.peak_rss()? as f64);
        let _ = connection.quit().await;
        proxy.stop();
    }
    let mib = |b: f64| b / (1024.0 * 1024.0);
    println!(
        "peak RSS 25 MB attachment\tmessage_mib={:.1}\tbaseline_mib={:.1}\tpeak_mib={:.1}\tpeak_over_message={:.2}",
        mib(big.len() as f64),
        mib(median(baselines)),
        mib(median(peaks.clone())),
        median(peaks) / big.len() as f64
    );
    Ok(())
}

fn gpg(home: &Path, args: &[&str], input: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut child = Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args(["--batch", "--yes", "--quiet"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    child.stdin.take().ok_or("stdin")?.write_all(input)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(format!("gpg {args:?} failed").into());
    }
    Ok(out.stdout)
}
