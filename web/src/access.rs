//! Who may see and change what: every request passes [`guard`].
//!
//! - **Host**: only loopback names (`127.0.0.1`, `localhost`, `[::1]`,
//!   with any port, so an SSH tunnel to another local port works). A web
//!   site whose name an attacker re-points at 127.0.0.1 (DNS rebinding)
//!   sends its own name and is refused before anything else happens.
//! - **Session**: a random 256-bit cookie set by redeeming a one-time link
//!   (`gateway web-link`), `HttpOnly` (no script reads it) and
//!   `SameSite=Strict` (no other site's page sends it). Sessions live in
//!   the running gateway's memory only: 30 minutes idle, 12 hours at most,
//!   gone at restart. Only the cookie's SHA-256 is kept.
//! - **Changes** (every method but GET and HEAD): the `Origin` header must
//!   be this page, and the form must carry a CSRF token the page handed out
//!   for this session and that was not used before; each is good once.
//! - **Every response**: a Content-Security-Policy allowing only this
//!   page's stylesheet and forms (no script at all), no framing, no
//!   caching, no referrer to anywhere else.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::render;
use crate::Shared;

/// The session cookie's name.
pub const COOKIE: &str = "letterlock_session";
/// A session unused this long ends.
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// No session lasts longer.
pub const SESSION_LONGEST: Duration = Duration::from_secs(12 * 60 * 60);
/// Sessions at once; the least recently used ends when another starts.
const MAX_SESSIONS: usize = 16;
/// Unused CSRF tokens a session keeps (one per form shown); older ones expire.
const CSRF_KEPT: usize = 256;
/// The largest form the page takes.
const FORM_LIMIT: usize = 16 * 1024;

/// Paths served without a session.
const PUBLIC: [&str; 2] = ["/login", "/style.css"];

/// The SHA-256 of a session cookie: how a request's session is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 32]);

struct Session {
    started: Instant,
    last_seen: Instant,
    /// SHA-256 of each CSRF token handed out and not yet used.
    csrf: VecDeque<[u8; 32]>,
}

/// The page's sessions.
#[derive(Default)]
pub struct Access {
    sessions: Mutex<HashMap<SessionId, Session>>,
}

fn random_token() -> String {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    hex::encode(raw)
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Access {
    pub fn new() -> Self {
        Self::default()
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Session>> {
        // A panic while holding the lock leaves the map consistent (every
        // change is a single insert or remove), so the poison is ignored.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a request's Host header is a loopback name, with or
    /// without a port.
    pub fn host_allowed(&self, host: Option<&str>) -> bool {
        let Some(host) = host else {
            return false;
        };
        let name = match host.rsplit_once(':') {
            // `[::1]` alone has colons inside the brackets.
            Some((name, port)) if !port.contains(']') => {
                if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                    return false;
                }
                name
            }
            _ => host,
        };
        // A rebinding attack names the attacker's domain, whatever address
        // it resolves to; the port says nothing about who is asking (a
        // tunnel may move it).
        let loopback = match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
            Some(v6) => v6
                .parse::<std::net::Ipv6Addr>()
                .is_ok_and(|ip| ip.is_loopback()),
            None => name
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback()),
        };
        loopback || name.eq_ignore_ascii_case("localhost")
    }
    /// Starts a session; returns the cookie's value.
    pub fn start_session(&self, now: Instant) -> String {
        let cookie = random_token();
        let mut sessions = self.sessions();
        sessions.retain(|_, s| alive(s, now));
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(id, _)| *id)
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            SessionId(digest(&cookie)),
            Session {
                started: now,
                last_seen: now,
                csrf: VecDeque::new(),
            },
        );
        cookie
    }

    /// The live session a request's cookies name, if any (and it counts as use).
    pub fn session(&self, headers: &HeaderMap, now: Instant) -> Option<SessionId> {
        let cookie = cookie_value(headers, COOKIE)?;
        let id = SessionId(digest(cookie));
        let mut sessions = self.sessions();
        let session = sessions.get_mut(&id)?;
        if !alive(session, now) {
            sessions.remove(&id);
            return None;
        }
        session.last_seen = now;
        Some(id)
    }

    /// Ends a session (logging out).
    pub fn end_session(&self, id: SessionId) {
        self.sessions().remove(&id);
    }

    /// A new CSRF token for one form of this session.
    pub fn csrf_token(&self, id: SessionId) -> String {
        let token = random_token();
        if let Some(session) = self.sessions().get_mut(&id) {
            if session.csrf.len() >= CSRF_KEPT {
                session.csrf.pop_front();
            }
            session.csrf.push_back(digest(&token));
        }
        token
    }

    /// Whether `token` is an unused CSRF token of this session; it is used up.
    pub fn take_csrf(&self, id: SessionId, token: &str) -> bool {
        let wanted = digest(token);
        let mut sessions = self.sessions();
        let Some(session) = sessions.get_mut(&id) else {
            return false;
        };
        match session.csrf.iter().position(|t| *t == wanted) {
            Some(i) => {
                session.csrf.remove(i);
                true
            }
            None => false,
        }
    }
}

fn alive(session: &Session, now: Instant) -> bool {
    now.duration_since(session.last_seen) < SESSION_IDLE
        && now.duration_since(session.started) < SESSION_LONGEST
}

