-- FTS5's secure-delete mode is switched on only inside the transactions that
-- delete (collect_orphans in src/lib.rs), no longer for the table's life. With it on,
-- every flush of new rows takes FTS5's slow path, and SQLite 3.45 mistakes
-- a long position list (a word frequent in one message) for a delete and
-- looks it up in every segment: half of all SQLite steps of a cold
-- mailbox read (perf, issue 21). Deletes still purge their terms.
INSERT INTO content_fts (content_fts, rank) VALUES ('secure-delete', 0);
