//! The pages and the changes they offer. Every change is a keystore
//! function `keytool` calls too; a change that cannot be undone (verify by
//! "they match", unverify, reject, forget) is asked again on a page of its
//! own before it is made.

use std::time::{Instant, SystemTime};

use archive::{Location, Order, SearchOptions};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use keystore::{FingerprintCheck, KeystoreError, TrustLevel};
use maud::{html, Markup};
use secrecy::SecretString;
use serde::Deserialize;

use crate::access::{self, SessionId};
use crate::render::{self, fingerprint, page, qr_code, Nav};
use crate::Shared;

/// Search results on one page.
const HITS: u32 = 50;
/// Events and refusals the alerts page lists.
const ALERTS: u32 = 100;
/// The most of one message's text the page shows.
const LONGEST_TEXT: usize = 1 << 20;

pub(crate) fn router(shared: Shared) -> Router {
    Router::new()
        .route("/", get(status))
        .route("/contacts", get(contacts))
        .route("/contact", get(contact))
        .route("/contact/verify", post(verify))
        .route("/contact/unverify", post(unverify))
        .route("/contact/reject", post(reject))
        .route("/contact/forget", post(forget))
        .route("/alerts", get(alerts))
        .route("/search", get(search))
        .route("/message", get(message))
        .route("/login", get(login))
        .route("/logout", post(logout))
        .route("/style.css", get(style))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            access::guard,
        ))
        .with_state(shared)
}

/// A failure while answering: said in a sentence, never a panic.
struct Failure(StatusCode, String);

impl From<KeystoreError> for Failure {
    fn from(e: KeystoreError) -> Self {
        match e {
            KeystoreError::UnknownPeer(_) | KeystoreError::UnknownKey { .. } => {
                Failure(StatusCode::NOT_FOUND, e.to_string())
            }
            e => Failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("The vault could not be read or written: {e}"),
            ),
        }
    }
}

impl From<archive::ArchiveError> for Failure {
    fn from(e: archive::ArchiveError) -> Self {
        Failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("The archive could not be read: {e}"),
        )
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, render::notice("Something went wrong", &self.1)).into_response()
    }
}

type Answer = Result<Response, Failure>;

impl Shared {
    fn csrf(&self, session: SessionId) -> String {
        self.access.csrf_token(session)
    }

    fn page(&self, session: SessionId, title: &str, here: Nav, body: Markup) -> Response {
        page(title, here, Some(&self.csrf(session)), body).into_response()
    }

    /// A hidden CSRF field for one form.
    fn csrf_field(&self, session: SessionId) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf(session)); }
    }
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        render::STYLE,
    )
        .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        render::notice("Not found", "There is no such page."),
    )
        .into_response()
}

#[derive(Deserialize)]
struct LoginLink {
    token: String,
}

async fn login(State(shared): State<Shared>, Query(link): Query<LoginLink>) -> Answer {
    let token = SecretString::from(link.token);
    if !shared
        .keystore
        .redeem_web_login(&token, SystemTime::now())
        .await?
    {
        return Ok((
            StatusCode::FORBIDDEN,
            render::notice(
                "Link used or expired",
                "This login link was used already or is too old. Run `gateway web-link` \
                 for a new one.",
            ),
        )
            .into_response());
    }
    let cookie = shared.access.start_session(Instant::now());
    tracing::info!("web page: logged in with a one-time link");
    Ok((
        [(header::SET_COOKIE, access::session_cookie(&cookie))],
        Redirect::to("/"),
    )
        .into_response())
}

async fn logout(
    State(shared): State<Shared>,
    Extension(session): Extension<SessionId>,
) -> Response {
    shared.access.end_session(session);
    (
        [(header::SET_COOKIE, access::cleared_cookie())],
        render::notice(
            "Logged out",
            "You are logged out. `gateway web-link` makes a new login link.",
        ),
    )
        .into_response()
}

