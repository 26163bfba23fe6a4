//! The decryption engine: one message's structure walked once, deciding
//! what may be decrypted and which signature covers what is shown.

use super::*;

/// One walk of a message: the context, the verifiers and the From they
/// are judged against.
pub(super) struct Engine<'a> {
    ctx: &'a DecryptContext<'a>,
    /// What exactly went wrong, for logs (the refusal stays uniform).
    detail: std::cell::RefCell<Option<String>>,
    verifiers: Verifiers<'a>,
    from: Option<&'a str>,
}

impl<'a> Engine<'a> {
    pub(super) fn new(
        ctx: &'a DecryptContext<'a>,
        verifiers: Verifiers<'a>,
        from: Option<&'a str>,
    ) -> Engine<'a> {
        Engine {
            ctx,
            detail: Default::default(),
            verifiers,
            from,
        }
    }
}

impl Engine<'_> {
    /// What exactly went wrong, for logs.
    pub(super) fn into_detail(self) -> Option<String> {
        self.detail.into_inner()
    }

    pub(super) fn examine(&self, root: &Entity<'_>) -> Result<Found, Refusal> {
        self.examine_at(root, 0)
    }

    fn examine_at(&self, root: &Entity<'_>, depth: u8) -> Result<Found, Refusal> {
        let ct = root.content_type();
        if ct.is("multipart/encrypted") {
            return self.pgp_mime(root, &ct, SignatureStatus::Unsigned);
        }
        if ct.is("multipart/signed") {
            return self.signed(root, &ct, depth);
        }
        if ct.is("multipart/mixed") {
            if let Some(found) = self.repaired_exchange(root, &ct) {
                return found;
            }
        }
        if ct.is("text/plain") {
            if let Some(found) = self.inline(root, &ct) {
                return found;
            }
        }
        Ok(self.scan_nested(root))
    }

    /// multipart/signed at the root: verify; decrypt a PGP/MIME first part.
    fn signed(&self, root: &Entity<'_>, ct: &ContentType, depth: u8) -> Result<Found, Refusal> {
        let parts = ct
            .param("boundary")
            .and_then(|b| root.parts(b))
            .ok_or_else(|| Refusal::Malformed("multipart/signed without its parts".into()))?;
        let [signed, sig] = parts.as_slice() else {
            return Err(Refusal::Malformed(format!(
                "multipart/signed has {} parts instead of 2",
                parts.len()
            )));
        };
        let is_pgp = ct
            .param("protocol")
            .is_some_and(|p| p.eq_ignore_ascii_case("application/pgp-signature"));
        if !is_pgp && depth == 0 {
            // An S/MIME (or other) signature is not checked here; what it
            // wraps is looked at as if it were the whole message. Unless
            // that is decrypted (then only the plaintext is shown), the
            // whole message is shown, its second part included, which no
            // OpenPGP signature inside covers.
            return self
                .examine_at(&Entity::parse(signed), depth + 1)
                .map(|found| match found {
                    Found::Clear { signature, refusal } => Found::Clear {
                        signature: signature.covering_part(),
                        refusal,
                    },
                    decrypted => decrypted,
                });
        }
        let sig = Entity::parse(sig);
        let status = if !is_pgp {
            // S/MIME and other protocols are not checked: no verdict.
            SignatureStatus::Unsigned
        } else if !sig.content_type().is("application/pgp-signature") {
            // RFC 3156 §5: the second part is the signature and nothing
            // else. Any other type is shown as content the signature does
            // not cover (an HTML part with the armor in a comment).
            SignatureStatus::Partial
        } else {
            let checks = openpgp::verify_detached(
                &to_crlf(signed),
                &decoded_body(&sig),
                self.verifiers,
                self.ctx.now,
            );
            self.judge(&checks)
        };
        let inner = Entity::parse(signed);
        let inner_ct = inner.content_type();
        if inner_ct.is("multipart/encrypted") {
            return self.pgp_mime(&inner, &inner_ct, status);
        }
        match self.scan_nested(&inner) {
            Found::Clear { refusal, .. } => Ok(Found::Clear {
                signature: status,
                refusal,
            }),
            found => Ok(found),
        }
    }

    /// RFC 3156 §4: exactly a version part and an octet-stream part.
    fn pgp_mime(
        &self,
        entity: &Entity<'_>,
        ct: &ContentType,
        outer_signature: SignatureStatus,
    ) -> Result<Found, Refusal> {
        if !ct
            .param("protocol")
            .is_some_and(|p| p.eq_ignore_ascii_case("application/pgp-encrypted"))
        {
            return Err(Refusal::Malformed(
                "multipart/encrypted without protocol=\"application/pgp-encrypted\"".into(),
            ));
        }
        let parts = ct
            .param("boundary")
            .and_then(|b| entity.parts(b))
            .ok_or_else(|| Refusal::Malformed("multipart/encrypted without its parts".into()))?;
        let [version, data] = parts.as_slice() else {
            return Err(Refusal::Malformed(format!(
                "multipart/encrypted has {} parts instead of 2",
                parts.len()
            )));
        };
        if !Entity::parse(version)
            .content_type()
            .is("application/pgp-encrypted")
        {
            return Err(Refusal::Malformed(
                "the first part is not application/pgp-encrypted".into(),
            ));
        }
        let ciphertext = decoded_body(&Entity::parse(data));
        self.open(&ciphertext, outer_signature)
    }

    /// Decrypts ciphertext holding a MIME entity.
    fn open(&self, ciphertext: &[u8], outer_signature: SignatureStatus) -> Result<Found, Refusal> {
        let decrypted = openpgp::decrypt(
            ciphertext,
            self.ctx.secret_keys,
            self.verifiers,
            self.ctx.now,
        )
        .map_err(|e| match e {
            DecryptFailure::NoKey => Refusal::NoKey,
            DecryptFailure::Integrity(detail) => {
                *self.detail.borrow_mut() = Some(detail);
                Refusal::Integrity
            }
        })?;
        let mut signature = self.judge(&decrypted.signatures);
        let plain = decrypted.plaintext;
        let inner = Entity::parse(&plain);
        let inner_ct = inner.content_type();
        // Older clients sign with multipart/signed inside the encryption.
        let pgp_signed = inner_ct.is("multipart/signed")
            && inner_ct
                .param("protocol")
                .is_some_and(|p| p.eq_ignore_ascii_case("application/pgp-signature"));
        if signature == SignatureStatus::Unsigned && pgp_signed {
            if let Some([signed, sig]) = inner_ct
                .param("boundary")
                .and_then(|b| inner.parts(b))
                .as_deref()
                .filter(|parts| {
                    Entity::parse(parts[1])
                        .content_type()
                        .is("application/pgp-signature")
                })
            {
                let sig_body = decoded_body(&Entity::parse(sig));
                let checks = openpgp::verify_detached(
                    &to_crlf(signed),
                    &sig_body,
                    self.verifiers,
                    self.ctx.now,
                );
                signature = self.judge(&checks);
                let content = Zeroizing::new(signed.to_vec());
                return Ok(Found::Decrypted {
                    content,
                    signature,
                    outer_signature,
                    encrypted_to: decrypted.recipients,
                });
            }
        }
        Ok(Found::Decrypted {
            content: plain,
            signature,
            outer_signature,
            encrypted_to: decrypted.recipients,
        })
    }

    /// Exchange rewrites PGP/MIME into multipart/mixed with an empty text
    /// part first; repair that shape only, nothing looser.
    fn repaired_exchange(
        &self,
        root: &Entity<'_>,
        ct: &ContentType,
    ) -> Option<Result<Found, Refusal>> {
        let parts = root.parts(ct.param("boundary")?)?;
        let [text, version, data] = parts.as_slice() else {
            return None;
        };
        let text = Entity::parse(text);
        let empty =
            text.content_type().is("text/plain") && text.body.iter().all(u8::is_ascii_whitespace);
        let version = Entity::parse(version);
        let data = Entity::parse(data);
        let shaped = empty
            && version.content_type().is("application/pgp-encrypted")
            && data.content_type().is("application/octet-stream");
        if !shaped {
            return None;
        }
        Some(self.open(&decoded_body(&data), SignatureStatus::Unsigned))
    }

    /// Inline PGP in a single text/plain body.
    fn inline(&self, root: &Entity<'_>, ct: &ContentType) -> Option<Result<Found, Refusal>> {
        let body = decoded_body(root);
        let text = String::from_utf8_lossy(&body);
        let trimmed = text.trim();
        if trimmed.starts_with(ARMOR_MESSAGE)
            && trimmed.ends_with(ARMOR_MESSAGE_END)
            && trimmed.matches(ARMOR_MESSAGE).count() == 1
        {
            let found = self
                .open(trimmed.as_bytes(), SignatureStatus::Unsigned)
                .map(|found| match found {
                    Found::Decrypted {
                        content,
                        signature,
                        outer_signature,
                        encrypted_to,
                    } => Found::Decrypted {
                        content: inline_entity(&content, ct, line_ending(root.header)),
                        signature,
                        outer_signature,
                        encrypted_to,
                    },
                    clear => clear,
                });
            return Some(found);
        }
        if trimmed.starts_with(ARMOR_SIGNED) {
            // What is shown is the whole text: a verdict only if all of it
            // is one signed block, and the text Sequoia checked is the text
            // a reader sees in it (no text around the block, no armor
            // header other than Hash, no second block).
            let signature = match cleartext_block(trimmed) {
                Some(shown) => {
                    match openpgp::verify_inline(trimmed.as_bytes(), self.verifiers, self.ctx.now) {
                        Some((checked, checks)) if same_text(&checked, &shown) => {
                            self.judge(&checks)
                        }
                        Some(_) => SignatureStatus::Partial,
                        None => SignatureStatus::Partial,
                    }
                }
                None => SignatureStatus::Partial,
            };
            return Some(Ok(Found::Clear {
                signature,
                refusal: None,
            }));
        }
        if text.contains(ARMOR_MESSAGE) {
            return Some(Ok(Found::Clear {
                signature: SignatureStatus::Unsigned,
                refusal: Some(Refusal::PartialInline),
            }));
        }
        if text.contains(ARMOR_SIGNED) {
            return Some(Ok(Found::Clear {
                signature: SignatureStatus::Partial,
                refusal: None,
            }));
        }
        None
    }

    /// Looks through the whole tree for encrypted or signed parts that are
    /// not at the root: they are reported, not decrypted or trusted.
    fn scan_nested(&self, root: &Entity<'_>) -> Found {
        // Unparseable, or nested too deeply to take apart (letterlock_mime):
        // nothing inside is decrypted or trusted either way.
        let Some(parsed) = letterlock_mime::parse(root.bytes) else {
            return Found::Clear {
                signature: SignatureStatus::Unsigned,
                refusal: None,
            };
        };
        let (mut encrypted, mut signed) = (false, false);
        let mut stack = vec![&parsed];
        let mut budget = 10_000usize;
        while let Some(msg) = stack.pop() {
            for part in &msg.parts {
                budget = budget.saturating_sub(1);
                if budget == 0 {
                    break;
                }
                let ct = part.content_type().map(|c| {
                    format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")).to_ascii_lowercase()
                });
                match ct.as_deref() {
                    Some("multipart/encrypted" | "application/pgp-encrypted") => encrypted = true,
                    Some("multipart/signed" | "application/pgp-signature") => signed = true,
                    _ => {}
                }
                match &part.body {
                    PartType::Text(t) | PartType::Html(t) => {
                        encrypted |= t.contains(ARMOR_MESSAGE);
                        signed |= t.contains(ARMOR_SIGNED);
                    }
                    PartType::Message(m) => stack.push(m),
                    _ => {}
                }
            }
        }
        Found::Clear {
            signature: if signed {
                SignatureStatus::Partial
            } else {
                SignatureStatus::Unsigned
            },
            refusal: encrypted.then_some(Refusal::Nested),
        }
    }

    /// Turns raw signature checks into one verdict against the From
    /// address: valid only for the key held for it ([`SignerKeys`]).
    fn judge(&self, checks: &[SigCheck]) -> SignatureStatus {
        let mut mismatch = None;
        for check in checks {
            if let SigCheck::Good(cert) = check {
                let fingerprint = cert.fingerprint();
                match self.from {
                    Some(from) if self.ctx.signers.holds(from, &fingerprint) => {
                        return SignatureStatus::Valid {
                            fingerprint,
                            signer: from.to_string(),
                        }
                    }
                    _ => mismatch = Some(fingerprint),
                }
            }
        }
        if let Some(fingerprint) = mismatch {
            return SignatureStatus::SignerMismatch { fingerprint };
        }
        for check in checks {
            if let SigCheck::Bad(reason) | SigCheck::Malformed(reason) = check {
                return SignatureStatus::Bad {
                    reason: reason.clone(),
                };
            }
        }
        match checks.first() {
            Some(SigCheck::MissingKey(issuer)) => SignatureStatus::UnknownKey {
                issuer: issuer.as_ref().map(|h| h.to_hex()),
            },
            _ => SignatureStatus::Unsigned,
        }
    }
}

