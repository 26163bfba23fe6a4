//! Logging in with a one-time link, and out.

use std::time::{Instant, SystemTime};

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use secrecy::SecretString;
use serde::Deserialize;

use super::Answer;
use crate::access::{self, SessionId};
use crate::render;
use crate::Shared;

#[derive(Deserialize)]
pub(super) struct LoginLink {
    token: String,
}

pub(super) async fn login(State(shared): State<Shared>, Query(link): Query<LoginLink>) -> Answer {
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

pub(super) async fn logout(
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