async fn status(State(shared): State<Shared>, Extension(session): Extension<SessionId>) -> Answer {
    let peers = shared.keystore.list().await?;
    let conflicts = peers.iter().filter(|p| !p.conflicts.is_empty()).count();
    let (messages, locations) = shared.archive.counts().await?;
    let mut own = Vec::new();
    for account in &shared.facts.accounts {
        let fpr = shared
            .keystore
            .identity(&account.address)
            .await
            .ok()
            .map(|i| i.cert.fingerprint().to_hex());
        own.push((account, fpr));
    }
    let warnings = shared.warnings.newest_first();
    let body = html! {
        @if conflicts > 0 {
            p.notice.conflict {
                span.mark { (conflicts) " contact(s) with a conflicting key." }
                " Mail to them still goes to the key you verified. "
                a href="/alerts" { "See the alerts" }
            }
        }
        h2 { "Accounts" }
        table {
            tr { th { "Address" } th { "Your key" } th { "Policy" } th { "Provider" } }
            @for (account, fpr) in &own {
                tr {
                    td { (account.address) }
                    td { @match fpr { Some(f) => (fingerprint(f)), None => span.mark { "no key in the vault" } } }
                    td { (account.policy) }
                    td { "IMAP " (account.imap) br; "SMTP " (account.smtp) }
                }
            }
        }
        h2 { "Listening" }
        table {
            @for (name, address) in &shared.facts.listeners {
                tr { td { (name) } td { (address) } }
            }
        }
        h2 { "Contacts and archive" }
        table {
            tr { td { "Contacts" } td { a href="/contacts" { (peers.len()) } } }
            tr { td { "With a conflicting key" } td { (conflicts) } }
            tr { td { "Archived messages" } td { (messages) " (in " (locations) " places)" } }
        }
        h2 { "Last errors" }
        @if warnings.is_empty() {
            p { "None since the gateway started." }
        } @else {
            table {
                tr { th { "When" } th { "What" } }
                @for w in &warnings {
                    tr { td { (render::date(w.at)) } td { (w.text) } }
                }
            }
        }
    };
    Ok(shared.page(session, "Status", Nav::Status, body))
}

async fn contacts(
    State(shared): State<Shared>,
    Extension(session): Extension<SessionId>,
) -> Answer {
    let mut peers = shared.keystore.list().await?;
    // Conflicts first: they need the person.
    peers.sort_by_key(|p| (p.conflicts.is_empty(), p.address.clone()));
    let body = html! {
        @if peers.is_empty() {
            p { "No contacts yet: keys are learned from mail you receive, or imported with `keytool import`." }
        } @else {
            table {
                tr { th { "Contact" } th { "Trust" } th { "Key mail goes to" } th { "Prefers" } th { "Last seen" } th {} }
                @for p in &peers {
                    tr class=[(!p.conflicts.is_empty()).then_some("conflict")] {
                        td { a href={ "/contact?address=" (urlencode(&p.address)) } { (p.address) } }
                        td { (p.trust.map(TrustLevel::as_str).unwrap_or("-")) }
                        td { @match &p.fingerprint { Some(f) => (fingerprint(f)), None => "no usable key" } }
                        td { (p.prefer_encrypt) }
                        td { (p.last_seen.map(render::date).unwrap_or_default()) }
                        td { @if !p.conflicts.is_empty() { span.mark { "CONFLICT" } } }
                    }
                }
            }
        }
    };
    Ok(shared.page(session, "Contacts", Nav::Contacts, body))
}

#[derive(Deserialize)]
struct Address {
    address: String,
}