/// Whether `bytes` hold a carriage return that does not start a CRLF.
pub(super) fn has_bare_cr(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
}

/// The text a reader sees signed in `text` if all of it is one block of
/// the cleartext signature framework (RFC 9580 §7): the armor line, only
/// `Hash:` headers, the dash-escaped text, one signature, nothing after.
fn cleartext_block(text: &str) -> Option<String> {
    const SIGNATURE: &str = "-----BEGIN PGP SIGNATURE-----";
    const SIGNATURE_END: &str = "-----END PGP SIGNATURE-----";
    let mut lines = text.lines().map(|l| l.trim_end_matches([' ', '\t', '\r']));
    if lines.next()? != ARMOR_SIGNED {
        return None;
    }
    for line in lines.by_ref() {
        if line.is_empty() {
            break;
        }
        if !line.starts_with("Hash: ") {
            return None;
        }
    }
    let mut shown = Vec::new();
    for line in lines.by_ref() {
        if line == SIGNATURE {
            break;
        }
        if line.starts_with("-----BEGIN PGP") {
            return None;
        }
        shown.push(line.strip_prefix("- ").unwrap_or(line));
    }
    let mut ended = false;
    for line in lines {
        if ended || line.starts_with("-----BEGIN PGP") {
            return None;
        }
        ended = line == SIGNATURE_END;
    }
    ended.then(|| shown.join("\n"))
}

