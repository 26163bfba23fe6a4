//! The pages and the changes they offer, one module per page: `status`,
//! `contacts` (the list and one contact), `trust` (the changes a person
//! makes to a contact's keys), `alerts`, `search` (and one message),
//! `login`. Every change is a keystore function `keytool` calls too; a
//! change that cannot be undone (verify by "they match", unverify, reject,
//! forget) is asked again on a page of its own before it is made.

mod alerts;
mod contacts;
mod login;
mod search;
mod status;
mod trust;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use keystore::KeystoreError;
use maud::{html, Markup};

use crate::access::{self, SessionId};
use crate::render::{self, page, Nav};
use crate::Shared;
// Query values (addresses, mailbox names) in the pages' links.
use keystore::wkd::encode_uri_component as urlencode;

pub(crate) fn router(shared: Shared) -> Router {
    Router::new()
        .route("/", get(status::status))
        .route("/contacts", get(contacts::contacts))
        .route("/contact", get(contacts::contact))
        .route("/contact/verify", post(trust::verify))
        .route("/contact/unverify", post(trust::unverify))
        .route("/contact/reject", post(trust::reject))
        .route("/contact/forget", post(trust::forget))
        .route("/alerts", get(alerts::alerts))
        .route("/search", get(search::search))
        .route("/message", get(search::message))
        .route("/login", get(login::login))
        .route("/logout", post(login::logout))
        .route("/style.css", get(style))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            access::guard,
        ))
        .with_state(shared)
}

/// A failure while answering: said in a sentence, never a panic.
pub(super) struct Failure(StatusCode, String);

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

pub(super) type Answer = Result<Response, Failure>;

impl Shared {
    pub(super) fn csrf(&self, session: SessionId) -> String {
        self.access.csrf_token(session)
    }

    pub(super) fn page(
        &self,
        session: SessionId,
        title: &str,
        here: Nav,
        body: Markup,
    ) -> Response {
        page(title, here, Some(&self.csrf(session)), body).into_response()
    }

    /// A hidden CSRF field for one form.
    pub(super) fn csrf_field(&self, session: SessionId) -> Markup {
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

/// The link to one contact's page.
fn contact_link(address: &str) -> String {
    format!("/contact?address={}", urlencode(address))
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
