//! Searching: the query language turned into SQL over FTS5 and the
//! content table, with a snippet per hit; and the IMAP proxy's SEARCH over
//! one mailbox's encrypted messages, answered from the same index.

use crate::fold::words;
use crate::{
    snippet, Archive, ArchiveError, Hit, Location, Order, Query, QueryError, SearchOptions,
};

/// The part of a message an IMAP text criterion (RFC 3501 6.4.4) looks at,
/// as the index holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// SUBJECT.
    Subject,
    /// FROM: the sender's name and address.
    Sender,
    /// TO and CC: the index keeps them together.
    Recipients,
    /// BODY: the text of every text part.
    Body,
    /// TEXT: header fields and body alike.
    Any,
}

impl Field {
    fn filter(self) -> &'static str {
        match self {
            Field::Subject => "subject : ",
            Field::Sender => "sender : ",
            Field::Recipients => "recipients : ",
            Field::Body => "body : ",
            Field::Any => "",
        }
    }
}

/// An IMAP search string as an FTS5 phrase whose last word is a prefix:
/// `"w1 w2 w3" *`. `None` when the string has no word characters.
pub(crate) fn words_phrase(text: &str) -> Option<String> {
    let words = words(text);
    (!words.is_empty()).then(|| format!("\"{words}\" *"))
}

impl Archive {
    /// The UIDs of one mailbox's archived encrypted messages where `field`
    /// holds the words of `text` in this order, the last one as a prefix:
    /// `SUBJECT "quarterly rep"` finds "Quarterly report", not
    /// "unquarterly". That is word semantics, as Dovecot's and Gmail's
    /// full-text search give, not RFC 3501's substrings: an index answers in
    /// time and memory that do not grow with the mailbox, a scan of every
    /// decrypted message does not. Case, diacritics and compatibility forms
    /// are folded as for `gateway search`. `None` when `text` has no word
    /// characters (the index cannot say).
    pub async fn encrypted_uids_with(
        &self,
        (account, mailbox, uidvalidity): (&str, &str, u32),
        field: Field,
        text: &str,
    ) -> Result<Option<Vec<u32>>, ArchiveError> {
        let Some(phrase) = words_phrase(text) else {
            return Ok(None);
        };
        let rows: Vec<i64> = sqlx::query_scalar(
            "SELECT l.uid FROM content_fts
             JOIN content c ON c.id = content_fts.rowid
             JOIN location l ON l.content_id = c.id
             WHERE content_fts MATCH ? AND c.encrypted = 1
               AND l.account = ? AND l.mailbox = ? AND l.uidvalidity = ?
             ORDER BY l.uid",
        )
        .bind(format!("{}{phrase}", field.filter()))
        .bind(account)
        .bind(mailbox)
        .bind(i64::from(uidvalidity))
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(
            rows.into_iter()
                .filter_map(|u| u32::try_from(u).ok())
                .collect(),
        ))
    }

    /// Runs a query.
    pub async fn search(
        &self,
        query: &str,
        options: &SearchOptions,
    ) -> Result<Vec<Hit>, ArchiveError> {
        let q = Query::parse(query)?;
        let mut sql = String::from(if q.fts.is_some() {
            "SELECT l.account, l.mailbox, l.uidvalidity, l.uid, c.date, c.from_display, c.subject,
                    c.id
             FROM content_fts JOIN content c ON c.id = content_fts.rowid JOIN location l ON l.content_id = c.id
             WHERE content_fts MATCH ?"
        } else {
            "SELECT l.account, l.mailbox, l.uidvalidity, l.uid, c.date, c.from_display, c.subject,
                    c.id
             FROM content c JOIN location l ON l.content_id = c.id WHERE 1"
        });
        if q.has_attachment {
            sql.push_str(" AND c.has_attachment = 1");
        }
        if q.before.is_some() {
            sql.push_str(" AND c.date < ?");
        }
        if q.after.is_some() {
            sql.push_str(" AND c.date >= ?");
        }
        if options.account.is_some() {
            sql.push_str(" AND l.account = ?");
        }
        if options.mailbox.is_some() {
            sql.push_str(" AND l.mailbox = ?");
        }
        sql.push_str(match (options.order, q.fts.is_some()) {
            (Order::Relevance, true) => " ORDER BY rank, c.date DESC",
            _ => " ORDER BY c.date DESC, l.uid DESC",
        });
        sql.push_str(" LIMIT ?");
        let mut statement = sqlx::query_as::<_, HitRow>(&sql);
        if let Some(fts) = &q.fts {
            statement = statement.bind(fts);
        }
        for v in [q.before, q.after].into_iter().flatten() {
            statement = statement.bind(v);
        }
        for v in [&options.account, &options.mailbox].into_iter().flatten() {
            statement = statement.bind(v);
        }
        statement = statement.bind(i64::from(options.limit.unwrap_or(50)));
        let rows = statement
            .fetch_all(&self.pool)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(db) if db.message().contains("fts5") => {
                    ArchiveError::Query(QueryError::Syntax(db.message().to_string()))
                }
                _ => ArchiveError::Database(e),
            })?;
        // Bodies (up to 1 MiB each) are read only for the hits shown, in one
        // query: kept in the main query, SQLite would carry every match's body
        // through the sort.
        let ids: Vec<i64> = rows.iter().map(|r| r.7).collect();
        let mut bodies = std::collections::HashMap::new();
        if !ids.is_empty() {
            let placeholders = vec!["?"; ids.len()].join(",");
            let sql =
                format!("SELECT rowid, body FROM content_fts WHERE rowid IN ({placeholders})");
            let mut statement = sqlx::query_as::<_, (i64, String)>(&sql);
            for id in &ids {
                statement = statement.bind(id);
            }
            bodies.extend(statement.fetch_all(&self.pool).await?);
        }
        let mut hits = Vec::with_capacity(rows.len());
        for (account, mailbox, uidvalidity, uid, date, from, subject, id) in rows {
            let body = bodies.get(&id).map(String::as_str).unwrap_or_default();
            hits.push(Hit {
                location: Location {
                    account,
                    mailbox,
                    uidvalidity: u32::try_from(uidvalidity).unwrap_or_default(),
                    uid: u32::try_from(uid).unwrap_or_default(),
                },
                date,
                from,
                subject,
                snippet: snippet::snippet(body, &q.needles),
            });
        }
        Ok(hits)
    }
}

type HitRow = (String, String, i64, i64, Option<i64>, String, String, i64);

#[cfg(test)]
mod tests {
    use super::words_phrase;

    #[test]
    fn search_strings_become_prefix_phrases() {
        assert_eq!(
            words_phrase("quarterly rep").as_deref(),
            Some("\"quarterly rep\" *")
        );
        assert_eq!(
            words_phrase("Grüße, aus").as_deref(),
            Some("\"Grüsse aus\" *")
        );
        assert_eq!(
            words_phrase("alice@example.org").as_deref(),
            Some("\"alice example org\" *")
        );
        // Quotes and FTS5 operators are separators, never syntax.
        assert_eq!(
            words_phrase("a\"b OR c*").as_deref(),
            Some("\"a b OR c\" *")
        );
        assert_eq!(words_phrase(" -- "), None);
        assert_eq!(words_phrase(""), None);
    }
}
