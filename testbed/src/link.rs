//! A TCP link that breaks on purpose: it forwards bytes between a client
//! and a real server and cuts both connections once the client has sent a
//! given number of bytes. Placed between the gateway and the provider, it
//! makes "the connection dropped in the middle of DATA" happen at a known
//! point, with the real server behind it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

/// A listening link; it lives as long as the test process (its threads end
/// with the connections they serve).
#[derive(Debug)]
pub struct BreakingLink {
    pub port: u16,
    forwarded: Arc<AtomicUsize>,
}

impl BreakingLink {
    /// Forwards connections to `127.0.0.1:target` and cuts each one after
    /// `cut_after` bytes from the client.
    pub fn start(target: u16, cut_after: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the link");
        let port = listener.local_addr().expect("link address").port();
        let forwarded = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&forwarded);
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let counter = Arc::clone(&counter);
                thread::spawn(move || link(client, server, cut_after, counter));
            }
        });
        BreakingLink { port, forwarded }
    }

    /// Bytes passed from clients to the server so far.
    pub fn forwarded(&self) -> usize {
        self.forwarded.load(Ordering::SeqCst)
    }
}

fn link(client: TcpStream, server: TcpStream, cut_after: usize, counter: Arc<AtomicUsize>) {
    let (Ok(mut client_read), Ok(mut server_read)) = (client.try_clone(), server.try_clone())
    else {
        return;
    };
    let mut client_write = client;
    let mut server_write = server;
    // Server to client, untouched.
    let back = thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = server_read.read(&mut buf) {
            if n == 0 || client_write.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = client_write.shutdown(Shutdown::Both);
    });
    // Client to server, until the budget is spent.
    let mut sent = 0;
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = client_read.read(&mut buf) {
        if n == 0 {
            break;
        }
        let allowed = n.min(cut_after - sent);
        if server_write.write_all(&buf[..allowed]).is_err() {
            break;
        }
        sent += allowed;
        counter.fetch_add(allowed, Ordering::SeqCst);
        if sent >= cut_after {
            break;
        }
    }
    let _ = server_write.shutdown(Shutdown::Both);
    let _ = client_read.shutdown(Shutdown::Both);
    let _ = back.join();
}