async fn contact(
    State(shared): State<Shared>,
    Extension(session): Extension<SessionId>,
    Query(Address { address }): Query<Address>,
) -> Answer {
    let summary = shared.keystore.summary(&address).await?;
    let history = shared.keystore.history(&address).await?;
    let events = shared.keystore.events(&address).await?;
    let candidate = shared.keystore.verification_candidate(&address).await.ok();
    let own = shared.keystore.identities().await?;
    let verified = summary.trust == Some(TrustLevel::Verified);
    let target = summary.fingerprint.clone();
    let csrf = |s: &Shared| s.csrf_field(session);
    let body = html! {
        @for c in &summary.conflicts {
            p.notice.conflict {
                span.mark { "CONFLICT: " }
                "a key that differs from the one you verified arrived: " (fingerprint(c))
                ". Mail still goes to the verified key. Compare the new key with "
                (summary.address) " (in person or by phone), then verify it or reject it below."
            }
        }
        table {
            tr { td { "Trust" } td { (summary.trust.map(TrustLevel::as_str).unwrap_or("-")) } }
            tr { td { "Mail goes to" } td { @match &target { Some(f) => (fingerprint(f)), None => "no usable key" } } }
            tr { td { "Prefers encryption" } td { (summary.prefer_encrypt) } }
        }
        h2 { "Compare fingerprints" }
        p { "Read these out to each other, or scan each other's QR code. If they match, nobody sits between you." }
        div.side {
            @for id in &own {
                @let fpr = id.cert.fingerprint().to_hex();
                div {
                    h3 { "Your key (" (id.address) ")" }
                    p.fprblock { (fingerprint(&fpr)) }
                    (qr_code(&format!("OPENPGP4FPR:{fpr}")))
                }
            }
            @if let Some(fpr) = &candidate {
                div class=[(!summary.conflicts.is_empty()).then_some("conflict")] {
                    h3 { (summary.address) "'s key" }
                    p.fprblock { (fingerprint(fpr)) }
                    (qr_code(&format!("OPENPGP4FPR:{fpr}")))
                }
            }
        }
        div.actions {
            @if let Some(fpr) = &candidate {
                form #verify-compared method="post" action="/contact/verify" {
                    (csrf(&shared))
                    input type="hidden" name="address" value=(summary.address);
                    input type="hidden" name="fingerprint" value=(fpr);
                    input type="hidden" name="method" value="compared";
                    label { input type="checkbox" name="confirm" value="yes" required; " I compared this key with " (summary.address) " and it matches" }
                    " "
                    button type="submit" { "Verify" }
                }
            }
            form #verify-typed method="post" action="/contact/verify" {
                (csrf(&shared))
                input type="hidden" name="address" value=(summary.address);
                input type="hidden" name="method" value="fingerprint";
                label { "Or type the fingerprint " (summary.address) " gave you: "
                    input type="text" name="fingerprint" size="50" autocomplete="off" required; }
                " "
                button type="submit" { "Check and verify" }
            }
            @if verified {
                form #unverify method="post" action="/contact/unverify" {
                    (csrf(&shared))
                    input type="hidden" name="address" value=(summary.address);
                    button type="submit" { "Withdraw the verification" }
                }
            }
            @if let Some(fpr) = candidate.as_ref().or(target.as_ref()) {
                form #reject method="post" action="/contact/reject" {
                    (csrf(&shared))
                    input type="hidden" name="address" value=(summary.address);
                    input type="hidden" name="fingerprint" value=(fpr);
                    button type="submit" { "Reject this key" }
                }
            }
            form #forget method="post" action="/contact/forget" {
                (csrf(&shared))
                input type="hidden" name="address" value=(summary.address);
                button type="submit" { "Forget this contact" }
            }
        }
        h2 { "Keys seen" }
        table {
            tr { th { "Fingerprint" } th { "From" } th { "Trust" } th { "First seen" } th { "Last seen" } }
            @for k in &history {
                tr {
                    td { (fingerprint(&k.fingerprint)) }
                    td { (k.source.as_str()) }
                    td { (k.trust.as_str()) }
                    td { (render::date(k.first_seen)) }
                    td { (render::date(k.last_seen)) }
                }
            }
        }
        h2 { "History" }
        table {
            tr { th { "When" } th { "What" } }
            @for e in events.iter().rev() {
                tr { td { (render::date(e.at)) } td { (event_sentence(e)) } }
            }
        }
    };
    Ok(shared.page(session, &summary.address, Nav::Contacts, body))
}

/// A key event as a person reads it.
fn event_sentence(e: &keystore::KeyEvent) -> Markup {
    use keystore::EventKind::*;
    let old = e.old_fingerprint.as_deref().map(fingerprint);
    let new = e.new_fingerprint.as_deref().map(fingerprint);
    html! {
        @match e.kind {
            New => { "First key: " (new.unwrap_or_default()) }
            Changed => { "Key changed from " (old.unwrap_or_default()) " to " (new.unwrap_or_default()) }
            Conflict => { span.mark { "Conflict: " } "a key that differs from the verified one arrived: " (new.unwrap_or_default()) }
            Verified => { "Verified " (new.unwrap_or_default()) }
            Unverified => { "Verification withdrawn from " (old.unwrap_or_default()) }
            Rejected => { "Rejected " (old.unwrap_or_default()) }
        }
    }
}

