//! Archive benchmark: indexing rate (with decryption) and query latency of
//! the archive, on a corpus of RFC 5322 files. `scripts/bench-archive`
//! runs it next to notmuch on the same messages; see BENCHMARKS.md.
//!
//! ```text
//! archive_bench prepare CORPUS_DIR WORK_DIR   # plain/ and encrypted/ maildirs, alice.sec.asc
//! archive_bench run WORK_DIR plain|encrypted RUNS QUERIES_FILE
//! ```
//! `run` prints one JSON document: per-run messages/s, query latencies per
//! kind (p50/p99 in ms) and the archive's size in bytes. `BENCH_VERBOSE=1`
//! adds each query's median on standard error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::{bail, Context};
use archive::{content_hash, Archive, Location, Prepared, SearchOptions};
use autocrypt::{AutocryptHeader, PreferEncrypt};
use keystore::{Keystore, Unlock};
use mailcrypt::EncryptRequest;
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::serialize::SerializeInto;
use sequoia_openpgp::Cert;
use tokio::task::JoinSet;

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["prepare", corpus, work] => prepare(Path::new(corpus), Path::new(work)),
        ["run", work, set, runs, queries] => runtime.block_on(run(
            Path::new(work),
            set,
            runs.parse().context("RUNS")?,
            Path::new(queries),
        )),
        _ => bail!(
            "usage: archive_bench prepare CORPUS WORK | run WORK plain|encrypted RUNS QUERIES"
        ),
    }
}

/// Writes the corpus as two maildirs: as is, and each message encrypted by
/// Bob to Alice with our engine (as it would arrive from another gateway).
fn prepare(corpus: &Path, work: &Path) -> anyhow::Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let now = SystemTime::now();
    let alice = autocrypt::key::generate(ALICE, now)?;
    let bob = autocrypt::key::generate(BOB, now)?;
    std::fs::create_dir_all(work)?;
    std::fs::write(
        work.join("alice.sec.asc"),
        alice.as_tsk().armored().to_vec()?,
    )?;
    std::fs::write(work.join("alice.sec.pgp"), alice.as_tsk().to_vec()?)?;
    let header = AutocryptHeader::new(BOB, PreferEncrypt::Mutual, bob.clone());
    let mut skipped = 0;
    for set in ["plain", "encrypted"] {
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(work.join(set).join(sub))?;
        }
    }
    for (i, file) in files.iter().enumerate() {
        let bytes = std::fs::read(file)?;
        // The corpus has LF line ends and an mbox "From " line; mail from
        // IMAP has CRLF and no such line.
        let text = String::from_utf8_lossy(&bytes);
        let body = match text.strip_prefix("From ") {
            Some(rest) => rest.split_once('\n').map_or("", |(_, r)| r),
            None => &text,
        };
        let crlf = body.replace("\r\n", "\n").replace('\n', "\r\n");
        let name = format!("{i:05}.bench:2,");
        std::fs::write(work.join("plain/cur").join(&name), crlf.as_bytes())?;
        let request = EncryptRequest {
            autocrypt: Some(&header),
            now,
            ..EncryptRequest::new(&bob, std::slice::from_ref(&alice))
        };
        match mailcrypt::encrypt(crlf.as_bytes(), &request) {
            Ok(m) => std::fs::write(work.join("encrypted/cur").join(&name), m)?,
            Err(_) => skipped += 1,
        }
    }
    eprintln!(
        "prepared {} messages ({skipped} could not be encrypted)",
        files.len()
    );
    Ok(())
}

