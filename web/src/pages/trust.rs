//! The changes a person makes to a contact's keys, each through the
//! keystore function `keytool` calls, the irreversible ones confirmed first.

use std::time::SystemTime;

use axum::extract::State;
use axum::response::Response;
use axum::{Extension, Form};
use keystore::FingerprintCheck;
use maud::{html, Markup};
use serde::Deserialize;

use super::{contact_link, Answer};
use crate::access::SessionId;
use crate::render::{fingerprint, Nav};
use crate::Shared;

#[derive(Deserialize)]
pub(super) struct Change {
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
            a href=(contact_link(&change.address)) { "Cancel" }
        }
    };
    shared.page(session, "Are you sure?", Nav::Contacts, body)
}

/// What a change did, with the way back to the contact.
fn done(shared: &Shared, session: SessionId, address: &str, title: &str, what: Markup) -> Response {
    let body = html! {
        p.notice { (what) }
        p { a href=(contact_link(address)) { "Back to " (address) } }
    };
    shared.page(session, title, Nav::Contacts, body)
}

pub(super) async fn verify(
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

pub(super) async fn unverify(
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

pub(super) async fn reject(
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

pub(super) async fn forget(
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
