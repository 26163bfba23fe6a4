//! The status page: accounts, listeners, contacts and archive, last errors.

use axum::extract::State;
use axum::Extension;
use maud::html;

use super::Answer;
use crate::access::SessionId;
use crate::render::{self, fingerprint, Nav};
use crate::Shared;

pub(super) async fn status(
    State(shared): State<Shared>,
    Extension(session): Extension<SessionId>,
) -> Answer {
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
