//! Storing: a message's content, header section, index text and location,
//! committed in groups ([`Archive::store_prepared`]).

use std::collections::HashMap;
use std::sync::Arc;

use crate::{extract, Archive, ArchiveError, Location, Prepared, Stored};

impl Archive {
    /// Archives a message whose index text was extracted beforehand (see
    /// [`Prepared`]), so the write transaction is not held during the work.
    /// Callers [`Archive::link`] first; content archived meanwhile (by
    /// another store) is linked, not stored twice.
    ///
    /// Writes are committed in groups: whoever holds the write turn takes
    /// every store queued meanwhile (up to [`GROUP_COMMIT`]) into one
    /// transaction, and each caller gets its own answer once that
    /// transaction is committed, not before. Per message, a transaction of
    /// its own cost a commit and an FTS5 segment flush; many sessions and
    /// sync workers store at once.
    pub async fn store_prepared(
        &self,
        loc: &Location,
        hash: &[u8; 32],
        prepared: Arc<Prepared>,
        encrypted: bool,
    ) -> Result<Stored, ArchiveError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let write = Write {
            loc: loc.clone(),
            hash: *hash,
            prepared,
            encrypted,
            reply,
        };
        self.writes
            .queue_and_commit(
                write,
                GROUP_COMMIT,
                |group| {
                    let archive = self.clone();
                    async move { archive.write_group(group).await }
                },
                answer,
            )
            .await
            .unwrap_or(Err(ArchiveError::Interrupted))
    }

    /// Commits a group of stores in one transaction; if that fails, each
    /// on its own, so that one bad store does not fail the others and each
    /// caller hears its own error.
    async fn write_group(&self, group: Vec<Write>) {
        let together = async {
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            let stored = write_all(&mut tx, &group).await;
            keystore::vault::finish(tx, stored).await
        };
        match together.await {
            Ok(stored) => {
                for (write, stored) in group.into_iter().zip(stored) {
                    let _ = write.reply.send(Ok(stored));
                }
            }
            Err(_) if group.len() > 1 => {
                for write in group {
                    let alone = async {
                        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
                        let stored = write_all(&mut tx, std::slice::from_ref(&write)).await;
                        let stored = keystore::vault::finish(tx, stored).await?;
                        Ok(stored.into_iter().next().unwrap_or(Stored::Linked))
                    };
                    let result = alone.await;
                    let _ = write.reply.send(result);
                }
            }
            Err(e) => {
                if let Some(write) = group.into_iter().next() {
                    let _ = write.reply.send(Err(e));
                }
            }
        }
    }
}

/// Most stores one transaction takes ([`Archive::store_prepared`]).
const GROUP_COMMIT: usize = 64;

/// One store waiting for its group's commit.
pub(crate) struct Write {
    loc: Location,
    hash: [u8; 32],
    prepared: Arc<Prepared>,
    encrypted: bool,
    reply: tokio::sync::oneshot::Sender<Result<Stored, ArchiveError>>,
}

/// The stores waiting to be committed, and the turn to commit them.
pub(crate) type Writes = keystore::GroupCommit<Write>;

