-- Messages the SMTP proxy refused to send, with the reply the mail client
-- got, for the web page's alerts: who they were for, never what they said.
CREATE TABLE refusal (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account     TEXT NOT NULL,
    at          INTEGER NOT NULL,
    recipients  TEXT NOT NULL,                 -- addresses, one per line
    reply       TEXT NOT NULL
);

-- One-time login links for the web page (`gateway web-link`): only the
-- SHA-256 of each token, so a copy of the vault holds no usable link.
CREATE TABLE web_login (
    token_sha256 BLOB PRIMARY KEY,
    expires      INTEGER NOT NULL
);
