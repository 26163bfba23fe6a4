//! The FETCH driver: performs what a [`FetchCommand`] asks — answers, key
//! lessons, archive look-ups, detection and downloads at the provider,
//! ingestion — and reports each result back. The rules are the command's;
//! what is here is I/O: which store or connection answers each question,
//! and how sessions share the work of new mail ([`Downloads`],
//! [`SingleFlight`](crate::ingest::SingleFlight)).

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use archive::Location;
use imap_next::imap_types::core::Vec1;
use imap_next::imap_types::fetch::MessageDataItem;
use imap_next::imap_types::response::Data;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::{Current, Forwarder, Kind, Selected, SessionError};
use crate::downloads::{until_released, Claim};
use crate::imap::fetch_command::{Effect, FetchCommand};
use crate::ingest::Job;
use crate::learn::{learn, Lessons};
use crate::plain::MailboxKey;

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

    async fn download_and_view(
        &mut self,
        uids: &[u32],
    ) -> Result<Vec<(u32, Vec<u8>)>, SessionError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let fetched = self.session.fetch_messages(uids).await?;
        Ok(self.view_many(fetched).await)
    }

    /// Ingests provider messages, eight per core at once (decrypting on
    /// the blocking pool while others wait for the vault and the archive);
    /// returns the served bytes per
    /// UID (in completion order). A message another session is ingesting
    /// right now (new mail, with many sessions open) is not decrypted
    /// twice: both wait for the one ingestion
    /// ([`SingleFlight`](crate::ingest::SingleFlight)).
    async fn view_many(&self, messages: Vec<(u32, Vec<u8>)>) -> Vec<(u32, Vec<u8>)> {
        // Enough in flight that both cores stay busy while ingestions wait
        // for the keystore and for their archive group's commit.
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get()) * 8;
        let account = &self.account.address;
        let mut served = Vec::with_capacity(messages.len());
        let mut running = JoinSet::new();
        let (downloaded, known) =
            crate::ingest::hash_downloaded(&self.shared.archive, messages).await;
        // Without the answer every message is ingested; content archived
        // before is then linked by the archive's store.
        let known = known.unwrap_or_else(|e| {
            warn!(error = %e, "archive lookup failed");
            HashSet::new()
        });
        let mut pending = downloaded.into_iter();
        loop {
            while running.len() < workers {
                let Some(crate::ingest::Downloaded { uid, bytes, hash }) = pending.next() else {
                    break;
                };
                // The same provider bytes elsewhere (a copied or moved
                // message, a UIDVALIDITY change): link, decrypt nothing.
                let location = self.location(uid);
                if let (Some(loc), true) = (&location, known.contains(&hash)) {
                    if let Ok(true) = self.shared.archive.link(loc, &hash).await {
                        if let Ok(Some(frozen)) = self.shared.archive.message_at(loc).await {
                            served.push((uid, frozen));
                            continue;
                        }
                    }
                }
                let ingestion = self.shared.flights.ingest(Job {
                    keystore: self.shared.keystore.clone(),
                    archive: self.shared.archive.clone(),
                    account: account.clone(),
                    keys: Arc::clone(&self.keys),
                    bytes,
                    hash,
                    location: location.clone(),
                });
                running.spawn(async move { (uid, hash, location, ingestion.await) });
            }
            let Some(done) = running.join_next().await else {
                break;
            };
            let Ok((uid, hash, location, ingested)) = done else {
                warn!("a message could not be viewed");
                continue;
            };
            let Some(ingested) = ingested else {
                // The viewer panicked: that message is not served.
                self.shared.flights.land(account, &hash);
                warn!(uid, "a message could not be viewed");
                continue;
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
