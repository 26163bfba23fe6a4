//! The local web page (issue 23) in a real browser and at the HTTP level,
//! against a running gateway with real data (Alice and Bob's encrypted
//! conversation at the test provider).
//!
//! In headless Chromium (Debian's `chromium` and `chromium-driver`, over
//! WebDriver): a requested page without a session is refused; the link
//! `gateway web-link` prints logs in; Alice verifies Bob's key by typing
//! its fingerprint; a forged key for Bob arrives and shows as a conflict on
//! the status, contacts, alerts and contact pages; she rejects it after a
//! confirmation; a reply the SMTP proxy refused is listed with the sentence
//! her mail client got; search finds a word that exists only inside Bob's
//! encrypted mail and opens the message as text. A screenshot of each page
//! goes to `target/web-page-screenshots/` for review.
//!
//! At the HTTP level, each access rule on its own: no cookie, a forged
//! cookie, a login link used twice, another Host name (DNS rebinding), a
//! change from another origin or with no origin, a CSRF token replayed or
//! from another session, and the headers every response carries.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use e2e::{read, send, workspace_root, Conversation, Gateway};
use serde_json::{json, Value};

const ALICE: (&str, &str) = Conversation::ALICE;
const BOB: (&str, &str) = Conversation::BOB;

/// One HTTP/1.1 exchange on a fresh connection: status, headers, body.
struct HttpAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl HttpAnswer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `head` (request line and headers, without the blank line) and
/// `body`; reads the answer by its Content-Length.
fn http(port: u16, head: &str, body: &[u8]) -> HttpAnswer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let request = format!(
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("request");
    stream.write_all(body).expect("body");
    let mut received = Vec::new();
    let mut buf = [0u8; 65536];
    let (head_end, length) = loop {
        let n = stream.read(&mut buf).expect("answer");
        assert!(n > 0, "the connection closed before the answer's head");
        received.extend_from_slice(&buf[..n]);
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse::<usize>().expect("length"));
            break (end + 4, length);
        }
    };
    match length {
        Some(length) => {
            while received.len() < head_end + length {
                let n = stream.read(&mut buf).expect("body");
                assert!(n > 0, "the connection closed inside the body");
                received.extend_from_slice(&buf[..n]);
            }
        }
        None => {
            stream.read_to_end(&mut received).expect("body");
        }
    }
    let head = String::from_utf8_lossy(&received[..head_end - 4]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    HttpAnswer {
        status,
        headers,
        body: String::from_utf8_lossy(&received[head_end..]).into_owned(),
    }
}

