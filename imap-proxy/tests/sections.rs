//! `imap_proxy::imap::section` against the reference: for cleartext messages
//! Dovecot's own `BODY[section]` answers are what a client expects, so the
//! gateway must cut exactly the same bytes (it will do so for decrypted
//! messages, where Dovecot cannot). Messages: the Thunderbird OpenPGP test
//! corpus plus nested structures; Python's imaplib does the fetching.

use std::num::NonZeroU32;
use std::path::PathBuf;

use base64::Engine as _;
use imap_proxy::imap::section::{partial, section, Spec};
use testbed::Dovecot;

fn corpus() -> Corpus {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/thunderbird-openpgp/eml");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    names.sort();
    let mut out: Vec<(String, Vec<u8>)> = names
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("eml");
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                crlf(&bytes),
            )
        })
        .collect();
    out.push(("nested".into(), NESTED.to_vec()));
    out
}

/// IMAP serves CRLF; the corpus files may use LF.
fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 20);
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

const NESTED: &[u8] = b"From: a@example.org\r\nSubject: outer\r\nContent-Type: multipart/mixed; boundary=\"out\"\r\n\r\n\
preamble\r\n--out\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n--out\r\n\
Content-Type: message/rfc822\r\n\r\nFrom: b@example.org\r\nSubject: inner\r\n\
Content-Type: multipart/alternative; boundary=\"in\"\r\n\r\n--in\r\nContent-Type: text/plain\r\n\r\ninner plain\r\n\
--in\r\nContent-Type: text/html\r\n\r\n<p>inner html</p>\r\n--in--\r\n\r\n--out\r\n\
Content-Type: message/rfc822\r\n\r\nSubject: single\r\n\r\nsingle body\r\n--out--\r\n";

/// The sections asked for, as IMAP writes them.
const SPECS: &[&str] = &[
    "",
    "HEADER",
    "TEXT",
    "1",
    "1.MIME",
    "2",
    "2.MIME",
    "1.1",
    "1.2",
    "2.1",
    "2.2",
    "2.HEADER",
    "2.TEXT",
    "3",
    "3.1",
    "HEADER.FIELDS (FROM SUBJECT content-type)",
    "HEADER.FIELDS.NOT (Subject)",
    "2.HEADER.FIELDS (Subject)",
];

fn ours(message: &[u8], spec: &str) -> Vec<u8> {
    let (path, rest): (Vec<NonZeroU32>, &str) = {
        let mut path = Vec::new();
        let mut rest = spec;
        loop {
            let (head, tail) = rest.split_once('.').unwrap_or((rest, ""));
            match head.parse::<u32>().ok().and_then(NonZeroU32::new) {
                Some(n) => {
                    path.push(n);
                    rest = tail;
                    if tail.is_empty() {
                        break;
                    }
                }
                None => break,
            }
        }
        (path, rest)
    };
    let names: Vec<Vec<u8>> = rest
        .split_once('(')
        .map(|(_, list)| {
            list.trim_end_matches(')')
                .split_whitespace()
                .map(|n| n.as_bytes().to_vec())
                .collect()
        })
        .unwrap_or_default();
    let names: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
    let spec = match rest {
        "" if path.is_empty() => Spec::Whole,
        "" => Spec::Part(&path),
        "HEADER" => Spec::Header(&path),
        "TEXT" => Spec::Text(&path),
        "MIME" => Spec::Mime(&path),
        r if r.starts_with("HEADER.FIELDS.NOT") => Spec::HeaderFieldsNot(&path, &names),
        r if r.starts_with("HEADER.FIELDS") => Spec::HeaderFields(&path, &names),
        other => panic!("unknown spec {other}"),
    };
    section(message, &spec).into_owned()
}

/// argv: port password ca mode; stdin: lines "UID<TAB>SPEC"; stdout: one
/// base64 line per request. Mode "section": the literal of
/// `BODY.PEEK[SPEC]` (or "NIL"); mode "raw": the whole untagged FETCH
/// response to `(SPEC)`, literals included, as the server sent it.
const FETCHER: &str = r#"
import base64, imaplib, ssl, sys
port, password, ca, mode = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=ca)
m = imaplib.IMAP4_SSL("localhost", int(port), ssl_context=ctx)
m.login("alice", password)
m.select("INBOX", readonly=True)
for line in sys.stdin.read().splitlines():
    uid, spec = line.split("\t", 1)
    if mode == "section":
        typ, data = m.uid("FETCH", uid, "(BODY.PEEK[%s])" % spec)
        found = None
        for d in data:
            if isinstance(d, tuple):
                found = d[1]
        print(base64.b64encode(found).decode() if found is not None else "NIL")
    else:
        typ, data = m.uid("FETCH", uid, "(%s)" % spec)
        raw = b""
        for d in data:
            if isinstance(d, tuple):
                raw += d[0] + b"\r\n" + d[1]
            else:
                raw += d
        seq, rest = raw.split(b" ", 1)
        print(base64.b64encode(b"* " + seq + b" FETCH " + rest + b"\r\n").decode())
m.logout()
"#;

/// Runs the fetcher for these (uid, spec) requests.
fn fetch(dovecot: &Dovecot, mode: &str, requests: &[(u32, String)]) -> Vec<Vec<u8>> {
    let input: String = requests
        .iter()
        .map(|(uid, spec)| format!("{uid}\t{spec}\n"))
        .collect();
    let args = [
        dovecot.imaps_port.to_string(),
        "alicepw".into(),
        dovecot.ca_file.display().to_string(),
        mode.to_string(),
    ];
    let out = testbed::python::run(FETCHER, &args, input.as_bytes());
    let answers: Vec<Vec<u8>> = String::from_utf8_lossy(&out)
        .lines()
        .map(|a| {
            if a == "NIL" {
                Vec::new()
            } else {
                base64::engine::general_purpose::STANDARD
                    .decode(a)
                    .expect("base64")
            }
        })
        .collect();
    assert_eq!(answers.len(), requests.len());
    answers
}

