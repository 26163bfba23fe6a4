-- The certificate and private key the gateway's local listeners present on
-- STARTTLS. Kept in the vault so a copy of the data directory does not let
-- anyone impersonate the gateway to the user's mail client.
CREATE TABLE local_tls (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    cert_der BLOB NOT NULL,
    key_der BLOB NOT NULL
);