async fn run(work: &Path, set: &str, runs: usize, queries: &Path) -> anyhow::Result<()> {
    let dir = work.join(set).join("cur");
    let mut messages = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    names.sort();
    for n in names {
        messages.push(std::fs::read(n)?);
    }
    let messages = Arc::new(messages);
    let alice = Cert::from_file(work.join("alice.sec.pgp"))?;
    let mut rates = Vec::new();
    let mut size = 0;
    let mut latencies = serde_json::Map::new();
    for r in 0..runs {
        let vault_dir = work.join(format!("ours-{set}-{r}"));
        let _ = std::fs::remove_dir_all(&vault_dir);
        let store = Keystore::create(&vault_dir, Unlock::KeyFile).await?;
        store
            .put_identity(ALICE, &alice, PreferEncrypt::Mutual, SystemTime::now())
            .await?;
        let keys = Arc::new(imap_proxy::view::Keys::load(&store, ALICE).await?);
        let archive = Archive::open(&store).await?;
        let started = Instant::now();
        index_all(&archive, &keys, &messages).await?;
        let seconds = started.elapsed().as_secs_f64();
        rates.push(messages.len() as f64 / seconds);
        if r + 1 == runs {
            for line in std::fs::read_to_string(queries)?.lines() {
                let Some((kind, query)) = line.split_once('\t') else {
                    continue;
                };
                let mut samples = Vec::new();
                for _ in 0..20 {
                    let t = Instant::now();
                    let hits = archive
                        .search(
                            query,
                            &SearchOptions {
                                limit: Some(50),
                                ..Default::default()
                            },
                        )
                        .await?;
                    std::hint::black_box(hits);
                    samples.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                if std::env::var_os("BENCH_VERBOSE").is_some() {
                    let mut v = samples.clone();
                    v.sort_by(f64::total_cmp);
                    eprintln!("{kind}\t{query}\t{:.2} ms", percentile(&v, 0.5));
                }
                let entry = latencies
                    .entry(kind.to_string())
                    .or_insert_with(|| serde_json::Value::Array(Vec::new()));
                if let serde_json::Value::Array(a) = entry {
                    a.extend(samples.into_iter().map(serde_json::Value::from));
                }
            }
        }
        archive.close().await;
        store.close().await;
        size = dir_size(&vault_dir)?;
        if r + 1 != runs {
            std::fs::remove_dir_all(&vault_dir)?;
        }
    }
    let mut summary = serde_json::Map::new();
    for (kind, samples) in latencies {
        let mut v: Vec<f64> = samples
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
            .unwrap_or_default();
        v.sort_by(f64::total_cmp);
        summary.insert(
            kind,
            serde_json::json!({ "p50_ms": percentile(&v, 0.50), "p99_ms": percentile(&v, 0.99), "samples": v.len() }),
        );
    }
    println!(
        "{}",
        serde_json::json!({
            "tool": "letterlock",
            "set": set,
            "messages": messages.len(),
            "rates": rates,
            "queries": summary,
            "bytes": size,
        })
    );
    Ok(())
}

/// The sync path without the network: view (decrypt) and extract on the
/// blocking pool, two at a time per core, then store.
async fn index_all(
    archive: &Archive,
    keys: &Arc<imap_proxy::view::Keys>,
    messages: &Arc<Vec<Vec<u8>>>,
) -> anyhow::Result<()> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
    let mut running = JoinSet::new();
    for i in 0..messages.len() {
        while running.len() >= workers {
            if let Some(r) = running.join_next().await {
                r??;
            }
        }
        let keys = Arc::clone(keys);
        let messages = Arc::clone(messages);
        let archive = archive.clone();
        running.spawn(async move {
            let (hash, prepared, encrypted) = tokio::task::spawn_blocking(move || {
                let bytes = &messages[i];
                let v = imap_proxy::view::view(
                    bytes,
                    &keys,
                    &imap_proxy::view::Sender::default(),
                    SystemTime::now(),
                );
                (content_hash(bytes), Prepared::new(v.message), v.encrypted)
            })
            .await?;
            let loc = Location {
                account: ALICE.into(),
                mailbox: "INBOX".into(),
                uidvalidity: 1,
                uid: u32::try_from(i + 1)?,
            };
            archive
                .store_prepared(&loc, &hash, std::sync::Arc::new(prepared), encrypted)
                .await?;
            anyhow::Ok(())
        });
    }
    while let Some(r) = running.join_next().await {
        r??;
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn dir_size(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let m = e?.metadata()?;
        if m.is_file() {
            total += m.len();
        }
    }
    Ok(total)
}
