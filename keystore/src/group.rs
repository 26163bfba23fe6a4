//! Group commit: every write to the vault goes through here.
//!
//! Every message a mail client or `gateway archive sync` reads may record
//! its sender's key, its gossip and its Message-IDs. Each of those was a
//! transaction of its own, and the vault commits durably (an fsync per
//! commit: it holds what exists nowhere else), so a first sync of a large
//! mailbox waited for the disk several times per message, one writer at a
//! time. Here whoever holds the turn runs every job queued meanwhile in one
//! transaction, each job in a savepoint of its own (a job that fails leaves
//! no half of itself and does not fail the others), and every caller hears
//! its own answer once that transaction is committed, not before: as durable
//! as before, one wait for the disk per group instead of per message. A
//! person's decisions (verify, reject, …) and imported keys take the same
//! way, so that every write transaction ends through `vault::commit` or
//! `vault::roll_back`, never by being dropped.
//!
//! Jobs run one after another on the one connection, in queue order, so
//! each sees what the jobs before it wrote, as separate transactions did.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use sqlx::SqliteConnection;

use crate::{Keystore, KeystoreError};

/// Most jobs one transaction takes.
const GROUP_COMMIT: usize = 64;

type Boxed<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;

/// A job's work, its result type erased so that jobs of every kind share a
/// queue: whether it succeeded (its savepoint is kept) and its result.
type Work = Box<
    dyn for<'c> FnOnce(&'c mut SqliteConnection) -> Boxed<'c, (bool, Box<dyn Any + Send>)> + Send,
>;

/// One job waiting for its group.
pub(crate) struct Job {
    work: Work,
    /// Its result once the group is committed, or why the group failed.
    reply: tokio::sync::oneshot::Sender<Result<Box<dyn Any + Send>, String>>,
}

/// A group commit's queue and the turn to commit it, for any kind of job:
/// the vault's ([`Keystore::grouped`]) and the archive's stores.
pub struct GroupCommit<J> {
    queue: std::sync::Mutex<Vec<J>>,
    turn: tokio::sync::Mutex<()>,
}

impl<J> Default for GroupCommit<J> {
    fn default() -> Self {
        GroupCommit {
            queue: std::sync::Mutex::new(Vec::new()),
            turn: tokio::sync::Mutex::new(()),
        }
    }
}

impl<J> std::fmt::Debug for GroupCommit<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("queued", &self.lock_queue().len())
            .finish()
    }
}

impl<J: Send + 'static> GroupCommit<J> {
    /// Queues `job` and returns its `answer` (which the job itself carries
    /// the way to give) once a group with it was committed or failed. Until
    /// then the caller either waits for that answer or, when the turn is
    /// free first, takes up to `most` queued jobs and `commit`s them. A
    /// caller whose job another caller committed returns at once: it does
    /// not wait in line for the turn behind commits of later jobs (that
    /// convoy had each wave of messages leave the group one small commit
    /// after another, BENCHMARKS.md). `commit` runs in a task of its own:
    /// the group holds other callers' jobs, which must not be lost because
    /// this caller went away (a mail client that disconnected mid-FETCH).
    pub async fn queue_and_commit<F, Fut, A>(
        &self,
        job: J,
        most: usize,
        commit: F,
        answer: A,
    ) -> A::Output
    where
        F: Fn(Vec<J>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
        A: std::future::Future,
    {
        self.lock_queue().push(job);
        let mut answer = std::pin::pin!(answer);
        loop {
            tokio::select! {
                biased;
                out = &mut answer => return out,
                _turn = self.turn.lock() => {
                    let jobs: Vec<J> = {
                        let mut queue = self.lock_queue();
                        let n = queue.len().min(most);
                        queue.drain(..n).collect()
                    };
                    if !jobs.is_empty() {
                        let _ = tokio::spawn(commit(jobs)).await;
                    }
                    // More than `most` may have been queued before this
                    // job: then it is still waiting, and so is this caller.
                }
            }
        }
    }
}