/// Chromium under chromedriver, ended however the test ends.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
    screenshots: PathBuf,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.call("DELETE", "", None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    fn start() -> Self {
        let port = testbed::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; scripts/setup installs it)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().expect("profile");
        let screenshots = workspace_root().join("target/web-page-screenshots");
        std::fs::create_dir_all(&screenshots).expect("screenshot directory");
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            screenshots,
            _profile: profile,
        };
        let args = json!([
            "--headless=new",
            // Tests run as root, where Chromium's sandbox cannot start.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1200,1600",
            format!("--user-data-dir={}", browser._profile.path().display()),
        ]);
        let created = browser.call(
            "POST",
            "__new",
            Some(json!({ "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args }
            }}})),
        );
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
            .to_string();
        browser
    }

    /// One WebDriver command; its `value`.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let target = match path {
            "__new" => "/session".to_string(),
            "" => format!("/session/{}", self.session),
            p => format!("/session/{}/{p}", self.session),
        };
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let answer = http(
            self.port,
            &format!(
                "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\
                 Content-Type: application/json",
                self.port
            ),
            body.as_bytes(),
        );
        let doc: Value = serde_json::from_str(&answer.body)
            .unwrap_or_else(|_| panic!("WebDriver said: {}", answer.body));
        assert!(
            answer.status == 200,
            "WebDriver {method} {target}: {}",
            answer.body
        );
        doc.get("value").cloned().unwrap_or(Value::Null)
    }

    fn open(&self, url: &str) {
        self.call("POST", "url", Some(json!({ "url": url })));
    }

    fn source(&self) -> String {
        self.call("GET", "source", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn url(&self) -> String {
        self.call("GET", "url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn element(&self, css: &str) -> String {
        let found = self.call(
            "POST",
            "element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    fn click(&self, css: &str) {
        let id = self.element(css);
        self.call("POST", &format!("element/{id}/click"), Some(json!({})));
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.call(
            "POST",
            &format!("element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// The page source once it contains `text` (a click's navigation may
    /// still be under way when WebDriver answers); fails after 20 s with
    /// what the browser shows.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let source = self.source();
            if source.contains(text) {
                return source;
            }
            assert!(
                Instant::now() < deadline,
                "the page at {} never showed {text:?}:\n{}",
                self.url(),
                visible_text(&source)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Saves a screenshot of what the browser shows as `name`.png.
    fn screenshot(&self, name: &str) {
        let png = self.call("GET", "screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64"))
            .expect("PNG");
        let path = self.screenshots.join(format!("{name}.png"));
        std::fs::write(&path, bytes).expect("screenshot");
        println!("screenshot: {}", path.display());
    }
}

/// A page's source without its QR codes' long paths, for failure messages.
fn visible_text(source: &str) -> String {
    source
        .split("<svg")
        .map(|part| part.split_once("</svg>").map_or(part, |(_, rest)| rest))
        .collect::<Vec<_>>()
        .join("[QR]")
}

/// `gateway web-link`'s URL.
fn login_link(gateway: &Gateway) -> String {
    let out = gateway.ok(&["web-link"]);
    let link = out.trim().to_string();
    assert!(
        link.starts_with(&format!(
            "http://127.0.0.1:{}/login?token=",
            gateway.web_port
        )),
        "{out}"
    );
    link
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A message "from Bob" with a key that is not his.
fn forged_bob_message(alice: &Gateway) -> String {
    let inner = format!(
        "From: {}\r\nTo: {}\r\nSubject: urgent\r\nMessage-ID: <forged@example.org>\r\n\r\n\
         Please send the archive password.\r\n",
        BOB.0, ALICE.0
    );
    e2e::sealed_with_forged_key(alice, ALICE.0, BOB.0, &inner)
}

fn bob_fingerprint(alice: &Gateway) -> String {
    let list = alice.json(&["keytool", "list"]);
    list["peers"]
        .as_array()
        .and_then(|peers| peers.iter().find(|p| p["address"] == BOB.0))
        .and_then(|p| p["fingerprint"].as_str())
        .unwrap_or_else(|| panic!("Alice knows Bob's key: {list}"))
        .to_string()
}

/// The fingerprint as the page shows it: groups of four.
fn grouped(fpr: &str) -> String {
    fpr.as_bytes()
        .chunks(4)
        .map(|c| format!("<span>{}</span>", String::from_utf8_lossy(c)))
        .collect()
}

#[test]
fn a_person_verifies_sees_a_conflict_rejects_it_and_searches_in_a_browser() {
    let conversation = Conversation::start();
    let (alice, provider) = (&conversation.alice, &conversation.provider);
    wait_for_port(alice.web_port);
    let base = format!("http://127.0.0.1:{}", alice.web_port);
    // Alice reads Bob's encrypted mail: his key (trust on first use) and
    // the decrypted message in the archive.
    let inbox = read(alice, ALICE, "INBOX");
    assert!(inbox.iter().any(|m| m.contains(Conversation::PLAINTEXT)));
    let bob_fpr = bob_fingerprint(alice);

    let browser = Browser::start();
    browser.open(&format!("{base}/contacts"));
    browser.wait_for("Log in first");
    browser.screenshot("00-not-logged-in");

    // Logging in: the link, then the status page.
    browser.open(&login_link(alice));
    assert_eq!(browser.url(), format!("{base}/"));
    let status = browser.wait_for("Last errors");
    assert!(status.contains(ALICE.0), "{}", visible_text(&status));
    browser.screenshot("01-status");

    // Bob's page: both fingerprints and QR codes; verifying by typing his.
    browser.open(&format!("{base}/contacts"));
    assert!(browser.source().contains(BOB.0));
    browser.screenshot("02-contacts");
    browser.click(&format!(
        "a[href='/contact?address={}']",
        BOB.0.replace('@', "%40")
    ));
    let page = browser.wait_for("Compare fingerprints");
    assert!(page.contains(&grouped(&bob_fpr)), "{}", visible_text(&page));
    assert_eq!(page.matches("<svg class=\"qr\"").count(), 2);
    browser.screenshot("03-contact-tofu");
    // As a person reads it out: lower case, spaces between the groups.
    let spoken = bob_fpr
        .to_lowercase()
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    browser.type_into("#verify-typed input[name=fingerprint]", &spoken);
    browser.click("#verify-typed button");
    browser.wait_for("Verified.");
    browser.screenshot("04-verified");
    let shown = alice.json(&["keytool", "show", BOB.0]);
    assert_eq!(shown["peer"]["trust"], "verified", "{shown}");

    // A wrong fingerprint is a mismatch and changes nothing.
    browser.open(&format!("{base}/contact?address={}", BOB.0));
    browser.type_into(
        "#verify-typed input[name=fingerprint]",
        "0000 1111 2222 3333 4444 5555 6666 7777 8888 9999",
    );
    browser.click("#verify-typed button");
    browser.wait_for("MISMATCH");

    // A forged key for Bob arrives: a conflict everywhere it should show.
    provider
        .dovecot
        .save(ALICE.0, "INBOX", forged_bob_message(alice).as_bytes());
    read(alice, ALICE, "INBOX");
    browser.open(&format!("{base}/"));
    assert!(browser
        .source()
        .contains("1 contact(s) with a conflicting key"));
    browser.open(&format!("{base}/contacts"));
    assert!(browser.source().contains("CONFLICT"));
    browser.open(&format!("{base}/alerts"));
    let alerts = browser.source();
    assert!(alerts.contains(BOB.0), "{}", visible_text(&alerts));
    let conflicts = alice.json(&["keytool", "show", BOB.0]);
    let forged_fpr = conflicts["peer"]["conflicts"][0]
        .as_str()
        .unwrap_or_else(|| panic!("a conflict: {conflicts}"))
        .to_string();
    assert!(
        alerts.contains(&grouped(&forged_fpr)),
        "{}",
        visible_text(&alerts)
    );
    browser.screenshot("05-alerts-conflict");
    browser.open(&format!("{base}/contact?address={}", BOB.0));
    browser.wait_for("CONFLICT: ");
    browser.screenshot("06-contact-conflict");

    // Rejecting the forged key: asked once more, then done.
    browser.click("#reject button");
    let asked = browser.wait_for("Are you sure?");
    assert!(
        asked.contains(&grouped(&forged_fpr)),
        "{}",
        visible_text(&asked)
    );
    browser.screenshot("07-reject-confirmation");
    browser.click("#confirm button");
    browser.wait_for("is rejected");
    let history = alice.json(&["keytool", "history", BOB.0]);
    let keys = history["keys"].as_array().expect("keys");
    assert!(
        keys.iter()
            .any(|k| k["fingerprint"] == forged_fpr.as_str() && k["trust"] == "rejected"),
        "{history}"
    );
    let shown = alice.json(&["keytool", "show", BOB.0]);
    assert_eq!(shown["peer"]["fingerprint"], bob_fpr.as_str(), "{shown}");
    assert_eq!(shown["peer"]["trust"], "verified", "{shown}");

    // A reply that would leak the encrypted conversation is refused; the
    // alerts page says so with the sentence the mail client got.
    let reply = format!(
        "From: {}\nTo: {}\nCc: carol@example.org\nSubject: Re: {}\n\
         In-Reply-To: <plans@example.org>\nMessage-ID: <reply@example.org>\n\nSee you.\n",
        ALICE.0,
        BOB.0,
        Conversation::SUBJECT
    );
    let refused = send(alice, ALICE, &reply, &[BOB.0, "carol@example.org"]);
    assert!(refused.starts_with("REFUSED"), "{refused}");
    browser.open(&format!("{base}/alerts"));
    let alerts = browser.source();
    assert!(
        alerts.contains("Messages not sent") && alerts.contains("carol@example.org"),
        "{alerts}"
    );
    assert!(
        alerts.contains("answers or forwards an encrypted message"),
        "{alerts}"
    );
    browser.screenshot("08-alerts-refused");

    // Search finds a word only inside Bob's encrypted mail and opens it.
    browser.open(&format!("{base}/search"));
    browser.type_into("#search input[name=q]", "north gate");
    browser.click("#search button");
    browser.wait_for(Conversation::SUBJECT);
    browser.screenshot("09-search");
    browser.click("h3 a");
    let message = browser.wait_for(Conversation::PLAINTEXT);
    assert!(message.contains("Letterlock-Security"), "{message}");
    browser.screenshot("10-message");

    // Logging out ends the session.
    browser.click("nav form button");
    browser.wait_for("You are logged out");
    browser.open(&format!("{base}/"));
    browser.wait_for("Log in first");
    drop(browser);
    drop(conversation);
}

/// A session cookie from a fresh link, through the page itself.
fn log_in(gateway: &Gateway) -> String {
    let link = login_link(gateway);
    let path = link
        .split_once(&format!(":{}", gateway.web_port))
        .expect("path")
        .1;
    let answer = http(
        gateway.web_port,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}",
            gateway.web_port
        ),
        b"",
    );
    assert_eq!(answer.status, 303, "{}", answer.body);
    let cookie = answer.header("set-cookie").expect("a session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let again = http(
        gateway.web_port,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}",
            gateway.web_port
        ),
        b"",
    );
    assert_eq!(again.status, 403, "a login link works once");
    assert!(again.header("set-cookie").is_none());
    cookie.split(';').next().expect("name=value").to_string()
}

/// A page's CSRF tokens, in the order its forms carry them.
fn csrf_tokens(html: &str) -> Vec<String> {
    html.split("name=\"csrf\" value=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_access_rule_holds_on_its_own() {
    let root = tempfile::tempdir().expect("tempdir");
    let provider = testbed::Provider::start(&[ALICE]);
    let alice = Gateway::running(root.path(), "alice", ALICE.0, &provider);
    let port = alice.web_port;
    wait_for_port(port);
    let host = format!("127.0.0.1:{port}");
    let get = |path: &str, extra: &str| {
        http(
            port,
            &format!("GET {path} HTTP/1.1\r\nHost: {host}{extra}"),
            b"",
        )
    };
    let post = |path: &str, extra: &str, form: &str| {
        http(
            port,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\n\
                 Content-Type: application/x-www-form-urlencoded{extra}"
            ),
            form.as_bytes(),
        )
    };

    // Without a session: nothing but the login page and the stylesheet.
    for path in [
        "/",
        "/contacts",
        "/alerts",
        "/search?q=x",
        "/contact?address=a%40b",
    ] {
        let answer = get(path, "");
        assert_eq!(answer.status, 401, "{path}");
        assert!(!answer.body.contains(ALICE.0), "{path} shows nothing");
    }
    assert_eq!(
        get("/", "\r\nCookie: letterlock_session=forged").status,
        401
    );
    assert_eq!(get("/style.css", "").status, 200);
    assert_eq!(get("/login?token=made-up", "").status, 403);
    let origin = format!("\r\nOrigin: http://{host}");
    assert!(
        post("/contact/forget", &origin, "address=x&confirm=yes&csrf=00").status == 401,
        "a change without a session"
    );

    // Every response says what the browser may do with it.
    let answer = get("/", "");
    let csp = answer.header("content-security-policy").expect("CSP");
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(answer.header("x-frame-options"), Some("DENY"));
    assert_eq!(answer.header("cache-control"), Some("no-store"));

    let cookie = log_in(&alice);
    let with = format!("\r\nCookie: {cookie}");
    let status = get("/", &with);
    assert_eq!(status.status, 200);
    assert!(status.body.contains(ALICE.0));

    // DNS rebinding: the page under another name is refused, session or not.
    for other in [
        "attacker.example".to_string(),
        format!("attacker.example:{port}"),
        format!("localhost.attacker.example:{port}"),
        format!("127.0.0.1.attacker.example:{port}"),
    ] {
        let answer = http(port, &format!("GET / HTTP/1.1\r\nHost: {other}{with}"), b"");
        assert_eq!(answer.status, 421, "Host: {other}");
        assert!(!answer.body.contains(ALICE.0));
    }
    // Loopback names with any port are this computer (an SSH tunnel may
    // move the port).
    for own in [format!("localhost:{port}"), "127.0.0.1:8080".to_string()] {
        let answer = http(port, &format!("GET / HTTP/1.1\r\nHost: {own}{with}"), b"");
        assert_eq!(answer.status, 200, "Host: {own}");
    }

    // A change needs this page's origin and an unused token of this session.
    // The log-out form of a page is a change like any other.
    let tokens = csrf_tokens(&get("/", &with).body);
    assert_eq!(tokens.len(), 1, "the status page's one form");
    let token = &tokens[0];
    for (extra, why) in [
        (String::new(), "no Origin"),
        (
            "\r\nOrigin: http://attacker.example".to_string(),
            "another origin",
        ),
        ("\r\nOrigin: null".to_string(), "an opaque origin"),
    ] {
        let answer = post(
            "/logout",
            &format!("{with}{extra}"),
            &format!("csrf={token}"),
        );
        assert_eq!(answer.status, 403, "{why}");
    }
    let missing = post("/logout", &format!("{with}{origin}"), "");
    assert_eq!(missing.status, 403, "no token");
    // Another session's token is refused in this one.
    let other_cookie = log_in(&alice);
    let other_tokens = csrf_tokens(&get("/", &format!("\r\nCookie: {other_cookie}")).body);
    let crossed = post(
        "/logout",
        &format!("{with}{origin}"),
        &format!("csrf={}", other_tokens[0]),
    );
    assert_eq!(crossed.status, 403, "another session's token");
    // The right token works once: the first use logs out.
    let out = post(
        "/logout",
        &format!("{with}{origin}"),
        &format!("csrf={token}"),
    );
    assert_eq!(out.status, 200, "{}", out.body);
    assert!(out
        .header("set-cookie")
        .is_some_and(|c| c.contains("Max-Age=0")));
    assert_eq!(get("/", &with).status, 401, "the session ended");
    // Replayed in the other, still live session: refused.
    let other_with = format!("\r\nCookie: {other_cookie}");
    let fresh = csrf_tokens(&get("/", &other_with).body);
    let first = post(
        "/logout",
        &format!("{other_with}{origin}"),
        &format!("csrf={}", fresh[0]),
    );
    assert_eq!(first.status, 200);
    let relogged = log_in(&alice);
    let relogged_with = format!("\r\nCookie: {relogged}");
    let replayed = post(
        "/logout",
        &format!("{relogged_with}{origin}"),
        &format!("csrf={}", fresh[0]),
    );
    assert_eq!(replayed.status, 403, "a used token, replayed");
    assert_eq!(get("/", &relogged_with).status, 200, "nothing changed");

    // A restart ends every session (they live in memory only); a link
    // made before it and not yet used still works once.
    let unused = login_link(&alice);
    let token = unused.split_once("token=").expect("token").1.to_string();
    let mut alice = alice;
    alice.stop();
    alice.start();
    wait_for_port(port);
    assert_eq!(
        get("/", &relogged_with).status,
        401,
        "a session after a restart"
    );
    let path = format!("/login?token={token}");
    assert_eq!(get(&path, "").status, 303);
    assert_eq!(get(&path, "").status, 403);

    // Neither links nor cookies reach the log.
    let log = alice.log_text();
    for secret in [&token, &cookie, &other_cookie, &relogged] {
        let value = secret.rsplit('=').next().expect("value");
        assert!(!log.contains(value), "a secret in the log");
    }
    assert!(!log.contains("web page stopped"), "{log}");
}
