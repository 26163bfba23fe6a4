//! Property test: random sequences of incoming messages, gossip and trust
//! decisions never break the key rules.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use autocrypt::{key, AutocryptHeader, Incoming, PreferEncrypt};
use keystore::{Keystore, Unlock};
use proptest::prelude::*;
use sequoia_openpgp::Cert;

const BOB: &str = "bob@example.org";

fn at(day: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + day * 86_400)
}

fn keys() -> &'static [Cert; 3] {
    static KEYS: std::sync::OnceLock<[Cert; 3]> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| [0, 1, 2].map(|_| key::generate(BOB, at(0)).expect("key")))
}

#[derive(Debug, Clone)]
enum Step {
    Message { day: u64, key: Option<usize> },
    Gossip { day: u64, key: usize },
    Verify(usize),
    Reject(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u64..60, proptest::option::of(0usize..3)).prop_map(|(day, key)| Step::Message { day, key }),
        1 => (0u64..60, 0usize..3).prop_map(|(day, key)| Step::Gossip { day, key }),
        1 => (0usize..3).prop_map(Step::Verify),
        1 => (0usize..3).prop_map(Step::Reject),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn key_rules_hold(steps in proptest::collection::vec(step(), 1..14)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let dir = tempfile::tempdir().expect("dir");
            let store = Keystore::create(dir.path(), Unlock::KeyFile).await.expect("create");
            let fpr = |i: usize| keys()[i].fingerprint().to_hex();
            let mut verified: Option<usize> = None;
            let mut rejected = [false; 3];
            let mut newest_header: Option<(u64, usize)> = None;
            for (n, s) in steps.iter().enumerate() {
                let now = at(100 + n as u64);
                match *s {
                    Step::Message { day, key } => {
                        let incoming = Incoming {
                            from_addr: BOB.into(),
                            effective_date: at(day),
                            header: key.map(|k| AutocryptHeader::new(BOB, PreferEncrypt::Mutual, keys()[k].clone())),
                            header_problems: vec![],
                        };
                        store.record_incoming(&incoming, now).await.expect("record");
                        if let Some(k) = key {
                            if newest_header.is_none_or(|(d, _)| day >= d) {
                                newest_header = Some((day, k));
                            }
                        }
                    }
                    Step::Gossip { day, key } => {
                        store.record_gossip(BOB, at(day), &keys()[key]).await.expect("gossip");
                    }
                    Step::Verify(k) => {
                        if store.verify(BOB, &fpr(k), "test", now).await.is_ok() {
                            verified = Some(k);
                            rejected[k] = false;
                        }
                    }
                    Step::Reject(k) => {
                        if store.reject(BOB, Some(&fpr(k)), now).await.is_ok() {
                            rejected[k] = true;
                            if verified == Some(k) { verified = None; }
                        }
                    }
                }
                let effective = store.effective_peer(BOB).await.expect("peer")
                    .and_then(|p| p.target_key().map(|c| c.fingerprint().to_hex()));
                if let Some(v) = verified {
                    prop_assert_eq!(effective.clone(), Some(fpr(v)), "a verified key is never replaced");
                }
                for (k, r) in rejected.iter().enumerate() {
                    if *r {
                        prop_assert_ne!(effective.clone(), Some(fpr(k)), "a rejected key is never used");
                    }
                }
                if verified.is_none() {
                    if let Some((_, k)) = newest_header {
                        if !rejected[k] {
                            prop_assert_eq!(effective.clone(), Some(fpr(k)), "the newest Autocrypt key wins over gossip");
                        }
                    }
                }
            }
            Ok(())
        })?;
    }
}