impl<J> GroupCommit<J> {
    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Vec<J>> {
        // A panic while the lock was held left a whole queue behind: go on.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The vault's jobs waiting to be committed.
pub(crate) type Group = GroupCommit<Job>;

impl Keystore {
    /// Runs `work` in a write transaction shared with the other jobs queued
    /// meanwhile, and returns its result once that transaction is committed
    /// (see the module's documentation).
    pub(crate) async fn grouped<T, W>(&self, work: W) -> Result<T, KeystoreError>
    where
        T: Send + 'static,
        W: for<'c> FnOnce(&'c mut SqliteConnection) -> Boxed<'c, Result<T, KeystoreError>>
            + Send
            + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let work: Work = Box::new(move |conn| {
            Box::pin(async move {
                let result = work(conn).await;
                (result.is_ok(), Box::new(result) as Box<dyn Any + Send>)
            })
        });
        let answer = self.group.queue_and_commit(
            Job { work, reply },
            GROUP_COMMIT,
            |jobs| {
                let store = self.clone();
                async move { store.commit_group(jobs).await }
            },
            answer,
        );
        match answer.await {
            Ok(Ok(result)) => match result.downcast::<Result<T, KeystoreError>>() {
                Ok(result) => *result,
                Err(_) => Err(KeystoreError::NotSaved(
                    "a grouped job answered with another type".into(),
                )),
            },
            Ok(Err(why)) => Err(KeystoreError::NotSaved(why)),
            Err(_) => Err(KeystoreError::NotSaved("the write was interrupted".into())),
        }
    }

    async fn commit_group(&self, jobs: Vec<Job>) {
        let mut tx = match self.write_tx().await {
            Ok(tx) => tx,
            Err(e) => {
                let why = e.to_string();
                for job in jobs {
                    let _ = job.reply.send(Err(why.clone()));
                }
                return;
            }
        };
        let mut done = Vec::with_capacity(jobs.len());
        let mut broken = None;
        let mut jobs = jobs.into_iter();
        for job in jobs.by_ref() {
            match in_savepoint(&mut tx, job.work).await {
                Ok(result) => done.push((job.reply, result)),
                Err(e) => {
                    // The transaction's state is unknown: none of it stays.
                    broken = Some(e.to_string());
                    let _ = job.reply.send(Err(e.to_string()));
                    break;
                }
            }
        }
        let outcome = match broken {
            Some(why) => {
                crate::vault::roll_back(tx).await;
                Err(why)
            }
            None => crate::vault::commit(tx)
                .await
                .map_err(|e| KeystoreError::from(e).to_string()),
        };
        match outcome {
            Ok(()) => {
                for (reply, result) in done {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(why) => {
                for (reply, _) in done {
                    let _ = reply.send(Err(why.clone()));
                }
                for job in jobs {
                    let _ = job.reply.send(Err(why.clone()));
                }
            }
        }
    }
}

/// Runs one job in a savepoint: kept if it succeeded, rolled back if not.
/// `Err` only if the savepoint itself failed.
async fn in_savepoint(
    conn: &mut SqliteConnection,
    work: Work,
) -> Result<Box<dyn Any + Send>, sqlx::Error> {
    sqlx::query("SAVEPOINT job").execute(&mut *conn).await?;
    let (ok, result) = work(&mut *conn).await;
    if !ok {
        sqlx::query("ROLLBACK TO job").execute(&mut *conn).await?;
    }
    sqlx::query("RELEASE job").execute(&mut *conn).await?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Keystore) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Keystore::create(dir.path(), crate::Unlock::KeyFile)
            .await
            .expect("a vault");
        store
            .grouped(|tx| {
                Box::pin(async move {
                    sqlx::query("CREATE TABLE probe (n INTEGER PRIMARY KEY)")
                        .execute(&mut *tx)
                        .await?;
                    Ok(())
                })
            })
            .await
            .expect("the probe table");
        (dir, store)
    }

