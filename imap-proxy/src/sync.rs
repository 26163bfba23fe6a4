//! Mailbox sync: bring the archive up to date with the provider.
//!
//! Per mailbox: EXAMINE (read-only, flags untouched), list UIDs and sizes,
//! forget what was expunged, fetch only UIDs not archived yet, decrypt and
//! index them on every core while the next batch downloads, and finally drop
//! what was filed under an older UIDVALIDITY. Messages are committed as
//! they are ready (in groups, by the archive), so an interrupted sync
//! resumes where it stopped; content is keyed by hash, so a message seen
//! before (moved, or renumbered by a UIDVALIDITY change) is linked, not
//! decrypted again.

use std::collections::HashSet;
use std::sync::Arc;

use archive::{content_hash, Archive, ArchiveError, Location, Stored};
use keystore::Keystore;
use thiserror::Error;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::upstream::{Session, UpstreamError, MAX_RESPONSE};
use crate::view::Keys;

/// At most this many bytes (by RFC822.SIZE) are requested in one FETCH.
const BATCH_BYTES: u64 = 16 * 1024 * 1024;
/// At most this many messages are requested in one FETCH.
const BATCH_MESSAGES: usize = 200;
/// Messages in flight per worker (see `sync_mailbox`).
const IN_FLIGHT_PER_WORKER: usize = 32;

#[derive(Debug, Error)]
pub enum SyncError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("the mailbox {0:?} does not exist at the provider")]
    NoSuchMailbox(String),
    #[error("a decryption worker failed: {0}")]
    Worker(String),
}

/// What happened, reported as it happens (for a progress bar or log lines).
#[derive(Debug, Clone)]
pub enum Progress {
    /// A mailbox is about to be fetched.
    Mailbox {
        name: String,
        /// Messages to fetch (not archived yet).
        new: u64,
        /// Entries removed because the provider expunged the messages.
        removed: u64,
    },
    /// One more message of the current mailbox is archived.
    Archived { mailbox: String, uid: u32 },
    /// A message was left out, and why.
    Skipped {
        mailbox: String,
        uid: u32,
        reason: String,
    },
}

/// Counts for one mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxReport {
    pub name: String,
    pub uidvalidity: u32,
    /// Messages newly indexed.
    pub indexed: u64,
    /// Messages stored without an index entry (unparseable).
    pub not_indexed: u64,
    /// Messages whose content was archived already (moved, renumbered).
    pub linked: u64,
    /// Encrypted messages that could not be decrypted (archived as they are).
    pub undecryptable: u64,
    pub skipped: u64,
    /// Entries removed for expunged messages.
    pub removed: u64,
    /// Entries dropped because the mailbox's UIDVALIDITY changed.
    pub renumbered: u64,
}

/// How to sync.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The account address, as archive entries are filed.
    pub account: String,
    /// One mailbox, or every selectable mailbox (and forget deleted ones).
    pub mailbox: Option<String>,
    /// Messages decrypted and indexed at once.
    pub workers: usize,
    /// Where keys learned from Autocrypt headers and gossip go (`None`:
    /// learn nothing, e.g. in benchmarks).
    pub learn: Option<Keystore>,
}

