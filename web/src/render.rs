//! The page frame and what several pages show the same way: fingerprints
//! in groups of four, QR codes, dates.

use std::fmt::Write as _;
use std::time::SystemTime;

use axum::response::Html;
use maud::{html, Markup, PreEscaped, DOCTYPE};

/// The only stylesheet (`/style.css`); the CSP allows nothing else.
pub const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}\
nav{background:#1d3557;padding:.6em 1em}nav a{color:#fff;margin-right:1.2em;text-decoration:none}\
nav a.here{font-weight:bold;text-decoration:underline}nav form{display:inline;float:right}\
main{max-width:60em;margin:1em auto;padding:0 1em}\
table{border-collapse:collapse;width:100%;margin:.5em 0 1.5em}\
th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #ddd;vertical-align:top}\
.fpr{font-family:ui-monospace,monospace;letter-spacing:.05em;white-space:nowrap}\
.fpr span{margin-right:.6em}.fprblock span{display:inline-block;margin-right:.8em}\
.conflict{background:#fde2e1}.mark{color:#b00020;font-weight:bold}.ok{color:#1b7a32;font-weight:bold}\
.side{display:flex;flex-wrap:wrap;gap:2em}.side>div{flex:1 1 20em;border:1px solid #ddd;padding:1em;background:#fff}\
svg.qr{width:12em;height:12em}.fprblock .fpr{white-space:normal;font-size:1.15em;line-height:1.6}\
.actions form{margin:.6em 0;padding:.6em;border:1px solid #ddd;background:#fff}\
button{padding:.3em 1em}pre{white-space:pre-wrap;background:#fff;border:1px solid #ddd;padding:1em}\
.snippet{color:#444}.notice{border-left:4px solid #1d3557;padding:.5em 1em;background:#fff}";

/// Which navigation link is the current page.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Status,
    Contacts,
    Alerts,
    Search,
    None,
}

/// A whole page: navigation (with a log-out form carrying `logout_csrf`)
/// and `body`.
pub fn page(title: &str, here: Nav, logout_csrf: Option<&str>, body: Markup) -> Html<String> {
    let link = |nav: Nav, href: &str, text: &str| {
        html! { a href=(href) class=[(nav == here).then_some("here")] { (text) } }
    };
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " — Letterlock" }
                    link rel="stylesheet" href="/style.css";
                }
                body {
                    nav {
                        (link(Nav::Status, "/", "Status"))
                        (link(Nav::Contacts, "/contacts", "Contacts"))
                        (link(Nav::Alerts, "/alerts", "Alerts"))
                        (link(Nav::Search, "/search", "Search"))
                        @if let Some(csrf) = logout_csrf {
                            form method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                    main {
                        h1 { (title) }
                        (body)
                    }
                }
            }
        }
        .into_string(),
    )
}

/// A page that only says one thing (refusals, results).
pub fn notice(title: &str, sentence: &str) -> Html<String> {
    page(
        title,
        Nav::None,
        None,
        html! { p.notice { (sentence) } p { a href="/" { "Back to the status page" } } },
    )
}

/// A fingerprint in groups of four, as people read it out.
pub fn fingerprint(fpr: &str) -> Markup {
    html! {
        span.fpr {
            @for group in fpr.as_bytes().chunks(4) {
                span { (String::from_utf8_lossy(group)) }
            }
        }
    }
}

/// A QR code of `text` as inline SVG (one path; the CSP allows no images
/// from elsewhere and inline SVG needs none).
pub fn qr_code(text: &str) -> Markup {
    let Ok(code) = qrcode::QrCode::new(text.as_bytes()) else {
        return html! { p { "(too long for a QR code)" } };
    };
    let width = code.width();
    let quiet = 4;
    let size = width + 2 * quiet;
    let mut path = String::new();
    for (i, color) in code.to_colors().iter().enumerate() {
        if *color == qrcode::Color::Dark {
            let (x, y) = (i % width + quiet, i / width + quiet);
            let _ = write!(path, "M{x} {y}h1v1h-1z");
        }
    }
    PreEscaped(format!(
        "<svg class=\"qr\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" \
         role=\"img\" aria-label=\"QR code\"><rect width=\"{size}\" height=\"{size}\" fill=\"#fff\"/>\
         <path d=\"{path}\" fill=\"#000\"/></svg>"
    ))
}

/// `text` cut to at most `longest` bytes (at a character boundary), with
/// `marker` after a cut.
pub fn cut(mut text: String, longest: usize, marker: &str) -> String {
    if text.len() > longest {
        let mut end = longest;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(marker);
    }
    text
}

/// A time as an HTTP date (UTC), the form the command line prints too.
pub fn date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

/// Unix seconds (as the archive keeps dates) as a date.
pub fn unix_date(secs: Option<i64>) -> String {
    secs.and_then(|s| u64::try_from(s).ok())
        .map(|s| date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s)))
        .unwrap_or_else(|| "(no date)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_mail_is_escaped() {
        let Html(out) = notice("<script>", "a & <b onclick=x>");
        assert!(!out.contains("<script>"));
        assert!(out.contains("&lt;script&gt;"));
        assert!(out.contains("a &amp; &lt;b onclick=x&gt;"));
    }

    #[test]
    fn fingerprints_are_shown_in_groups_of_four() {
        let out = fingerprint("0123456789ABCDEF01").into_string();
        assert!(out.contains("<span>0123</span><span>4567</span>"));
        assert!(out.ends_with("<span>01</span></span>"));
    }

    #[test]
    fn a_qr_code_is_one_svg_path() {
        let svg = qr_code("OPENPGP4FPR:0123456789ABCDEF0123456789ABCDEF01234567").into_string();
        assert!(svg.starts_with("<svg class=\"qr\""));
        assert_eq!(svg.matches("<path").count(), 1);
    }
}
