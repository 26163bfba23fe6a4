//! One listener for both proxies, in the shape of mini-redis's
//! `server.rs`/`shutdown.rs`: a bounded number of connections, each served
//! in its own task, and one way to stop.
//!
//! At most [`Listener::max_connections`] sessions run at once; the next
//! connection is accepted only when one ends (until then it waits in the
//! kernel's backlog), so a flood of connections costs a queue, not memory
//! or file descriptors. On shutdown the listener stops accepting and
//! cancels the [`CancellationToken`] every session was given: each ends the
//! way its protocol says (SMTP: 421 between messages; IMAP: BYE between
//! commands) after what it is doing, and whatever still runs after the
//! grace period is dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Connections one listener serves at once unless told otherwise: far
/// above what the mail clients of a household or a team open (Thunderbird
/// keeps up to five per account), far below a file-descriptor limit.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address}: {source} (is another program using the port?)")]
pub struct BindError {
    pub address: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// A bound TCP listener, ready to [`Listener::serve`].
#[derive(Debug)]
pub struct Listener {
    listener: TcpListener,
    max_connections: usize,
    /// Which proxy this is, for the log.
    name: &'static str,
}

impl Listener {
    /// Binds `address` (port 0: any free port, see
    /// [`Listener::local_addr`]).
    pub async fn bind(address: SocketAddr, name: &'static str) -> Result<Listener, BindError> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| BindError { address, source })?;
        Ok(Listener {
            listener,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            name,
        })
    }

    /// At most `limit` sessions at once (at least one).
    pub fn with_max_connections(mut self, limit: usize) -> Listener {
        self.max_connections = limit.max(1);
        self
    }

    /// Where it listens.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves each connection with `session` until `shutdown` completes,
    /// then cancels the sessions' token, waits for them at most `grace`,
    /// and drops the rest. A session's own errors are its business (it logs
    /// them); the listener only counts it off.
    pub async fn serve<S, F>(self, shutdown: impl Future<Output = ()>, grace: Duration, session: S)
    where
        S: Fn(TcpStream, SocketAddr, CancellationToken) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        let name = self.name;
        let stop = CancellationToken::new();
        // Cancelled after the grace period: sessions still running are
        // dropped (their sockets close).
        let abandon = CancellationToken::new();
        let sessions = TaskTracker::new();
        let permits = Arc::new(Semaphore::new(self.max_connections));
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let accepted = tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((tcp, peer)) => {
                    let served = session(tcp, peer, stop.child_token());
                    let abandon = abandon.clone();
                    sessions.spawn(async move {
                        tokio::select! {
                            _ = served => {}
                            _ = abandon.cancelled() => {}
                        }
                        drop(permit);
                    });
                }
                // Out of file descriptors and the like: wait, don't spin.
                Err(e) => {
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        drop(self.listener);
        stop.cancel();
        sessions.close();
        if tokio::time::timeout(grace, sessions.wait()).await.is_err() {
            tracing::warn!(
                listener = name,
                sessions = sessions.len(),
                "sessions still busy after the grace period; closing them"
            );
            abandon.cancel();
            sessions.wait().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Sessions that echo one line, then wait for the stop.
    async fn echo(mut tcp: TcpStream, stop: CancellationToken) {
        let mut buf = [0u8; 16];
        if let Ok(n) = tcp.read(&mut buf).await {
            let _ = tcp.write_all(&buf[..n]).await;
        }
        stop.cancelled().await;
        let _ = tcp.write_all(b"bye").await;
    }

    #[tokio::test]
    async fn at_most_the_limit_is_served_and_shutdown_tells_every_session() {
        let listener = Listener::bind("127.0.0.1:0".parse().expect("an address"), "test")
            .await
            .expect("bind")
            .with_max_connections(2);
        let address = listener.local_addr().expect("bound");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(listener.serve(
            async {
                let _ = stop_rx.await;
            },
            Duration::from_secs(5),
            |tcp, _, stop| echo(tcp, stop),
        ));
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(address).await.expect("connect"));
        }
        let mut answered = 0;
        for client in &mut clients {
            client.write_all(b"hi").await.expect("write");
            let mut buf = [0u8; 2];
            let read =
                tokio::time::timeout(Duration::from_millis(500), client.read_exact(&mut buf));
            if matches!(read.await, Ok(Ok(_))) {
                answered += 1;
            }
        }
        assert_eq!(answered, 2, "the third waits until one of the two ends");
        let _ = stop_tx.send(());
        server.await.expect("the listener ends");
        for client in clients.iter_mut().take(2) {
            let mut bye = Vec::new();
            client.read_to_end(&mut bye).await.expect("read");
            assert_eq!(bye, b"bye", "every session heard of the shutdown");
        }
    }

    #[tokio::test]
    async fn a_session_that_ignores_the_stop_is_dropped_after_the_grace_period() {
        let listener = Listener::bind("127.0.0.1:0".parse().expect("an address"), "test")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("bound");
        let server = tokio::spawn(listener.serve(
            tokio::time::sleep(Duration::from_millis(200)),
            Duration::from_millis(100),
            |tcp, _, _stop| async move {
                let _tcp = tcp;
                std::future::pending::<()>().await;
            },
        ));
        let mut client = TcpStream::connect(address).await.expect("connect");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the listener ends within the grace period")
            .expect("no panic");
        let mut rest = Vec::new();
        let read = client.read_to_end(&mut rest).await.expect("closed cleanly");
        assert_eq!(read, 0);
    }
}
