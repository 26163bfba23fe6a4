//! The FETCH driver: performs what a [`FetchCommand`] asks — answers, key
//! lessons, archive look-ups, detection and downloads at the provider,
//! ingestion — and reports each result back. The rules are the command's;
//! what is here is I/O: which store or connection answers each question,
//! and how sessions share the work of new mail ([`Downloads`],
//! [`SingleFlight`](crate::ingest::SingleFlight)).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use archive::Location;
use imap_next::imap_types::core::Vec1;
use imap_next::imap_types::fetch::MessageDataItem;
use imap_next::imap_types::response::Data;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::{Current, Forwarder, Kind, Selected, SessionError, Shared};
use crate::downloads::{until_released, Claim};
use crate::imap::fetch_command::{Effect, FetchCommand};
use crate::ingest::{Ingestion, Job};
use crate::learn::{learn, Lessons};
use crate::plain::MailboxKey;
use crate::view::Keys;

/// How long a session waits for messages another session is downloading
/// before it downloads them itself.
const CLAIM_WAIT: Duration = Duration::from_secs(30);

impl Forwarder {
    /// A FETCH response from the provider: to the running FETCH command,
    /// or passed on if unsolicited (flag changes).
    pub(super) async fn on_fetch(
        &mut self,
        seq: NonZeroU32,
        items: Vec<MessageDataItem<'static>>,
    ) -> Result<(), SessionError> {
        match self.fetch_command() {
            Some(fetch) => fetch.message(seq, items),
            None => {
                if let Ok(items) = Vec1::try_from(items) {
                    self.send_data(Data::Fetch { seq, items });
                }
                return Ok(());
            }
        }
        self.perform_fetch().await
    }

    /// The provider completed the running FETCH: answers what it held back.
    pub(super) async fn finish_fetch(&mut self) -> Result<(), SessionError> {
        if let Some(fetch) = self.fetch_command() {
            fetch.finish();
        }
        self.perform_fetch().await
    }

    fn fetch_command(&mut self) -> Option<&mut FetchCommand> {
        match &mut self.current {
            Some(Current {
                kind: Kind::Fetch(fetch),
                ..
            }) => Some(fetch),
            _ => None,
        }
    }

    /// Performs the running FETCH's effects until it waits for the provider.
    async fn perform_fetch(&mut self) -> Result<(), SessionError> {
        while let Some(effect) = self.fetch_command().and_then(FetchCommand::poll) {
            match effect {
                Effect::Send(data) => self.send_data(data),
                Effect::Learn { uid, header } => self.learn_from_header(uid, &header).await,
                Effect::AskPlain(uids) => {
                    let plain = match self.mailbox_key() {
                        Some(key) => self.shared.plain.plain_among(&key, &uids),
                        None => Default::default(),
                    };
                    self.report(|fetch| fetch.known_plain(&plain));
                }
                Effect::AskSizes(uids) => {
                    let sizes = self.archived_sizes(&uids).await;
                    self.report(|fetch| fetch.archived_sizes(&sizes));
                }
                Effect::AskHeaders(uids) => {
                    let found = self.archived_headers(&uids).await;
                    self.report(|fetch| fetch.archived_headers(&found));
                }
                Effect::AskArchive(uids) => {
                    let found = self.archived_messages(&uids).await;
                    self.report(|fetch| fetch.archived_messages(&found));
                }
                Effect::View(messages) => {
                    let served = self.view_many(messages).await;
                    self.report(|fetch| fetch.viewed(&served));
                }
                Effect::Detect(uids) => {
                    let found = self.session.fetch_detection(&uids).await?;
                    self.report(|fetch| fetch.detected(found));
                }
                Effect::FetchPlain { uids, names } => {
                    let answers = self.session.fetch_items(&uids, names).await?;
                    self.report(|fetch| fetch.plain_fetched(answers));
                }
                Effect::Download(uids) => {
                    self.download(uids).await?;
                    self.report(FetchCommand::downloaded);
                }
                Effect::RecordPlain(uids) => {
                    if let Some(key) = self.mailbox_key() {
                        self.shared.plain.record(&key, uids);
                    }
                }
                Effect::Drain => self.drain_client().await?,
            }
        }
        Ok(())
    }

    fn report(&mut self, answer: impl FnOnce(&mut FetchCommand)) {
        if let Some(fetch) = self.fetch_command() {
            answer(fetch);
        }
    }

    /// Cleartext mail passing through teaches keys too (its Autocrypt
    /// header; trust on first use), once per message and session.
    async fn learn_from_header(&mut self, uid: u32, header: &[u8]) {
        if !self.learned.insert(uid) {
            return;
        }
        let lessons = Lessons::of(header, Vec::new(), SystemTime::now());
        if let Err(e) = learn(
            &self.shared.keystore,
            &self.account.address,
            &lessons,
            SystemTime::now(),
        )
        .await
        {
            warn!(uid, error = %e, "keys from this message not recorded");
        }
    }