/// The value of cookie `name` in a request's Cookie headers.
fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The `Set-Cookie` value that starts a session.
pub fn session_cookie(value: &str) -> String {
    format!(
        "{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_LONGEST.as_secs()
    )
}

/// The `Set-Cookie` value that removes it.
pub fn cleared_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// The value of field `name` in a URL-encoded form body. CSRF tokens are
/// hex, so they need no decoding.
fn form_field<'b>(body: &'b [u8], name: &str) -> Option<&'b [u8]> {
    body.split(|b| *b == b'&')
        .filter_map(|pair| {
            let i = pair.iter().position(|b| *b == b'=')?;
            Some((&pair[..i], &pair[i + 1..]))
        })
        .find(|(k, _)| *k == name.as_bytes())
        .map(|(_, v)| v)
}

fn refuse(status: StatusCode, title: &str, sentence: &str) -> Response {
    (status, render::notice(title, sentence)).into_response()
}

/// The checks every request passes, then the security headers on every response.
pub(crate) async fn guard(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    let mut response = check(&shared, request, next).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Not `no-referrer`: with it browsers send `Origin: null` on forms,
        // and the Origin check below needs the real one.
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    response
}

async fn check(shared: &Shared, request: Request, next: Next) -> Response {
    let access = &shared.access;
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    if !access.host_allowed(host.as_deref()) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "Wrong address",
            "This page answers only at the address `gateway web-link` prints \
             (127.0.0.1 or localhost); the request named another host.",
        );
    }
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD);
    if changes {
        let expected = host.as_deref().map(|h| format!("http://{h}"));
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok());
        let same = matches!((origin, &expected), (Some(o), Some(e)) if o.eq_ignore_ascii_case(e));
        if !same {
            return refuse(
                StatusCode::FORBIDDEN,
                "Refused",
                "A change may only come from this page itself; the request came from elsewhere.",
            );
        }
    }
    let session = access.session(request.headers(), Instant::now());
    let public = PUBLIC.contains(&request.uri().path());
    let Some(session) = session else {
        if public {
            return next.run(request).await;
        }
        return refuse(
            StatusCode::UNAUTHORIZED,
            "Log in first",
            "Run `gateway web-link` on this computer and open the link it prints; \
             each link works once, for a few minutes.",
        );
    };
    let mut request = request;
    if changes {
        let (parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, FORM_LIMIT).await else {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too large",
                "The form was larger than this page ever sends.",
            );
        };
        let token = form_field(&bytes, "csrf").and_then(|t| std::str::from_utf8(t).ok());
        if !token.is_some_and(|t| access.take_csrf(session, t)) {
            return refuse(
                StatusCode::FORBIDDEN,
                "Form out of date",
                "This form was already sent, or is from an older page or session; \
                 nothing was changed. Go back, reload the page and try again.",
            );
        }
        request = Request::from_parts(parts, Body::from(bytes));
    }
    request.extensions_mut().insert(session);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {COOKIE}={value}")).unwrap(),
        );
        h
    }

    #[test]
    fn only_loopback_names_are_hosts() {
        let access = Access::new();
        for good in [
            "127.0.0.1:1180",
            "LOCALHOST:1180",
            "localhost:8080",
            "127.0.0.1",
            "[::1]:1180",
            "[::1]",
            "127.0.0.2:1180",
        ] {
            assert!(access.host_allowed(Some(good)), "{good}");
        }
        for bad in [
            None,
            Some("evil.example:1180"),
            Some("evil.example"),
            Some("localhost.evil.example:1180"),
            Some("127.0.0.1.nip.io:1180"),
            Some("10.0.0.1:1180"),
            Some("::1:1180"),
            Some("127.0.0.1:"),
            Some("127.0.0.1:80x"),
            Some("[::2]:1180"),
            Some(""),
        ] {
            assert!(!access.host_allowed(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_csrf_token_is_good_once_and_only_in_its_session() {
        let access = Access::new();
        let now = Instant::now();
        let a = access
            .session(&with_cookie(&access.start_session(now)), now)
            .unwrap();
        let b = access
            .session(&with_cookie(&access.start_session(now)), now)
            .unwrap();
        let token = access.csrf_token(a);
        assert!(!access.take_csrf(b, &token), "another session's token");
        assert!(access.take_csrf(a, &token));
        assert!(!access.take_csrf(a, &token), "replayed");
        assert!(!access.take_csrf(a, "00"), "made up");
    }

    #[test]
    fn sessions_end_when_idle_too_long_or_after_the_longest_time() {
        let access = Access::new();
        let start = Instant::now();
        let cookie = access.start_session(start);
        let headers = with_cookie(&cookie);
        let mut now = start;
        while now.duration_since(start) + SESSION_IDLE / 2 < SESSION_LONGEST {
            now += SESSION_IDLE / 2;
            assert!(access.session(&headers, now).is_some());
        }
        assert!(access.session(&headers, start + SESSION_LONGEST).is_none());
        let idle = access.start_session(start);
        assert!(access
            .session(&with_cookie(&idle), start + SESSION_IDLE)
            .is_none());
        assert!(access.session(&with_cookie("forged"), start).is_none());
    }

    #[test]
    fn the_csrf_field_is_read_from_the_form() {
        assert_eq!(
            form_field(b"fingerprint=AB+CD&csrf=00ff&confirm=yes", "csrf"),
            Some(&b"00ff"[..])
        );
        assert_eq!(form_field(b"xcsrf=1", "csrf"), None);
    }
}