#[derive(Deserialize)]
struct Change {
    address: String,
    fingerprint: Option<String>,
    method: Option<String>,
    confirm: Option<String>,
}

impl Change {
    fn confirmed(&self) -> bool {
        self.confirm.as_deref() == Some("yes")
    }
}

/// Asks once more before `action` is done, with a fresh form.
fn confirmation(
    shared: &Shared,
    session: SessionId,
    change: &Change,
    action: &str,
    question: Markup,
    button: &str,
) -> Response {
    let body = html! {
        p.notice { (question) }
        form #confirm method="post" action=(action) {
            (shared.csrf_field(session))
            input type="hidden" name="address" value=(change.address);
            @if let Some(f) = &change.fingerprint { input type="hidden" name="fingerprint" value=(f); }
            @if let Some(m) = &change.method { input type="hidden" name="method" value=(m); }
            input type="hidden" name="confirm" value="yes";
            button type="submit" { (button) }
            " "
            a href={ "/contact?address=" (urlencode(&change.address)) } { "Cancel" }
        }
    };
    shared.page(session, "Are you sure?", Nav::Contacts, body)
}

/// What a change did, with the way back to the contact.
fn done(shared: &Shared, session: SessionId, address: &str, title: &str, what: Markup) -> Response {
    let body = html! {
        p.notice { (what) }
        p { a href={ "/contact?address=" (urlencode(address)) } { "Back to " (address) } }
    };
    shared.page(session, title, Nav::Contacts, body)
}

async fn verify(
    State(shared): State<Shared>,
    Extension(session): Extension<SessionId>,
    Form(change): Form<Change>,
) -> Answer {
    let method = match change.method.as_deref() {
        Some("compared") => "compared",
        _ => "fingerprint",
    };
    let Some(given) = change
        .fingerprint
        .as_deref()
        .filter(|f| !f.trim().is_empty())
    else {
        return Ok(done(
            &shared,
            session,
            &change.address,
            "Nothing to compare",
            html! { "Type the fingerprint the contact gave you." },
        ));
    };
    if method == "compared" && !change.confirmed() {
        let question = html! {
            "Did you compare " (fingerprint(&keystore::normalize_fingerprint(given)))
            " with " (change.address) " and does it match?"
        };
        return Ok(confirmation(
            &shared,
            session,
            &change,
            "/contact/verify",
            question,
            "Yes, it matches: verify",
        ));
    }
    let answer = shared
        .keystore
        .verify_fingerprint(&change.address, given, method, SystemTime::now())
        .await?;
    Ok(match answer {
        FingerprintCheck::Verified(fpr) => {
            tracing::info!("web page: a contact's key was verified");
            done(
                &shared,
                session,
                &change.address,
                "Verified",
                html! {
                    span.ok { "Verified. " } "Key " (fingerprint(&fpr)) " is now the verified key of "
                    (change.address) "; mail goes to it and signatures by it show key=verified."
                },
            )
        }
        FingerprintCheck::Mismatch(given) => done(
            &shared,
            session,
            &change.address,
            "Mismatch",
            html! {
                span.mark { "MISMATCH: " } (fingerprint(&given)) " is not a key Letterlock has for "
                (change.address) ". Nothing was changed. Check the fingerprint again with the contact; \
                if it is right, someone may be between you."
            },
        ),
    })
}

async fn unverify(
    State(shared): State<Shared>,
    Extension(session): Extension<SessionId>,
    Form(change): Form<Change>,
) -> Answer {
    if !change.confirmed() {
        let question = html! {
            "Withdraw the verification of " (change.address) "'s key? The key stays, trusted on first use."
        };
        return Ok(confirmation(
            &shared,
            session,
            &change,
            "/contact/unverify",
            question,
            "Withdraw",
        ));
    }
    let withdrawn = shared
        .keystore
        .unverify(&change.address, SystemTime::now())
        .await?;
    Ok(done(
        &shared,
        session,
        &change.address,
        "Verification withdrawn",
        html! {
            @if withdrawn { "The key of " (change.address) " is trusted on first use again." }
            @else { (change.address) " had no verified key." }
        },
    ))
}