/// Syncs the archive with the provider over a logged-in session.
pub async fn sync(
    session: &mut Session,
    archive: &Archive,
    keys: Arc<Keys>,
    options: &SyncOptions,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Vec<MailboxReport>, SyncError> {
    let listed = session.list().await?;
    let mailboxes: Vec<String> = match &options.mailbox {
        Some(one) => vec![listed
            .iter()
            .find(|m| m.selectable && mailbox_eq(&m.name, one))
            .map(|m| m.name.clone())
            .ok_or_else(|| SyncError::NoSuchMailbox(one.clone()))?],
        None => listed
            .iter()
            .filter(|m| m.selectable)
            .map(|m| m.name.clone())
            .collect(),
    };
    let mut reports = Vec::new();
    for name in &mailboxes {
        reports.push(sync_mailbox(session, archive, &keys, options, name, progress).await?);
    }
    if options.mailbox.is_none() {
        // Mailboxes deleted at the provider leave the archive as well.
        for gone in archive.mailboxes(&options.account).await? {
            if !mailboxes.contains(&gone) {
                // UIDVALIDITY is never 0, so this drops every entry.
                let removed = archive
                    .drop_stale_uidvalidity(&options.account, &gone, 0)
                    .await?;
                reports.push(MailboxReport {
                    name: gone,
                    removed,
                    ..MailboxReport::default()
                });
            }
        }
    }
    Ok(reports)
}

fn mailbox_eq(a: &str, b: &str) -> bool {
    a == b || (a.eq_ignore_ascii_case("INBOX") && b.eq_ignore_ascii_case("INBOX"))
}

async fn sync_mailbox(
    session: &mut Session,
    archive: &Archive,
    keys: &Arc<Keys>,
    options: &SyncOptions,
    name: &str,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<MailboxReport, SyncError> {
    let account = options.account.as_str();
    let selected = session.examine(name).await?;
    let mut report = MailboxReport {
        name: name.to_string(),
        uidvalidity: selected.uidvalidity,
        ..MailboxReport::default()
    };
    let at_provider = if selected.exists == 0 {
        Vec::new()
    } else {
        session.uids_and_sizes().await?
    };
    let present: HashSet<u32> = at_provider.iter().map(|(uid, _)| *uid).collect();
    let archived: Vec<u32> = archive.uids(account, name, selected.uidvalidity).await?;
    let location = |uid: u32| Location {
        account: account.to_string(),
        mailbox: name.to_string(),
        uidvalidity: selected.uidvalidity,
        uid,
    };
    let expunged: Vec<Location> = archived
        .iter()
        .filter(|uid| !present.contains(uid))
        .map(|uid| location(*uid))
        .collect();
    report.removed = archive.remove(&expunged).await?;
    let archived: HashSet<u32> = archived.into_iter().collect();
    let mut wanted = Vec::new();
    for (uid, size) in at_provider {
        if archived.contains(&uid) {
            continue;
        }
        if u64::from(size) >= u64::from(MAX_RESPONSE) {
            report.skipped += 1;
            progress(Progress::Skipped {
                mailbox: name.to_string(),
                uid,
                reason: format!("{size} bytes is more than the gateway fetches"),
            });
            continue;
        }
        wanted.push((uid, size));
    }
    progress(Progress::Mailbox {
        name: name.to_string(),
        new: wanted.len() as u64,
        removed: report.removed,
    });

    // The provider's next batch downloads while this one is decrypted and
    // stored (one batch waits between them), so neither side idles.
    let (batches_out, mut batches_in) = tokio::sync::mpsc::channel::<Vec<(u32, Vec<u8>)>>(1);
    let fetcher = async move {
        for batch in batches(&wanted) {
            let fetched = session.fetch_messages(&batch).await?;
            let returned: HashSet<u32> = fetched.iter().map(|(uid, _)| *uid).collect();
            for uid in batch.iter().filter(|uid| !returned.contains(uid)) {
                // Expunged between the listing and the fetch: nothing to archive.
                debug!(
                    mailbox = name,
                    uid, "message vanished before it was fetched"
                );
            }
            if batches_out.send(fetched).await.is_err() {
                break;
            }
        }
        Ok::<_, SyncError>(())
    };
    let workers = options.workers.max(1);
    let mut running: JoinSet<Result<Finished, SyncError>> = JoinSet::new();
    let dispatcher = async {
        let mut in_flight_bytes = 0u64;
        while let Some(fetched) = batches_in.recv().await {
            let hashed: Vec<(u32, Vec<u8>, [u8; 32])> = fetched
                .into_iter()
                .map(|(uid, bytes)| {
                    let hash = content_hash(&bytes);
                    (uid, bytes, hash)
                })
                .collect();
            let hashes: Vec<[u8; 32]> = hashed.iter().map(|(_, _, hash)| *hash).collect();
            // One look-up for the batch: on a first sync nearly nothing is
            // archived, and only that goes through `link`.
            let known = archive.known_contents(&hashes).await?;
            for (uid, bytes, hash) in hashed {
                let loc = location(uid);
                if known.contains(&hash) && archive.link(&loc, &hash).await? {
                    report.linked += 1;
                    progress(Progress::Archived {
                        mailbox: name.to_string(),
                        uid,
                    });
                    continue;
                }
                // Enough in flight that both cores stay busy while stores
                // wait for their group's commit (Archive::store_prepared),
                // and the archive commits them in large groups; bounded in
                // bytes too, so a run of large messages holds little more
                // than a batch.
                while running.len() >= workers * IN_FLIGHT_PER_WORKER
                    || (in_flight_bytes >= BATCH_BYTES && !running.is_empty())
                {
                    in_flight_bytes -=
                        finish_one(&mut running, &mut report, name, progress).await?;
                }
                in_flight_bytes += bytes.len() as u64;
                running.spawn(ingest_one(
                    archive.clone(),
                    Arc::clone(keys),
                    options.learn.clone(),
                    options.account.clone(),
                    (loc, bytes, hash),
                ));
            }
        }
        Ok::<_, SyncError>(())
    };
    tokio::try_join!(fetcher, dispatcher)?;
    while !running.is_empty() {
        finish_one(&mut running, &mut report, name, progress).await?;
    }
    report.renumbered = archive
        .drop_stale_uidvalidity(account, name, selected.uidvalidity)
        .await?;
    Ok(report)
}

/// One worker: ingests a message (its location, the provider's bytes and
/// their hash) and archives it there.
async fn ingest_one(
    archive: Archive,
    keys: Arc<Keys>,
    learner: Option<Keystore>,
    account: String,
    (loc, bytes, hash): (Location, Vec<u8>, [u8; 32]),
) -> Result<Finished, SyncError> {
    let size = bytes.len() as u64;
    let ingested = crate::ingest::ingest(
        learner.as_ref(),
        &archive,
        keys,
        &account,
        bytes,
        &hash,
        Some(&loc),
    )
    .await
    .map_err(|e| SyncError::Worker(e.to_string()))?;
    let undecryptable = ingested.view.detail.is_some();
    if let Some(detail) = &ingested.view.detail {
        warn!(uid = loc.uid, reason = %detail, "archived without decrypting");
    }
    let Some(stored) = ingested.archived else {
        return Err(SyncError::Worker("the message was not archived".into()));
    };
    Ok(Finished {
        uid: loc.uid,
        size,
        stored: stored?,
        undecryptable,
    })
}

/// A message a worker archived.
struct Finished {
    uid: u32,
    /// The provider's bytes, as counted in flight.
    size: u64,
    stored: Stored,
    undecryptable: bool,
}

/// Waits for one worker and reports its message; returns the bytes it held.
async fn finish_one(
    running: &mut JoinSet<Result<Finished, SyncError>>,
    report: &mut MailboxReport,
    mailbox: &str,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<u64, SyncError> {
    let Some(joined) = running.join_next().await else {
        return Ok(0);
    };
    let Finished {
        uid,
        size,
        stored,
        undecryptable,
    } = joined.map_err(|e| SyncError::Worker(e.to_string()))??;
    match stored {
        Stored::Indexed { note } => {
            report.indexed += 1;
            if let Some(note) = note {
                debug!(mailbox, uid, note, "indexed in part");
            }
        }
        Stored::NotIndexed => {
            report.not_indexed += 1;
            warn!(
                mailbox,
                uid, "stored but not indexed: the message cannot be parsed"
            );
        }
        Stored::Linked => report.linked += 1,
    }
    if undecryptable {
        report.undecryptable += 1;
    }
    debug!(mailbox, uid, "archived");
    progress(Progress::Archived {
        mailbox: mailbox.to_string(),
        uid,
    });
    Ok(size)
}

/// Splits UIDs into FETCH batches bounded by bytes and count.
fn batches(wanted: &[(u32, u32)]) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0u64;
    for (uid, size) in wanted {
        if !current.is_empty()
            && (bytes + u64::from(*size) > BATCH_BYTES || current.len() >= BATCH_MESSAGES)
        {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(*uid);
        bytes += u64::from(*size);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_both_bounds() {
        let many: Vec<(u32, u32)> = (1..=450).map(|u| (u, 10)).collect();
        let b = batches(&many);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [200, 200, 50]);
        let big = [(1, 10 * 1024 * 1024), (2, 10 * 1024 * 1024), (3, 1)];
        assert_eq!(batches(&big), vec![vec![1], vec![2, 3]]);
        // One message over the byte bound still gets a batch of its own.
        assert_eq!(batches(&[(7, u32::MAX)]), vec![vec![7]]);
        assert!(batches(&[]).is_empty());
    }
}