/// Whether the text Sequoia verified is `shown`, line for line (trailing
/// blanks are not signed in the framework).
fn same_text(checked: &[u8], shown: &str) -> bool {
    let checked = String::from_utf8_lossy(checked);
    let lines = |t: &str| -> Vec<String> {
        t.lines()
            .map(|l| l.trim_end_matches([' ', '\t', '\r']).to_string())
            .collect()
    };
    let (mut a, mut b) = (lines(&checked), lines(shown));
    while a.last().is_some_and(String::is_empty) {
        a.pop();
    }
    while b.last().is_some_and(String::is_empty) {
        b.pop();
    }
    a == b
}

/// The body of an entity with its transfer encoding undone.
fn decoded_body(entity: &Entity<'_>) -> Vec<u8> {
    let cte = mime::values(entity.header, "Content-Transfer-Encoding");
    let cte = cte.first().map(|v| v.to_ascii_lowercase());
    match cte.as_deref() {
        Some("base64") => {
            let clean: Vec<u8> = entity
                .body
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(&clean)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&clean))
                .unwrap_or_default()
        }
        Some("quoted-printable") => letterlock_mime::decode_quoted_printable(entity.body),
        _ => entity.body.to_vec(),
    }
}

/// An inline-PGP plaintext as a MIME entity of its own.
fn inline_entity(plain: &[u8], ct: &ContentType, eol: &str) -> Zeroizing<Vec<u8>> {
    let charset = ct.param("charset").unwrap_or("utf-8");
    let long_lines = plain.split(|&b| b == b'\n').any(|l| l.len() > 998);
    let mut out = Vec::with_capacity(plain.len() * 4 / 3 + 128);
    mime::push_field(
        &mut out,
        "Content-Type",
        &format!("text/plain; charset=\"{charset}\""),
        eol,
    );
    if long_lines || plain.contains(&0) {
        mime::push_field(&mut out, "Content-Transfer-Encoding", "base64", eol);
        out.extend_from_slice(eol.as_bytes());
        let encoded = base64::engine::general_purpose::STANDARD.encode(plain);
        for chunk in encoded.as_bytes().chunks(76) {
            out.extend_from_slice(chunk);
            out.extend_from_slice(eol.as_bytes());
        }
    } else {
        mime::push_field(&mut out, "Content-Transfer-Encoding", "8bit", eol);
        out.extend_from_slice(eol.as_bytes());
        out.extend_from_slice(plain);
    }
    Zeroizing::new(out)
}