/// (file name, message) pairs.
type Corpus = Vec<(String, Vec<u8>)>;

fn started() -> (Dovecot, Corpus, Vec<u32>) {
    let dovecot = Dovecot::start(&[("alice", "alicepw")]);
    let messages = corpus();
    for (_, bytes) in &messages {
        dovecot.save("alice", "INBOX", bytes);
    }
    let uids = dovecot.uids("alice", "INBOX");
    assert_eq!(uids.len(), messages.len());
    (dovecot, messages, uids)
}

#[test]
fn sections_match_dovecot_byte_for_byte() {
    let (dovecot, messages, uids) = started();
    let requests: Vec<(u32, String)> = uids
        .iter()
        .flat_map(|uid| SPECS.iter().map(move |spec| (*uid, spec.to_string())))
        .collect();
    let answers = fetch(&dovecot, "section", &requests);

    let mut compared = 0;
    let mut mismatches = Vec::new();
    for (i, (name, bytes)) in messages.iter().enumerate() {
        for (j, spec) in SPECS.iter().enumerate() {
            let theirs = &answers[i * SPECS.len() + j];
            let mine = ours(bytes, spec);
            compared += 1;
            if mine != *theirs {
                mismatches.push(format!(
                    "{name} BODY[{spec}]: ours {} bytes {:?}…, Dovecot {} bytes {:?}…",
                    mine.len(),
                    String::from_utf8_lossy(&mine[..mine.len().min(60)]),
                    theirs.len(),
                    String::from_utf8_lossy(&theirs[..theirs.len().min(60)])
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {compared} sections differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    // Partial ranges are plain substrings of the section.
    assert_eq!(partial(&ours(NESTED, "TEXT"), 3, 5), b"amble");
}

/// ENVELOPE, BODY and BODYSTRUCTURE as imap-codec encodes them, ours and
/// Dovecot's (decoded and encoded again, so that only content can differ).
#[test]
fn structures_match_dovecot() {
    use imap_codec::decode::Decoder;
    use imap_codec::encode::Encoder;
    use imap_codec::imap_types::fetch::MessageDataItem;
    use imap_codec::imap_types::response::{Data, Response};
    use imap_codec::ResponseCodec;
    use imap_proxy::imap::structure::{body_structure, envelope};

    let (dovecot, messages, uids) = started();
    let items = ["ENVELOPE", "BODY", "BODYSTRUCTURE"];
    let requests: Vec<(u32, String)> = uids
        .iter()
        .flat_map(|uid| items.iter().map(move |item| (*uid, item.to_string())))
        .collect();
    let answers = fetch(&dovecot, "raw", &requests);
    let codec = ResponseCodec::default();
    let encode_item = |item: MessageDataItem<'_>| -> String {
        let response = Response::Data(Data::Fetch {
            seq: std::num::NonZeroU32::new(1).expect("1"),
            items: vec![item].try_into().expect("one item"),
        });
        String::from_utf8_lossy(&codec.encode(&response).dump()).into_owned()
    };
    let mut mismatches = Vec::new();
    for (i, (name, bytes)) in messages.iter().enumerate() {
        for (j, item) in items.iter().enumerate() {
            let raw = &answers[i * items.len() + j];
            let (_, response) = codec
                .decode(raw)
                .unwrap_or_else(|e| panic!("{name}: Dovecot's {item} does not parse: {e:?}"));
            let Response::Data(Data::Fetch { items: got, .. }) = response else {
                panic!("{name}: not a FETCH response");
            };
            let theirs = got
                .into_iter()
                .find(|it| !matches!(it, MessageDataItem::Uid(_)))
                .expect("the item");
            let mine = match *item {
                "ENVELOPE" => MessageDataItem::Envelope(envelope(bytes)),
                "BODY" => MessageDataItem::Body(body_structure(bytes, false)),
                _ => MessageDataItem::BodyStructure(body_structure(bytes, true)),
            };
            // Quoted or literal is the server's choice; compare content.
            let (mine, theirs) = (
                unliteral(&encode_item(mine)),
                unliteral(&encode_item(theirs)),
            );
            if mine != theirs {
                mismatches.push(format!(
                    "{name} {item}:\n  ours:    {mine}  dovecot: {theirs}"
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} differ:\n{}",
        mismatches.len(),
        messages.len() * items.len(),
        mismatches.join("\n")
    );
}

/// Every `{n}\r\n<n bytes>` literal written as a quoted string instead.
fn unliteral(encoded: &str) -> String {
    let bytes = encoded.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'{' {
            if let Some(close) = bytes[i..].iter().position(|&b| b == b'}') {
                let digits = &encoded[i + 1..i + close];
                if let Ok(n) = digits.trim_end_matches('+').parse::<usize>() {
                    let start = i + close + 3;
                    if encoded.get(i + close + 1..start) == Some("\r\n") && start + n <= bytes.len()
                    {
                        let data = String::from_utf8_lossy(&bytes[start..start + n]);
                        out.push('"');
                        out.push_str(&data.replace('\\', "\\\\").replace('"', "\\\""));
                        out.push('"');
                        i = start + n;
                        continue;
                    }
                }
            }
        }
        let ch = encoded[i..].chars().next().expect("char");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}