async fn reject(
    State(shared): State<Shared>,
    Extension(session): Extension<SessionId>,
    Form(change): Form<Change>,
) -> Answer {
    if !change.confirmed() {
        let question = html! {
            "Reject key " (change.fingerprint.as_deref().map(fingerprint).unwrap_or_default())
            " of " (change.address) "? It will never be used again: no mail is encrypted to it \
            and no signature by it counts."
        };
        return Ok(confirmation(
            &shared,
            session,
            &change,
            "/contact/reject",
            question,
            "Reject the key",
        ));
    }
    let fpr = shared
        .keystore
        .reject(
            &change.address,
            change.fingerprint.as_deref(),
            SystemTime::now(),
        )
        .await?;
    Ok(done(
        &shared,
        session,
        &change.address,
        "Key rejected",
        html! {
            "Key " (fingerprint(&fpr)) " of " (change.address) " is rejected; it will never be used."
        },
    ))
}

async fn forget(
    State(shared): State<Shared>,
    Extension(session): Extension<SessionId>,
    Form(change): Form<Change>,
) -> Answer {
    if !change.confirmed() {
        let question = html! {
            "Forget everything known about " (change.address) ": keys, trust and history? \
            The next mail from them starts over with trust on first use."
        };
        return Ok(confirmation(
            &shared,
            session,
            &change,
            "/contact/forget",
            question,
            "Forget",
        ));
    }
    let forgotten = shared.keystore.forget(&change.address).await?;
    let body = html! {
        p.notice {
            @if forgotten { (change.address) " is forgotten." }
            @else { "Nothing was known about " (change.address) "." }
        }
        p { a href="/contacts" { "Back to the contacts" } }
    };
    Ok(shared.page(session, "Forgotten", Nav::Contacts, body))
}

async fn alerts(State(shared): State<Shared>, Extension(session): Extension<SessionId>) -> Answer {
    let peers = shared.keystore.list().await?;
    let events = shared.keystore.recent_events(ALERTS).await?;
    let refusals = shared.keystore.refusals(ALERTS).await?;
    let body = html! {
        h2 { "Conflicts" }
        @let conflicted: Vec<_> = peers.iter().filter(|p| !p.conflicts.is_empty()).collect();
        @if conflicted.is_empty() {
            p { "None." }
        } @else {
            table {
                tr { th { "Contact" } th { "Conflicting key" } th {} }
                @for p in &conflicted {
                    @for c in &p.conflicts {
                        tr.conflict {
                            td { a href={ "/contact?address=" (urlencode(&p.address)) } { (p.address) } }
                            td { (fingerprint(c)) }
                            td { "Mail still goes to the verified key. Compare, then verify or reject." }
                        }
                    }
                }
            }
        }
        h2 { "Key changes" }
        @if events.is_empty() {
            p { "None yet." }
        } @else {
            table {
                tr { th { "When" } th { "Contact" } th { "What" } }
                @for e in &events {
                    tr class=[matches!(e.event.kind, keystore::EventKind::Conflict | keystore::EventKind::Changed).then_some("conflict")] {
                        td { (render::date(e.event.at)) }
                        td { a href={ "/contact?address=" (urlencode(&e.address)) } { (e.address) } }
                        td { (event_sentence(&e.event)) }
                    }
                }
            }
        }
        h2 { "Messages not sent" }
        @if refusals.is_empty() {
            p { "None." }
        } @else {
            table {
                tr { th { "When" } th { "From" } th { "To" } th { "Why (what the mail client was told)" } }
                @for r in &refusals {
                    tr {
                        td { (render::date(r.at)) }
                        td { (r.account) }
                        td { @for (i, to) in r.recipients.iter().enumerate() { @if i > 0 { br; } (to) } }
                        td { (r.reply) }
                    }
                }
            }
        }
    };
    Ok(shared.page(session, "Alerts", Nav::Alerts, body))
}