/// Stores a group within a transaction, with a fixed number of statements
/// whatever its size (each statement is a round trip to SQLite's worker
/// thread; per message, they were a large share of a first mailbox read):
/// content not archived yet (the first store of each hash) with its
/// message, header section and index text; every location. What each store
/// did, in the group's order.
async fn write_all(
    tx: &mut sqlx::SqliteConnection,
    group: &[Write],
) -> Result<Vec<Stored>, ArchiveError> {
    let hashes: Vec<[u8; 32]> = group.iter().map(|w| w.hash).collect();
    let mut ids = content_ids(tx, &hashes).await?;
    // The first store of each hash not archived yet creates its content.
    let mut creates = vec![false; group.len()];
    let mut new: Vec<&Write> = Vec::new();
    for (write, creates) in group.iter().zip(&mut creates) {
        if !ids.contains_key(&write.hash) && !new.iter().any(|n| n.hash == write.hash) {
            *creates = true;
            new.push(write);
        }
    }
    if !new.is_empty() {
        ids.extend(insert_content(tx, &new).await?);
        // Every new content has its row now; a missing one would bind NULL
        // and let SQLite pick an unrelated ID.
        let new_ids = new
            .iter()
            .map(|w| ids.get(&w.hash).copied().ok_or(sqlx::Error::RowNotFound))
            .collect::<Result<Vec<i64>, _>>()?;
        let rows = |n: usize| vec!["(?, ?)"; n].join(", ");
        // sqlx copies what a statement binds: a group of large messages
        // goes in a few statements, not one holding a copy of them all.
        for (writes, ids) in by_size(&new, &new_ids) {
            let sql = format!("INSERT INTO message (id, bytes) VALUES {}", rows(ids.len()));
            let mut query = sqlx::query(&sql);
            for (write, id) in writes.iter().zip(ids) {
                query = query.bind(*id).bind(&write.prepared.message[..]);
            }
            query.execute(&mut *tx).await?;
            let sql = format!(
                "INSERT INTO message_header (id, header) VALUES {}",
                rows(ids.len())
            );
            let mut query = sqlx::query(&sql);
            for (write, id) in writes.iter().zip(ids) {
                query = query
                    .bind(*id)
                    .bind(letterlock_mime::header::header_section(
                        &write.prepared.message,
                    ));
            }
            query.execute(&mut *tx).await?;
        }
        let to_index: Vec<(i64, &extract::IndexText)> = new
            .iter()
            .zip(&new_ids)
            .filter_map(|(w, id)| Some((*id, w.prepared.text.as_ref()?)))
            .collect();
        index_group(tx, &to_index).await?;
    }
    put_locations(tx, group, &ids).await?;
    Ok(group
        .iter()
        .zip(creates)
        .map(|(write, created)| match (&write.prepared.text, created) {
            // Archived before (a copy, or another store first).
            (_, false) => Stored::Linked,
            (Some(t), true) => Stored::Indexed { note: t.truncated },
            (None, true) => Stored::NotIndexed,
        })
        .collect())
}

/// Most message bytes one statement binds ([`write_all`]).
const STATEMENT_BYTES: usize = 8 * 1024 * 1024;

/// `new` and its IDs in runs of at most [`STATEMENT_BYTES`] of messages
/// (at least one message each).
fn by_size<'a>(new: &'a [&'a Write], ids: &'a [i64]) -> Vec<(&'a [&'a Write], &'a [i64])> {
    let mut runs = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, write) in new.iter().enumerate() {
        let size = write.prepared.message.len();
        if i > start && bytes + size > STATEMENT_BYTES {
            runs.push((&new[start..i], &ids[start..i]));
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < new.len() {
        runs.push((&new[start..], &ids[start..]));
    }
    runs
}

/// The content IDs of those of these hashes that are archived already.
pub(crate) async fn content_ids(
    conn: &mut sqlx::SqliteConnection,
    hashes: &[[u8; 32]],
) -> Result<HashMap<[u8; 32], i64>, ArchiveError> {
    let mut ids = HashMap::new();
    // Well under SQLite's limit on bound parameters.
    for chunk in hashes.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!("SELECT hash, id FROM content WHERE hash IN ({marks})");
        let mut query = sqlx::query_as::<_, (Vec<u8>, i64)>(&sql);
        for hash in chunk {
            query = query.bind(&hash[..]);
        }
        ids.extend(ids_by_hash(query.fetch_all(&mut *conn).await?));
    }
    Ok(ids)
}

fn ids_by_hash(rows: Vec<(Vec<u8>, i64)>) -> HashMap<[u8; 32], i64> {
    rows.into_iter()
        .filter_map(|(hash, id)| Some((<[u8; 32]>::try_from(hash).ok()?, id)))
        .collect()
}

/// New content rows, one per store of `new` (distinct hashes); their IDs.
async fn insert_content(
    tx: &mut sqlx::SqliteConnection,
    new: &[&Write],
) -> Result<HashMap<[u8; 32], i64>, ArchiveError> {
    let rows = vec!["(?, ?, ?, ?, ?, ?)"; new.len()].join(", ");
    // RETURNING gives rows in no set order: matched by hash.
    let sql = format!(
        "INSERT INTO content (hash, encrypted, date, from_display, subject, has_attachment)
         VALUES {rows} RETURNING hash, id"
    );
    let mut query = sqlx::query_as::<_, (Vec<u8>, i64)>(&sql);
    for write in new {
        let text = write.prepared.text.as_ref();
        query = query
            .bind(&write.hash[..])
            .bind(write.encrypted)
            .bind(text.and_then(|t| t.date))
            .bind(text.map(|t| t.from_display.as_str()).unwrap_or_default())
            .bind(text.map(|t| t.subject_display.as_str()).unwrap_or_default())
            .bind(text.is_some_and(|t| t.has_attachment));
    }
    Ok(ids_by_hash(query.fetch_all(&mut *tx).await?))
}

