//! Messages being downloaded for the archive, by location.
//!
//! New mail is fetched by every open session of an account (Thunderbird
//! keeps several, a load test a hundred), and a session that finds a
//! message missing from the archive downloads, views and archives it. The
//! first session to find a message missing claims it; the others wait
//! until that claim ends and read the archive. A claim ends when its
//! [`Claimed`] guard is dropped — archived, failed or cancelled alike — so
//! a waiter never waits for a session that has gone away.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use archive::Location;
use tokio::sync::watch;

/// The registry, shared by every session of one proxy.
#[derive(Clone, Default)]
pub struct Downloads {
    claims: Arc<Mutex<HashMap<Location, watch::Receiver<()>>>>,
}

/// The outcome of [`Downloads::claim`].
pub enum Claim {
    /// This session downloads the message; others wait until the guard drops.
    Mine(Claimed),
    /// Another session is downloading it; the receiver's `changed()`
    /// returns once that session is done.
    Theirs(watch::Receiver<()>),
}

/// A claim on one location, released on drop.
pub struct Claimed {
    claims: Arc<Mutex<HashMap<Location, watch::Receiver<()>>>>,
    location: Location,
    // Dropping the sender wakes every receiver.
    _done: watch::Sender<()>,
}

impl Downloads {
    /// Claims a location unless another session holds it.
    pub fn claim(&self, location: &Location) -> Claim {
        let mut claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(receiver) = claims.get(location) {
            return Claim::Theirs(receiver.clone());
        }
        let (done, receiver) = watch::channel(());
        claims.insert(location.clone(), receiver);
        Claim::Mine(Claimed {
            claims: Arc::clone(&self.claims),
            location: location.clone(),
            _done: done,
        })
    }

    /// Locations claimed now (tests, diagnostics).
    pub fn len(&self) -> usize {
        self.claims
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Claimed {
    fn drop(&mut self) {
        self.claims
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.location);
    }
}

/// Waits until the claim behind `receiver` ends.
pub async fn until_released(mut receiver: watch::Receiver<()>) {
    // Nothing is ever sent: `changed` returns only when the sender drops.
    while receiver.changed().await.is_ok() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(uid: u32) -> Location {
        Location {
            account: "bob@example.org".into(),
            mailbox: "INBOX".into(),
            uidvalidity: 7,
            uid,
        }
    }

    #[tokio::test]
    async fn the_second_session_waits_for_the_first() {
        let downloads = Downloads::default();
        let Claim::Mine(first) = downloads.claim(&at(1)) else {
            panic!("nobody held the location");
        };
        let Claim::Theirs(receiver) = downloads.claim(&at(1)) else {
            panic!("the location was held");
        };
        // Other locations are free meanwhile.
        assert!(matches!(downloads.claim(&at(2)), Claim::Mine(_)));
        let waiter = tokio::spawn(until_released(receiver));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "woke before the claim ended");
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter woke")
            .expect("the waiter finished");
        assert!(downloads.is_empty());
        assert!(matches!(downloads.claim(&at(1)), Claim::Mine(_)));
    }

    #[tokio::test]
    async fn a_cancelled_claim_releases_its_waiters() {
        let downloads = Downloads::default();
        let task_downloads = downloads.clone();
        let claimer = tokio::spawn(async move {
            let _claim = task_downloads.claim(&at(3));
            std::future::pending::<()>().await;
        });
        while downloads.is_empty() {
            tokio::task::yield_now().await;
        }
        let Claim::Theirs(receiver) = downloads.claim(&at(3)) else {
            panic!("the location was held");
        };
        claimer.abort();
        tokio::time::timeout(Duration::from_secs(5), until_released(receiver))
            .await
            .expect("the waiter woke when the claimer went away");
        assert!(downloads.is_empty());
    }
}
