//! The one read pipeline: provider bytes → what the user is shown, with
//! everything the message teaches recorded in the order security needs and
//! the result archived. The IMAP proxy (for a message a client fetches,
//! once per account through `downloads`' single flight) and `gateway
//! archive sync` both ingest through here, so they learn the same keys and
//! archive the same bytes for the same message.
//!
//! [`read`]: learn the sender's key (before viewing clear mail, after
//! decrypting encrypted mail) → [`view`] → learn the gossip. [`ingest`]:
//! that, then the index text (`Prepared`), the encrypted message's
//! Message-IDs and outsider (`learn_encrypted`), and the archive entry.

use std::sync::Arc;
use std::time::SystemTime;

use archive::{Archive, ArchiveError, Location, Prepared, Stored};
use keystore::Keystore;
use tracing::warn;

use crate::learn::{learn_encrypted, learn_gossip, Lessons};
use crate::view::{view, Keys, Sender, View};

/// One message, read and (if asked) archived.
pub struct Ingested {
    pub view: View,
    /// The index text of the bytes served (its message is the view's).
    pub prepared: Arc<Prepared>,
    /// The archive's answer, when a location was given.
    pub archived: Option<Result<Stored, ArchiveError>>,
}

/// Reads a message ([`read`]), extracts its index text, records that it was
/// encrypted, and archives it at `location` if one is given (`hash`: its
/// `archive::content_hash`). `Err` only if a worker of the blocking pool
/// panicked.
pub async fn ingest(
    store: Option<&Keystore>,
    archive: &Archive,
    keys: Arc<Keys>,
    account: &str,
    bytes: Vec<u8>,
    hash: &[u8; 32],
    location: Option<&Location>,
) -> Result<Ingested, tokio::task::JoinError> {
    let (view, bytes) = read(store, keys, account, bytes).await?;
    // Index extraction is CPU work for the blocking pool too.
    let (view, prepared) = on_a_core(move || {
        let prepared = Arc::new(Prepared::new(view.message.clone()));
        (view, prepared)
    })
    .await?;
    if let (Some(store), true) = (store, view.encrypted) {
        let both = [&view.message[..], &bytes[..]];
        if let Err(e) =
            learn_encrypted(store, &both, view.outsider.as_deref(), SystemTime::now()).await
        {
            warn!(error = %e, "an encrypted message's ID not saved; kept in memory until the data directory takes writes");
        }
    }
    drop(bytes);
    let archived = match location {
        Some(loc) => Some(
            archive
                .store_prepared(loc, hash, Arc::clone(&prepared), view.encrypted)
                .await,
        ),
        None => None,
    };
    Ok(Ingested {
        view,
        prepared,
        archived,
    })
}

/// Reads one message from the provider for the user, learning what it
/// teaches in the order its verdict needs ([`ingest`] then indexes,
/// records and archives it). Without a keystore nothing is learned and only
/// the account's keys are used.
///
/// Clear mail: its sender's Autocrypt header is recorded first, so that a
/// first signed message verifies with the key it brings. Encrypted mail
/// (PGP/MIME): decrypted first, since what its sender wrote inside wins
/// over what anyone could write outside: the Autocrypt header inside (the
/// only one Delta Chat sends), else the outer one, dated by the protected
/// Date. If recording that changes the key held for the sender (a first
/// contact, a new key) or the status must report a change or a conflict,
/// the message is viewed again with the keystore's new answer; that second
/// decryption is paid only then. Its accepted gossip is recorded last.
pub async fn read(
    store: Option<&Keystore>,
    keys: Arc<Keys>,
    account: &str,
    provider_bytes: Vec<u8>,
) -> Result<(View, Vec<u8>), tokio::task::JoinError> {
    let Some(store) = store else {
        return view_blocking(keys, Sender::default(), provider_bytes).await;
    };
    // The outer header, read once for all that follows.
    let facts = mailcrypt::message_facts(&provider_bytes, SystemTime::now());
    let outer = Lessons::from_facts(&facts, Vec::new());
    let outer_from = facts.from.first().cloned();
    if facts.content_type != "multipart/encrypted" {
        let sender = Sender::record(store, account, &outer, outer_from).await;
        let (view, bytes) = view_blocking(keys, sender, provider_bytes).await?;
        learn_lessons(store, account, &view).await;
        return Ok((view, bytes));
    }
    let before = Sender::before_decryption(store, outer_from.clone()).await;
    let (first, bytes) = view_blocking(keys.clone(), before.clone(), provider_bytes).await?;
    // Once decrypted, what is inside and the From shown; otherwise nothing
    // inside to read: the outer header, as for clear mail.
    let (lessons, from) = if first.decrypted {
        let inside = Lessons {
            incoming: first.lessons.incoming.clone(),
            gossip: Vec::new(),
        };
        (inside, mailcrypt::sender_address(&first.message))
    } else {
        (outer, outer_from)
    };
    let after = Sender::record(store, account, &lessons, from).await;
    let (view, bytes) = if before.needs_second_look(&after) {
        view_blocking(keys, after, bytes).await?
    } else {
        (first, bytes)
    };
    learn_lessons(store, account, &view).await;
    Ok((view, bytes))
}

