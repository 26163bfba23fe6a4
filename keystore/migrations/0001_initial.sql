-- Own identities: one per account. The secret key never leaves the vault.
CREATE TABLE identity (
    address        TEXT PRIMARY KEY,           -- normalized address
    fingerprint    TEXT NOT NULL,
    tsk            BLOB NOT NULL,              -- transferable secret key
    prefer_encrypt TEXT NOT NULL DEFAULT 'mutual',
    created_at     INTEGER NOT NULL            -- unix seconds
);

-- Autocrypt peer state (autocrypt::PeerState), one row per address.
CREATE TABLE peer (
    address             TEXT PRIMARY KEY,
    last_seen           INTEGER,
    autocrypt_timestamp INTEGER,
    public_key          BLOB,
    prefer_encrypt      TEXT NOT NULL DEFAULT 'nopreference',
    gossip_timestamp    INTEGER,
    gossip_key          BLOB
);

-- Every (address, fingerprint) ever seen, per source.
CREATE TABLE key_seen (
    address     TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    source      TEXT NOT NULL CHECK (source IN ('autocrypt', 'gossip', 'dns', 'import', 'setup-message')),
    cert        BLOB NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    PRIMARY KEY (address, fingerprint, source)
);

-- Explicit trust decisions; no row means trust on first use.
CREATE TABLE trust (
    address     TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    level       TEXT NOT NULL CHECK (level IN ('verified', 'rejected')),
    decided_at  INTEGER NOT NULL,
    method      TEXT NOT NULL,
    PRIMARY KEY (address, fingerprint)
);

-- Key changes and conflicts, for keytool and the status header.
CREATE TABLE key_event (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    address         TEXT NOT NULL,
    at              INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    old_fingerprint TEXT,
    new_fingerprint TEXT
);
CREATE INDEX key_event_address ON key_event (address, id);

-- DNS OPENPGPKEY answers, positive and negative, until their TTL runs out.
CREATE TABLE dns_cache (
    address  TEXT PRIMARY KEY,
    certs    BLOB,                             -- NULL: no record
    expires  INTEGER NOT NULL
);