#[derive(Deserialize)]
struct SearchForm {
    #[serde(default)]
    q: String,
    account: Option<String>,
}

async fn search(
    State(shared): State<Shared>,
    Extension(session): Extension<SessionId>,
    Query(form): Query<SearchForm>,
) -> Answer {
    let query = form.q.trim();
    let hits = if query.is_empty() {
        Ok(Vec::new())
    } else {
        let options = SearchOptions {
            account: form.account.clone().filter(|a| !a.is_empty()),
            mailbox: None,
            limit: Some(HITS),
            order: Order::Relevance,
        };
        match shared.archive.search(query, &options).await {
            Ok(hits) => Ok(hits),
            Err(archive::ArchiveError::Query(e)) => Err(e.to_string()),
            Err(e) => return Err(e.into()),
        }
    };
    let body = html! {
        form #search method="get" action="/search" {
            input type="search" name="q" value=(query) size="50" autofocus;
            " "
            button type="submit" { "Search" }
        }
        p { "Words, \"phrases\", prefix*, AND / OR / NOT, from: to: subject: has:attachment before: after: — as `gateway search`." }
        @match &hits {
            Err(why) => p.notice { span.mark { "The query could not be read: " } (why) }
            Ok(hits) if hits.is_empty() && !query.is_empty() => p { "No messages match." }
            Ok(hits) => {
                @for h in hits {
                    div {
                        h3 {
                            a href=(message_link(&h.location)) {
                                @if h.subject.is_empty() { "(no subject)" } @else { (h.subject) }
                            }
                        }
                        p { (h.from) " · " (render::unix_date(h.date)) " · " (h.location.account) " / " (h.location.mailbox) }
                        p.snippet { (h.snippet) }
                    }
                }
            }
        }
    };
    Ok(shared.page(session, "Search", Nav::Search, body))
}

fn message_link(location: &Location) -> String {
    format!(
        "/message?account={}&mailbox={}&uidvalidity={}&uid={}",
        urlencode(&location.account),
        urlencode(&location.mailbox),
        location.uidvalidity,
        location.uid
    )
}

async fn message(
    State(shared): State<Shared>,
    Extension(session): Extension<SessionId>,
    Query(location): Query<LocationForm>,
) -> Answer {
    let location = Location {
        account: location.account,
        mailbox: location.mailbox,
        uidvalidity: location.uidvalidity,
        uid: location.uid,
    };
    let Some(bytes) = shared.archive.message_at(&location).await? else {
        return Err(Failure(
            StatusCode::NOT_FOUND,
            "That message is not in the archive (any more).".into(),
        ));
    };
    let shown = letterlock_mime::parse(&bytes).map(|m| {
        let header = |name: &str| {
            m.header_raw(name)
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let fields: Vec<(&str, String)> =
            ["Letterlock-Security", "Date", "From", "To", "Cc", "Subject"]
                .into_iter()
                .map(|name| (name, header(name)))
                .filter(|(_, v)| !v.is_empty())
                .collect();
        let text = render::cut(
            m.body_text(0).map(|t| t.into_owned()).unwrap_or_default(),
            LONGEST_TEXT,
            "\n[… the rest is not shown]",
        );
        let subject = m.subject().unwrap_or("(no subject)").to_string();
        (subject, fields, text)
    });
    let Some((subject, fields, text)) = shown else {
        return Err(Failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            "That message could not be read as mail.".into(),
        ));
    };
    let body = html! {
        table {
            @for (name, value) in &fields {
                tr { td { (name) } td { (value) } }
            }
        }
        pre { (text) }
        p { "The text only, as the archive holds it after decryption; attachments are not shown here." }
    };
    Ok(shared.page(session, &subject, Nav::Search, body))
}

#[derive(Deserialize)]
struct LocationForm {
    account: String,
    mailbox: String,
    uidvalidity: u32,
    uid: u32,
}

/// Percent-encodes a query value (addresses and mailbox names).
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::urlencode;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(urlencode("bob+x@example.org"), "bob%2Bx%40example.org");
        assert_eq!(urlencode("Sent Items/ä"), "Sent%20Items%2F%C3%A4");
    }
}