    async fn insert(store: &Keystore, n: i64, then_fail: bool) -> Result<i64, KeystoreError> {
        store
            .grouped(move |tx| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO probe (n) VALUES (?)")
                        .bind(n)
                        .execute(&mut *tx)
                        .await?;
                    if then_fail {
                        return Err(KeystoreError::UnknownPeer(n.to_string()));
                    }
                    Ok(n * 10)
                })
            })
            .await
    }

    async fn rows(store: &Keystore) -> Vec<i64> {
        sqlx::query_scalar("SELECT n FROM probe ORDER BY n")
            .fetch_all(&store.pool)
            .await
            .expect("the probe rows")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_job_of_many_writers_gets_its_own_answer_once_committed() {
        let (_dir, store) = store().await;
        let mut writers = tokio::task::JoinSet::new();
        for n in 0..200i64 {
            let store = store.clone();
            // Every seventh fails after writing: its row must not stay, and
            // the others of its group must not notice.
            writers.spawn(async move { (n, insert(&store, n, n % 7 == 3).await) });
        }
        while let Some(joined) = writers.join_next().await {
            let (n, answer) = joined.expect("a writer");
            if n % 7 == 3 {
                assert!(
                    matches!(answer, Err(KeystoreError::UnknownPeer(ref m)) if *m == n.to_string()),
                    "job {n}: {answer:?}"
                );
            } else {
                assert_eq!(answer.expect("committed"), n * 10);
            }
        }
        let expected: Vec<i64> = (0..200).filter(|n| n % 7 != 3).collect();
        assert_eq!(rows(&store).await, expected);
    }

    #[tokio::test]
    async fn a_job_sees_what_the_jobs_before_it_wrote() {
        let (_dir, store) = store().await;
        insert(&store, 1, false).await.expect("the first row");
        // The same key again violates the primary key: an error for this
        // job alone, and its savepoint leaves nothing behind.
        assert!(matches!(
            insert(&store, 1, false).await,
            Err(KeystoreError::Database(_))
        ));
        insert(&store, 2, false).await.expect("the second row");
        assert_eq!(rows(&store).await, [1, 2]);
    }

    /// SQLite rolls a transaction back by itself on a full disk or an I/O
    /// error (simulated here by a job that ends it). The group fails, and
    /// the vault takes the next group and ordinary transactions as before,
    /// on the same connection: sqlx is not left counting a transaction that
    /// no longer exists (it then gives the connection up, and with a full
    /// disk no new one opens).
    #[tokio::test]
    async fn a_transaction_sqlite_ended_itself_leaves_the_vault_usable() {
        let (_dir, store) = store().await;
        // A mark on the pool's one connection: were the connection given up
        // and another opened (which a full disk refuses), it would be gone.
        sqlx::query("CREATE TEMP TABLE same_connection (x)")
            .execute(&store.pool)
            .await
            .expect("the mark");
        let ended = store
            .grouped(|tx| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO probe (n) VALUES (1)")
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("ROLLBACK").execute(&mut *tx).await?;
                    Ok(())
                })
            })
            .await;
        assert!(ended.is_err(), "{ended:?}");
        insert(&store, 2, false).await.expect("the next group");
        let mut tx = store.write_tx().await.expect("an ordinary transaction");
        sqlx::query("INSERT INTO probe (n) VALUES (3)")
            .execute(&mut *tx)
            .await
            .expect("insert");
        // And a commit SQLite cannot do (no transaction left) is reported,
        // with the connection still usable after it.
        sqlx::query("ROLLBACK")
            .execute(&mut *tx)
            .await
            .expect("ended");
        assert!(crate::vault::commit(tx).await.is_err());
        insert(&store, 4, false)
            .await
            .expect("after the failed commit");
        assert_eq!(rows(&store).await, [2, 4]);
        sqlx::query("SELECT count(*) FROM same_connection")
            .fetch_one(&store.pool)
            .await
            .expect("the same connection throughout");
    }

    /// The caller that commits a group goes away (its task is cancelled:
    /// a mail client disconnected) while another caller's job is in the
    /// group: that job is still committed and answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_outlives_the_caller_that_commits_it() {
        let (_dir, store) = store().await;
        let queued = |store: &Keystore| store.group.lock_queue().len();
        let turn = store.group.turn.lock().await;
        let release = std::sync::Arc::new(tokio::sync::Notify::new());
        let committing = {
            let (store, release) = (store.clone(), std::sync::Arc::clone(&release));
            tokio::spawn(async move {
                store
                    .grouped(move |tx| {
                        Box::pin(async move {
                            sqlx::query("INSERT INTO probe (n) VALUES (1)")
                                .execute(&mut *tx)
                                .await?;
                            release.notified().await;
                            Ok(())
                        })
                    })
                    .await
            })
        };
        while queued(&store) < 1 {
            tokio::task::yield_now().await;
        }
        let other = {
            let store = store.clone();
            tokio::spawn(async move { insert(&store, 2, false).await })
        };
        while queued(&store) < 2 {
            tokio::task::yield_now().await;
        }
        // The first in line takes both jobs; it goes away mid-group.
        drop(turn);
        while queued(&store) > 0 {
            tokio::task::yield_now().await;
        }
        committing.abort();
        release.notify_one();
        let answer = tokio::time::timeout(std::time::Duration::from_secs(10), other)
            .await
            .expect("answered")
            .expect("the other caller");
        assert_eq!(answer.expect("committed"), 20);
        assert_eq!(rows(&store).await, [1, 2]);
    }

    /// A caller whose job was committed in another caller's group returns
    /// with its answer, without waiting for the turn behind the commit of a
    /// later job (here one that does not finish until told to).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_committed_job_does_not_wait_for_later_commits() {
        struct Probe {
            n: u32,
            hold: Option<std::sync::Arc<tokio::sync::Notify>>,
            reply: tokio::sync::oneshot::Sender<u32>,
        }
        let group = std::sync::Arc::new(GroupCommit::<Probe>::default());
        let commit = |jobs: Vec<Probe>| async move {
            for job in jobs {
                if let Some(hold) = job.hold {
                    hold.notified().await;
                }
                let _ = job.reply.send(job.n);
            }
        };
        let queue = |n: u32, hold: Option<std::sync::Arc<tokio::sync::Notify>>| {
            let group = std::sync::Arc::clone(&group);
            tokio::spawn(async move {
                let (reply, answer) = tokio::sync::oneshot::channel();
                let job = Probe { n, hold, reply };
                group.queue_and_commit(job, 2, commit, answer).await
            })
        };
        let queued = || group.lock_queue().len();
        let turn = group.turn.lock().await;
        let first = queue(1, None);
        while queued() < 1 {
            tokio::task::yield_now().await;
        }
        let second = queue(2, None);
        while queued() < 2 {
            tokio::task::yield_now().await;
        }
        let hold = std::sync::Arc::new(tokio::sync::Notify::new());
        let third = queue(3, Some(std::sync::Arc::clone(&hold)));
        while queued() < 3 {
            tokio::task::yield_now().await;
        }
        // The first in line commits the first two jobs (two at most); the
        // third job's commit then holds the turn until told.
        drop(turn);
        let within = |task| tokio::time::timeout(std::time::Duration::from_secs(10), task);
        assert_eq!(within(first).await.expect("in time").expect("task"), Ok(1));
        assert_eq!(within(second).await.expect("in time").expect("task"), Ok(2));
        hold.notify_one();
        assert_eq!(within(third).await.expect("in time").expect("task"), Ok(3));
    }
}
