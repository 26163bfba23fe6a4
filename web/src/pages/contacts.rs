//! Every contact, and one contact: fingerprints to compare, the changes
//! on offer, every key seen and what happened to them.

use axum::extract::{Query, State};
use axum::Extension;
use keystore::TrustLevel;
use maud::{html, Markup};
use serde::Deserialize;

use super::{contact_link, Answer};
use crate::access::SessionId;
use crate::render::{self, fingerprint, qr_code, Nav};
use crate::Shared;

pub(super) async fn contacts(
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
                        td { a href=(contact_link(&p.address)) { (p.address) } }
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
pub(super) struct Address {
    address: String,
}

pub(super) async fn contact(
    State(shared): State<Shared>,
    Extension(session): Extension<SessionId>,
    Query(Address { address }): Query<Address>,
) -> Answer {
    let summary = shared.keystore.summary(&address).await?;
    let history = shared.keystore.history(&address).await?;
    let events = shared.keystore.events(&address).await?;
    let candidate = summary.verification_candidate().map(str::to_string);
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
pub(super) fn event_sentence(e: &keystore::KeyEvent) -> Markup {
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
