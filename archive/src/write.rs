//! Storing: a message's content, header section, index text and location,
//! committed in groups ([`Archive::store_prepared`]).

use std::sync::Arc;

use crate::{extract, put_location, Archive, ArchiveError, Location, Prepared, Stored};

impl Archive {
    /// Archives a message whose index text was extracted beforehand (see
    /// [`Prepared`]), so the write transaction is not held during the work.
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
        if self.holds(loc, hash).await? {
            return Ok(Stored::Linked);
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.writes.lock_queue().push(Write {
            loc: loc.clone(),
            hash: *hash,
            prepared,
            encrypted,
            reply,
        });
        {
            // The store queued above is in this group or was in one
            // committed before the turn came here.
            let _turn = self.writes.turn.lock().await;
            let group: Vec<Write> = {
                let mut queue = self.writes.lock_queue();
                let n = queue.len().min(GROUP_COMMIT);
                queue.drain(..n).collect()
            };
            if !group.is_empty() {
                self.write_group(group).await;
            }
        }
        answer.await.unwrap_or(Err(ArchiveError::Interrupted))
    }

    /// Commits a group of stores in one transaction; if that fails, each
    /// on its own, so that one bad store does not fail the others and each
    /// caller hears its own error.
    async fn write_group(&self, group: Vec<Write>) {
        let together = async {
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            let mut stored = Vec::with_capacity(group.len());
            let mut to_index = Vec::new();
            for write in &group {
                let (done, index) = write_one(&mut tx, write).await?;
                stored.push(done);
                if let (Some(id), Some(text)) = (index, write.prepared.text.as_ref()) {
                    to_index.push((id, text));
                }
            }
            index_group(&mut tx, &to_index).await?;
            tx.commit().await?;
            Ok::<_, ArchiveError>(stored)
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
                        let (stored, index) = write_one(&mut tx, &write).await?;
                        if let (Some(id), Some(text)) = (index, write.prepared.text.as_ref()) {
                            index_group(&mut tx, &[(id, text)]).await?;
                        }
                        tx.commit().await?;
                        Ok(stored)
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
struct Write {
    loc: Location,
    hash: [u8; 32],
    prepared: Arc<Prepared>,
    encrypted: bool,
    reply: tokio::sync::oneshot::Sender<Result<Stored, ArchiveError>>,
}

/// The stores waiting to be committed, and the turn to commit them.
#[derive(Debug, Default)]
pub(crate) struct Writes {
    queue: std::sync::Mutex<Vec<Write>>,
    turn: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Write")
            .field("loc", &self.loc)
            .finish_non_exhaustive()
    }
}

impl Writes {
    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Vec<Write>> {
        // A panic while the lock was held left a whole queue behind: go on.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Stores one message within a transaction: its content (unless the same
/// content is archived already) and its location; the content ID to index,
/// if it is new and has index text ([`index_group`]).
async fn write_one(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    write: &Write,
) -> Result<(Stored, Option<i64>), ArchiveError> {
    let Write {
        loc,
        hash,
        prepared,
        encrypted,
        ..
    } = write;
    let existing: Option<i64> = sqlx::query_scalar("SELECT id FROM content WHERE hash = ?")
        .bind(&hash[..])
        .fetch_optional(&mut **tx)
        .await?;
    let (id, stored) = match existing {
        // Someone else archived the same content meanwhile.
        Some(id) => (id, Stored::Linked),
        None => {
            let text = prepared.text.as_ref();
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO content (hash, encrypted, date, from_display, subject, has_attachment)
                 VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(&hash[..])
            .bind(encrypted)
            .bind(text.and_then(|t| t.date))
            .bind(text.map(|t| t.from_display.as_str()).unwrap_or_default())
            .bind(text.map(|t| t.subject_display.as_str()).unwrap_or_default())
            .bind(text.is_some_and(|t| t.has_attachment))
            .fetch_one(&mut **tx)
            .await?;
            sqlx::query("INSERT INTO message (id, bytes) VALUES (?, ?)")
                .bind(id)
                .bind(&prepared.message[..])
                .execute(&mut **tx)
                .await?;
            sqlx::query("INSERT INTO message_header (id, header) VALUES (?, ?)")
                .bind(id)
                .bind(letterlock_mime::header::header_section(&prepared.message))
                .execute(&mut **tx)
                .await?;
            let stored = match text {
                // Indexed with the rest of its group ([`index_group`]).
                Some(t) => Stored::Indexed { note: t.truncated },
                None => Stored::NotIndexed,
            };
            (id, stored)
        }
    };
    put_location(tx, loc, id).await?;
    let to_index = match (&stored, &prepared.text) {
        (Stored::Indexed { .. }, Some(_)) => Some(id),
        _ => None,
    };
    Ok((stored, to_index))
}

/// Adds the index text of new content to the full-text index, the whole
/// group in one statement: FTS5 flushes its pending terms at every
/// statement of a transaction (each opens a savepoint), so one INSERT per
/// message made a segment, and a secure-delete merge, per message.
async fn index_group(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
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
    query.execute(&mut **tx).await?;
    Ok(())
}
