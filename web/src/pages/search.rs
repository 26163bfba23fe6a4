//! Search over the archive, and one archived message as text.

use archive::{Location, Order, SearchOptions};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Extension;
use maud::html;
use serde::Deserialize;

use super::{urlencode, Answer, Failure};
use crate::access::SessionId;
use crate::render::{self, Nav};
use crate::Shared;

/// Search results on one page.
const HITS: u32 = 50;
/// The most of one message's text the page shows.
const LONGEST_TEXT: usize = 1 << 20;

#[derive(Deserialize)]
pub(super) struct SearchForm {
    #[serde(default)]
    q: String,
    account: Option<String>,
}

pub(super) async fn search(
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

pub(super) async fn message(
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
pub(super) struct LocationForm {
    account: String,
    mailbox: String,
    uidvalidity: u32,
    uid: u32,
}