    /// The selected mailbox, as [`crate::plain::PlainMessages`] files it.
    pub(super) fn mailbox_key(&self) -> Option<MailboxKey> {
        let selected = self.selected.as_ref()?;
        Some(MailboxKey {
            account: self.account.address.clone(),
            mailbox: selected.mailbox.clone(),
            uidvalidity: selected.uidvalidity?,
        })
    }

    fn location(&self, uid: u32) -> Option<Location> {
        let selected = self.selected.as_ref()?;
        Some(Location {
            account: self.account.address.clone(),
            mailbox: selected.mailbox.clone(),
            uidvalidity: selected.uidvalidity?,
            uid,
        })
    }

    /// The selected mailbox as the archive files it, once its UIDVALIDITY
    /// is known.
    fn archived_mailbox(&self) -> Option<(&str, u32)> {
        match &self.selected {
            Some(Selected {
                mailbox,
                uidvalidity: Some(uidvalidity),
            }) => Some((mailbox, *uidvalidity)),
            _ => None,
        }
    }

    /// The served sizes of the archived messages among these UIDs of the
    /// selected mailbox.
    async fn archived_sizes(&self, uids: &[u32]) -> HashMap<u32, u32> {
        let Some((mailbox, uidvalidity)) = self.archived_mailbox() else {
            return HashMap::new();
        };
        match self
            .shared
            .archive
            .sizes_at(&self.account.address, mailbox, uidvalidity, uids)
            .await
        {
            Ok(sizes) => sizes.into_iter().collect(),
            Err(e) => {
                warn!(error = %e, "archive lookup failed");
                HashMap::new()
            }
        }
    }

    /// The header sections and served sizes of the archived messages of
    /// the selected mailbox with these UIDs.
    async fn archived_headers(&self, uids: &[u32]) -> HashMap<u32, (Vec<u8>, u32)> {
        let Some((mailbox, uidvalidity)) = self.archived_mailbox() else {
            return HashMap::new();
        };
        self.shared
            .archive
            .headers_at(&self.account.address, mailbox, uidvalidity, uids)
            .await
            .unwrap_or_else(|e| {
                warn!(error = %e, "archive lookup failed");
                Vec::new()
            })
            .into_iter()
            .map(|(uid, header, size)| (uid, (header, size)))
            .collect()
    }

    /// The archived messages of the selected mailbox with these UIDs.
    pub(super) async fn archived_messages(&self, uids: &[u32]) -> HashMap<u32, Vec<u8>> {
        let Some((mailbox, uidvalidity)) = self.archived_mailbox() else {
            return HashMap::new();
        };
        self.shared
            .archive
            .messages_at(&self.account.address, mailbox, uidvalidity, uids)
            .await
            .unwrap_or_else(|e| {
                warn!(error = %e, "archive lookup failed");
                Vec::new()
            })
            .into_iter()
            .collect()
    }

    /// Downloads, views and archives messages missing from the archive,
    /// reporting each group as it is ready. A message another session is
    /// downloading right now (new mail, several sessions open) is not
    /// downloaded again: this session waits for it and reads the archive
    /// ([`crate::downloads::Downloads`]).
    async fn download(&mut self, uids: Vec<u32>) -> Result<(), SessionError> {
        let mut mine = Vec::new();
        let mut claims = Vec::new();
        let mut theirs = Vec::new();
        for uid in uids {
            match self.location(uid).map(|l| self.shared.downloads.claim(&l)) {
                Some(Claim::Theirs(receiver)) => theirs.push((uid, receiver)),
                Some(Claim::Mine(claim)) => {
                    claims.push(claim);
                    mine.push(uid);
                }
                None => mine.push(uid),
            }
        }
        let served = self.download_and_view(&mine).await?;
        self.report(|fetch| fetch.served(&served));
        // Released before waiting for anyone, so sessions never wait on
        // each other in a circle.
        drop(claims);
        if theirs.is_empty() {
            return Ok(());
        }
        debug!(
            messages = theirs.len(),
            "waiting for messages another session is downloading"
        );
        let (uids, receivers): (Vec<_>, Vec<_>) = theirs.into_iter().unzip();
        let all_released = async {
            for receiver in receivers {
                until_released(receiver).await;
            }
        };
        // A stalled download elsewhere must not stall this client for
        // longer than a download of its own would take.
        let _ = tokio::time::timeout(CLAIM_WAIT, all_released).await;
        let found = self.archived_messages(&uids).await;
        let not_archived: Vec<u32> = uids
            .into_iter()
            .filter(|uid| !found.contains_key(uid))
            .collect();
        let found: Vec<(u32, Vec<u8>)> = found.into_iter().collect();
        self.report(|fetch| fetch.served(&found));
        let served = self.download_and_view(&not_archived).await?;
        self.report(|fetch| fetch.served(&served));
        Ok(())
    }