/// [`view`] on a core (decryption is CPU work).
async fn view_blocking(
    keys: Arc<Keys>,
    sender: Sender,
    bytes: Vec<u8>,
) -> Result<(View, Vec<u8>), tokio::task::JoinError> {
    on_a_core(move || (view(&bytes, &keys, &sender, SystemTime::now()), bytes)).await
}

/// Runs CPU work (decryption, index extraction) on the blocking pool, at
/// most one job per core at a time however many messages are in flight: a
/// download hands over a hundred at once, and a thread each would add only
/// switching and memory.
async fn on_a_core<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    static CORES: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let cores = CORES.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    });
    // Never closed; were it, the work would run unthrottled.
    let _permit = cores.acquire().await.ok();
    tokio::task::spawn_blocking(work).await
}

async fn learn_lessons(store: &Keystore, account: &str, view: &View) {
    if let Err(e) = learn_gossip(store, account, &view.lessons).await {
        warn!(error = %e, "gossip from a message not recorded");
    }
}

/// A message ingested once for every session that asked meanwhile.
pub struct Ingestion {
    pub view: View,
    pub prepared: Arc<Prepared>,
    /// Where the ingesting session archived it before the others woke up
    /// (they find it there, and write nothing).
    pub archived_at: Option<Location>,
    /// Whether that store created the archived content, so that what the
    /// archive serves there is this view's message. Otherwise the content
    /// was archived before (a copy, or another session first), and the
    /// archived bytes are the ones to serve.
    pub created: bool,
}

/// One message to ingest, with what ingesting it needs.
pub struct Job {
    pub keystore: Keystore,
    pub archive: Archive,
    pub account: String,
    pub keys: Arc<Keys>,
    pub bytes: Vec<u8>,
    pub hash: [u8; 32],
    pub location: Option<Location>,
}

type Flight = Arc<tokio::sync::OnceCell<Option<Arc<Ingestion>>>>;

/// Ingestions in progress, by account and hash of the provider's bytes.
/// New mail is fetched by every open session (Thunderbird keeps several per
/// account); decrypting it once instead of once per session keeps the work
/// (and the memory) of a busy gateway proportional to the mail, not to the
/// sessions.
#[derive(Default)]
pub struct SingleFlight {
    flights: std::sync::Mutex<std::collections::HashMap<(String, [u8; 32]), Flight>>,
}

impl SingleFlight {
    /// Ingests the job's message, or waits for the ingestion of the same
    /// bytes another session started. `None` if the ingesting worker
    /// panicked. Call [`SingleFlight::land`] once the result is archived.
    pub fn ingest(
        &self,
        job: Job,
    ) -> impl std::future::Future<Output = Option<Arc<Ingestion>>> + Send + 'static {
        let flight = {
            let mut flights = self
                .flights
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(flights.entry((job.account.clone(), job.hash)).or_default())
        };
        async move { flight.get_or_init(|| ingest_job(job)).await.clone() }
    }

    /// Forgets an ingestion once its result is archived (later sessions
    /// find it there); sessions still waiting keep their copy.
    pub fn land(&self, account: &str, hash: &[u8; 32]) {
        self.flights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&(account.to_string(), *hash));
    }
}

/// [`ingest`] at the job's location.
async fn ingest_job(job: Job) -> Option<Arc<Ingestion>> {
    let Job {
        keystore,
        archive,
        account,
        keys,
        bytes,
        hash,
        location,
    } = job;
    let ingested = ingest(
        Some(&keystore),
        &archive,
        keys,
        &account,
        bytes,
        &hash,
        location.as_ref(),
    )
    .await
    .ok()?;
    let (archived_at, created) = match (location, ingested.archived) {
        (Some(loc), Some(Ok(stored))) => (Some(loc), stored != Stored::Linked),
        (Some(loc), Some(Err(e))) => {
            warn!(uid = loc.uid, error = %e, "message not archived");
            (None, false)
        }
        _ => (None, false),
    };
    Some(Arc::new(Ingestion {
        view: ingested.view,
        prepared: ingested.prepared,
        archived_at,
        created,
    }))
}
