//! Alerts: conflicts, key changes, and messages the gateway did not send.

use axum::extract::State;
use axum::Extension;
use maud::html;

use super::contacts::event_sentence;
use super::{contact_link, Answer};
use crate::access::SessionId;
use crate::render::{self, fingerprint, Nav};
use crate::Shared;

/// Events and refusals the alerts page lists.
const ALERTS: u32 = 100;

pub(super) async fn alerts(
    State(shared): State<Shared>,
    Extension(session): Extension<SessionId>,
) -> Answer {
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
                            td { a href=(contact_link(&p.address)) { (p.address) } }
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
                        td { a href=(contact_link(&e.address)) { (e.address) } }
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