    /// Downloads messages and ingests each as it arrives, while the rest
    /// are still on the wire; returns the served bytes per UID.
    async fn download_and_view(
        &mut self,
        uids: &[u32],
    ) -> Result<Vec<(u32, Vec<u8>)>, SessionError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let mut running = JoinSet::new();
        let ingester = self.ingester();
        self.session
            .fetch_messages_each(uids, |uid, bytes| {
                running.spawn(ingester.ingest(uid, bytes));
            })
            .await?;
        Ok(self.collect(running).await)
    }

    /// Ingests provider messages at once (decryption waits for a core,
    /// [`crate::ingest`]); returns the served bytes per UID.
    async fn view_many(&self, messages: Vec<(u32, Vec<u8>)>) -> Vec<(u32, Vec<u8>)> {
        let ingester = self.ingester();
        let mut running = JoinSet::new();
        for (uid, bytes) in messages {
            running.spawn(ingester.ingest(uid, bytes));
        }
        self.collect(running).await
    }

    fn ingester(&self) -> Ingester {
        Ingester {
            shared: Arc::clone(&self.shared),
            keys: Arc::clone(&self.keys),
            account: self.account.address.clone(),
            mailbox: self.location(0),
        }
    }

    /// Serves what the ingestions found, in completion order. A message
    /// another session is ingesting right now (new mail, with many sessions
    /// open) is not decrypted twice: both wait for the one ingestion
    /// ([`SingleFlight`](crate::ingest::SingleFlight)).
    async fn collect(&self, mut running: JoinSet<Found>) -> Vec<(u32, Vec<u8>)> {
        let account = &self.account.address;
        let mut served = Vec::with_capacity(running.len());
        while let Some(done) = running.join_next().await {
            let Ok(Found {
                uid,
                hash,
                location,
                outcome,
            }) = done
            else {
                warn!("a message could not be viewed");
                continue;
            };
            let ingested = match outcome {
                Outcome::Archived(frozen) => {
                    served.push((uid, frozen));
                    continue;
                }
                Outcome::Ingested(Some(ingested)) => ingested,
                Outcome::Ingested(None) => {
                    // The viewer panicked: that message is not served.
                    self.shared.flights.land(account, &hash);
                    warn!(uid, "a message could not be viewed");
                    continue;
                }
            };
            let Some(loc) = location else {
                self.shared.flights.land(account, &hash);
                served.push((uid, ingested.view.message.clone()));
                continue;
            };
            // Archived here as this view: served as it is, without reading
            // it back (the provider's bytes at a location never change, so
            // the content stored there stays this one).
            if ingested.created && ingested.archived_at.as_ref() == Some(&loc) {
                self.shared.flights.land(account, &hash);
                served.push((uid, ingested.view.message.clone()));
                continue;
            }
            // Ingested for another mailbox (a copy): archived here too.
            if ingested.archived_at.as_ref() != Some(&loc) {
                if let Err(e) = self
                    .shared
                    .archive
                    .store_prepared(
                        &loc,
                        &hash,
                        Arc::clone(&ingested.prepared),
                        ingested.view.encrypted,
                    )
                    .await
                {
                    warn!(uid, error = %e, "message not archived");
                }
            }
            // Archived (or not archivable): later sessions look there.
            self.shared.flights.land(account, &hash);
            // Another session may have archived it first: serve what is frozen.
            match self.shared.archive.message_at(&loc).await {
                Ok(Some(frozen)) => served.push((uid, frozen)),
                _ => served.push((uid, ingested.view.message.clone())),
            }
        }
        served
    }
}

/// What ingesting one message needs, owned, so that ingestion can start
/// from inside a download ([`Forwarder::download_and_view`]).
struct Ingester {
    shared: Arc<Shared>,
    keys: Arc<Keys>,
    account: String,
    /// The selected mailbox's archive location (any UID), once known.
    mailbox: Option<Location>,
}

/// One message's ingestion, as [`Forwarder::collect`] serves it.
struct Found {
    uid: u32,
    hash: [u8; 32],
    location: Option<Location>,
    outcome: Outcome,
}

enum Outcome {
    /// The same provider bytes were archived before (a copied or moved
    /// message, a UIDVALIDITY change): linked here, nothing decrypted.
    Archived(Vec<u8>),
    /// Read by this or another session ([`SingleFlight`](crate::ingest::SingleFlight));
    /// `None` if the reader panicked.
    Ingested(Option<Arc<Ingestion>>),
}

impl Ingester {
    fn ingest(&self, uid: u32, bytes: Vec<u8>) -> impl std::future::Future<Output = Found> {
        let shared = Arc::clone(&self.shared);
        let keys = Arc::clone(&self.keys);
        let account = self.account.clone();
        let location = self.mailbox.clone().map(|base| Location { uid, ..base });
        async move {
            let hash = archive::content_hash(&bytes);
            if let Some(loc) = &location {
                if let Ok(true) = shared.archive.link(loc, &hash).await {
                    if let Ok(Some(frozen)) = shared.archive.message_at(loc).await {
                        return Found {
                            uid,
                            hash,
                            location,
                            outcome: Outcome::Archived(frozen),
                        };
                    }
                }
            }
            let ingestion = shared.flights.ingest(Job {
                keystore: shared.keystore.clone(),
                archive: shared.archive.clone(),
                account,
                keys,
                bytes,
                hash,
                location: location.clone(),
            });
            Found {
                uid,
                hash,
                location,
                outcome: Outcome::Ingested(ingestion.await),
            }
        }
    }
}
