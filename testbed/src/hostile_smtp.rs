//! An SMTP server that misbehaves on purpose at one protocol step: it drops
//! the connection, stalls, answers with garbage, or is out of space. It
//! records every byte it was sent, so a test can tell what reached the
//! "provider" and whether it ever said 250 to a message.
//!
//! Plain SMTP on loopback; the gateway's account points at it with
//! `security = plain`. Everything up to the chosen step is an ordinary
//! server (EHLO with AUTH and 8BITMIME, AUTH PLAIN/LOGIN accepted).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// Where in a session the fault happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Greeting,
    Ehlo,
    Auth,
    Mail,
    Rcpt,
    Data,
    /// After the message's final dot, where the verdict is due.
    EndOfData,
}

impl Step {
    pub const ALL: [Step; 7] = [
        Step::Greeting,
        Step::Ehlo,
        Step::Auth,
        Step::Mail,
        Step::Rcpt,
        Step::Data,
        Step::EndOfData,
    ];
}

/// What goes wrong there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The connection is closed without an answer.
    Drop,
    /// No answer ever; the connection stays open until the client leaves.
    Stall,
    /// A line that is not an SMTP reply.
    Malformed,
    /// `452 4.3.1` (temporarily out of space).
    OutOfSpace,
    /// Every answer from the step on is right but [`SLOW_ANSWER`] late: a
    /// provider that is slow rather than broken (not in [`Fault::ALL`]).
    Slow,
}

/// How late a [`Fault::Slow`] provider answers.
pub const SLOW_ANSWER: std::time::Duration = std::time::Duration::from_secs(2);

impl Fault {
    pub const ALL: [Fault; 4] = [
        Fault::Drop,
        Fault::Stall,
        Fault::Malformed,
        Fault::OutOfSpace,
    ];
}

/// A listening server; it lives as long as the test process.
#[derive(Debug, Clone)]
pub struct HostileSmtp {
    pub port: u16,
    mode: Arc<Mutex<(Step, Fault)>>,
    received: Arc<Mutex<Vec<u8>>>,
    accepted: Arc<AtomicUsize>,
}

impl HostileSmtp {
    pub fn start(step: Step, fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the hostile server");
        let port = listener.local_addr().expect("address").port();
        let server = HostileSmtp {
            port,
            mode: Arc::new(Mutex::new((step, fault))),
            received: Arc::default(),
            accepted: Arc::default(),
        };
        let shared = server.clone();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let shared = shared.clone();
                let (step, fault) = shared.mode();
                thread::spawn(move || {
                    let _ = shared.serve(client, step, fault);
                });
            }
        });
        server
    }

    /// The fault for connections from now on (each keeps the one it
    /// started with).
    pub fn set(&self, step: Step, fault: Fault) {
        if let Ok(mut mode) = self.mode.lock() {
            *mode = (step, fault);
        }
    }

    fn mode(&self) -> (Step, Fault) {
        self.mode
            .lock()
            .map(|m| *m)
            .unwrap_or((Step::Greeting, Fault::Drop))
    }

    /// Everything clients sent since the last call, all sessions together.
    pub fn take_received(&self) -> Vec<u8> {
        self.received
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }

    /// Messages it answered 250 to.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn serve(&self, client: TcpStream, step: Step, fault: Fault) -> std::io::Result<()> {
        let mut reader = BufReader::new(client.try_clone()?);
        let mut out = client;
        // Returns Ok(false) when the session must end here.
        let answer = |out: &mut TcpStream,
                      reader: &mut BufReader<TcpStream>,
                      at: Step,
                      normal: &str|
         -> std::io::Result<bool> {
            if fault == Fault::Slow && at >= step {
                thread::sleep(SLOW_ANSWER);
                out.write_all(normal.as_bytes())?;
                return Ok(true);
            }
            if at != step {
                out.write_all(normal.as_bytes())?;
                return Ok(true);
            }
            match fault {
                // (Answered late above.)
                Fault::Slow => {
                    out.write_all(normal.as_bytes())?;
                    Ok(true)
                }
                Fault::Drop => Ok(false),
                Fault::Stall => {
                    // Wait for the client to give up, reading what it sends.
                    let mut sink = Vec::new();
                    let _ = reader.read_to_end(&mut sink);
                    Ok(false)
                }
                Fault::Malformed => {
                    out.write_all(b"this is not an SMTP reply\r\n")?;
                    Ok(true)
                }
                Fault::OutOfSpace => {
                    out.write_all(b"452 4.3.1 Insufficient system storage\r\n")?;
                    Ok(true)
                }
            }
        };
        if !answer(
            &mut out,
            &mut reader,
            Step::Greeting,
            "220 hostile ESMTP\r\n",
        )? {
            return Ok(());
        }
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            self.record(line.as_bytes());
            let verb = line
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            let go_on = match verb.as_str() {
                "EHLO" | "HELO" => answer(
                    &mut out,
                    &mut reader,
                    Step::Ehlo,
                    "250-hostile\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n",
                )?,
                "AUTH" => {
                    let words: Vec<&str> = line.split_whitespace().collect();
                    if words.len() == 2 {
                        // PLAIN without an initial response, or LOGIN.
                        let prompts = if words[1].eq_ignore_ascii_case("LOGIN") {
                            2
                        } else {
                            1
                        };
                        for _ in 0..prompts {
                            out.write_all(b"334 \r\n")?;
                            let mut response = String::new();
                            if reader.read_line(&mut response)? == 0 {
                                return Ok(());
                            }
                        }
                    }
                    answer(&mut out, &mut reader, Step::Auth, "235 2.7.0 Accepted\r\n")?
                }
                "MAIL" => answer(&mut out, &mut reader, Step::Mail, "250 2.1.0 Ok\r\n")?,
                "RCPT" => answer(&mut out, &mut reader, Step::Rcpt, "250 2.1.5 Ok\r\n")?,
                "DATA" => {
                    if !answer(&mut out, &mut reader, Step::Data, "354 Go ahead\r\n")? {
                        return Ok(());
                    }
                    if step == Step::Data {
                        // No 354 was given; whatever follows is commands.
                        continue;
                    }
                    loop {
                        let mut data = Vec::new();
                        if reader.read_until(b'\n', &mut data)? == 0 {
                            return Ok(());
                        }
                        self.record(&data);
                        if data == b".\r\n" {
                            break;
                        }
                    }
                    let ok = answer(
                        &mut out,
                        &mut reader,
                        Step::EndOfData,
                        "250 2.0.0 Queued\r\n",
                    )?;
                    if step != Step::EndOfData {
                        self.accepted.fetch_add(1, Ordering::SeqCst);
                    }
                    ok
                }
                "QUIT" => {
                    out.write_all(b"221 2.0.0 Bye\r\n")?;
                    return Ok(());
                }
                _ => {
                    out.write_all(b"250 2.0.0 Ok\r\n")?;
                    true
                }
            };
            if !go_on {
                return Ok(());
            }
        }
    }

    fn record(&self, bytes: &[u8]) {
        if let Ok(mut r) = self.received.lock() {
            r.extend_from_slice(bytes);
        }
    }
}