/// Every store's location, pointing at its content.
async fn put_locations(
    tx: &mut sqlx::SqliteConnection,
    group: &[Write],
    ids: &HashMap<[u8; 32], i64>,
) -> Result<(), ArchiveError> {
    let placed: Vec<(&Location, i64)> = group
        .iter()
        .filter_map(|w| Some((&w.loc, *ids.get(&w.hash)?)))
        .collect();
    if placed.is_empty() {
        return Ok(());
    }
    let rows = vec!["(?, ?, ?, ?, ?)"; placed.len()].join(", ");
    let sql = format!(
        "INSERT INTO location (account, mailbox, uidvalidity, uid, content_id) VALUES {rows}
         ON CONFLICT (account, mailbox, uidvalidity, uid) DO UPDATE SET content_id = excluded.content_id"
    );
    let mut query = sqlx::query(&sql);
    for (loc, id) in placed {
        query = query
            .bind(&loc.account)
            .bind(&loc.mailbox)
            .bind(i64::from(loc.uidvalidity))
            .bind(i64::from(loc.uid))
            .bind(id);
    }
    query.execute(&mut *tx).await?;
    Ok(())
}

/// Adds the index text of new content to the full-text index, the whole
/// group in one statement: FTS5 flushes its pending terms at every
/// statement of a transaction (each opens a savepoint), so one INSERT per
/// message made a segment per message.
async fn index_group(
    tx: &mut sqlx::SqliteConnection,
    new: &[(i64, &extract::IndexText)],
) -> Result<(), ArchiveError> {
    if new.is_empty() {
        return Ok(());
    }
    let rows = vec!["(?, ?, ?, ?, ?, ?)"; new.len()].join(", ");
    let sql = format!(
        "INSERT INTO content_fts (rowid, subject, sender, recipients, body, attachments) VALUES {rows}"
    );
    let mut query = sqlx::query(&sql);
    for (id, t) in new {
        query = query
            .bind(*id)
            .bind(&t.subject)
            .bind(&t.sender)
            .bind(&t.recipients)
            .bind(&t.body)
            .bind(&t.attachments);
    }
    query.execute(&mut *tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(size: usize) -> Write {
        let (reply, _) = tokio::sync::oneshot::channel();
        Write {
            loc: crate::tests::at(1),
            hash: [0; 32],
            prepared: Arc::new(Prepared {
                message: vec![b'x'; size],
                text: None,
            }),
            encrypted: false,
            reply,
        }
    }

    #[test]
    fn statements_bind_at_most_the_bound_and_at_least_one_message() {
        const MIB: usize = 1024 * 1024;
        let writes: Vec<Write> = [1, 5, 3, 9, 1].iter().map(|m| write(m * MIB)).collect();
        let new: Vec<&Write> = writes.iter().collect();
        let ids = [10, 11, 12, 13, 14];
        let runs: Vec<(usize, Vec<i64>)> = by_size(&new, &ids)
            .into_iter()
            .map(|(w, i)| {
                (
                    w.iter().map(|w| w.prepared.message.len() / MIB).sum(),
                    i.to_vec(),
                )
            })
            .collect();
        assert_eq!(
            runs,
            [
                (6, vec![10, 11]),
                (3, vec![12]),
                (9, vec![13]),
                (1, vec![14])
            ]
        );
        assert!(by_size(&[], &[]).is_empty());
    }

    /// Large messages stored at once, so that groups span several
    /// statements: each is archived whole, under its own location.
    #[tokio::test]
    async fn large_messages_stored_at_once_are_each_archived_whole() {
        let (_dir, archive) = crate::tests::fresh().await;
        let message = |uid: u32| {
            let mut m = format!("From: bob@example.org\r\nSubject: big {uid}\r\n\r\n").into_bytes();
            m.extend(std::iter::repeat_n(
                b'a' + (uid % 26) as u8,
                3 * 1024 * 1024,
            ));
            m
        };
        let at = crate::tests::at;
        let mut running = tokio::task::JoinSet::new();
        for uid in 1..=8u32 {
            let archive = archive.clone();
            running.spawn(async move {
                let m = message(uid);
                archive
                    .store_prepared(
                        &at(uid),
                        &crate::content_hash(&m),
                        Arc::new(Prepared::new(m)),
                        true,
                    )
                    .await
            });
        }
        while let Some(done) = running.join_next().await {
            let stored = done.expect("task").expect("store");
            assert!(matches!(stored, Stored::Indexed { .. }), "{stored:?}");
        }
        for uid in 1..=8u32 {
            let stored = archive.message_at(&at(uid)).await.expect("read");
            assert_eq!(stored, Some(message(uid)), "UID {uid}");
        }
    }
}
