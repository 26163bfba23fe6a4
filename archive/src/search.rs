//! Searching: the query language turned into SQL over FTS5 and the
//! content table, with a snippet per hit.

use crate::{
    snippet, Archive, ArchiveError, Hit, Location, Order, Query, QueryError, SearchOptions,
};

impl Archive {
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
