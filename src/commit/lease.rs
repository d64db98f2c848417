//! The lease that lets one run at a time change a unit of a DEST (or, for `state migrate`, its
//! legacy DEST-wide state), kept in DEST itself (so it works across machines), never in a local
//! lock.
//!
//! A lease is a sequence of generations, `_state/units/<unit>/lease/<generation>.json`, each
//! created only if absent: taking a free or expired lease and renewing one's own are the same step, creating the
//! next generation, so of two runs racing for it exactly one wins. The holder renews every quarter
//! of the time to live from a background thread, and before each commit checks that at least half
//! of it remains; a run that cannot renew stops before committing. A lease held by a process of
//! this host that no longer exists is taken at once; any other waits for its expiry. Ordering of
//! commits never rests on the lease alone: commit records are themselves created only if absent.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::commit::destination::Destination;
use crate::error::Error;
use crate::stop::StopFlag;

pub const LEASES: &str = "lease";

/// How a run takes the lease.
#[derive(Debug, Clone, Copy)]
pub struct LeaseOptions {
    /// How long a lease lasts without renewal.
    pub ttl: Duration,
    /// How long to wait for a lease another run holds before giving up (exit 73).
    pub wait: Duration,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        LeaseOptions { ttl: Duration::from_secs(300), wait: Duration::ZERO }
    }
}

/// One generation of the lease, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub generation: u64,
    pub owner: String,
    pub host: String,
    pub pid: u32,
    /// The holder's start time in clock ticks since boot (Linux), to tell a reused process id.
    pub pid_start: Option<u64>,
    pub written_at: String,
    /// Milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    pub released: bool,
}

impl LeaseRecord {
    /// Whether another run may take the lease now.
    pub fn is_free(&self, now_ms: u64) -> bool {
        self.released || self.expires_at_ms <= now_ms || self.holder_is_gone()
    }

    /// The holder ran on this host and its process is gone.
    fn holder_is_gone(&self) -> bool {
        self.host == host() && self.pid_start.is_some() && process_start(self.pid) != self.pid_start
    }
}

/// Milliseconds since the Unix epoch, as lease expiry times are written.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

/// A process's start time (field 22 of `/proc/<pid>/stat`), `None` when it does not exist.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

fn name(dest: &Destination, generation: u64) -> String {
    crate::commit::ledger::seq_name(dest, LEASES, generation)
}

/// The newest generation, when there is one. Generations listed but gone when read were pruned
/// by a run that took a newer one: the listing is looked at again, never taken as "no lease".
pub fn current(dest: &Destination) -> Result<Option<LeaseRecord>, Error> {
    for _ in 0..8 {
        let names = dest.list(&dest.state_dir(LEASES), None)?;
        let mut listed = false;
        for rel in names.iter().rev().filter(|p| crate::commit::ledger::seq_of(p).is_some()) {
            listed = true;
            if let Some(bytes) = dest.read(rel)? {
                let rec = serde_json::from_slice(&bytes)
                    .map_err(|e| Error::State { path: format!("{}/{rel}", dest.display()), cause: e.to_string() })?;
                return Ok(Some(rec));
            }
        }
        if !listed {
            return Ok(None);
        }
    }
    Err(Error::State {
        path: format!("{}/{}", dest.display(), dest.state_dir(LEASES)),
        cause: "lease records keep vanishing".into(),
    })
}

/// Deletes the generations before `generation - 1`: those of runs that were killed (a released
/// or renewed lease cleans up after itself). Safe with [`current`], which looks again when a
/// listed generation is gone.
fn prune(dest: &Destination, generation: u64) {
    let Ok(mut names) = dest.list(&dest.state_dir(LEASES), None) else { return };
    names.retain(|rel| crate::commit::ledger::seq_of(rel).is_some_and(|g| g + 1 < generation));
    let _ = dest.delete_all(&names);
}

struct Shared {
    generation: AtomicU64,
    expires_at_ms: AtomicU64,
    lost: AtomicBool,
}

/// A held lease; renewed in the background until released (also when dropped).
pub struct Lease {
    dest: Destination,
    owner: String,
    ttl: Duration,
    shared: Arc<Shared>,
    stop: Option<mpsc::Sender<()>>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

fn record(owner: &str, generation: u64, ttl: Duration, released: bool) -> LeaseRecord {
    let pid = std::process::id();
    LeaseRecord {
        generation,
        owner: owner.to_string(),
        host: host(),
        pid,
        pid_start: process_start(pid),
        written_at: crate::commit::ledger::now_rfc3339(),
        expires_at_ms: now_ms() + ttl.as_millis() as u64,
        released,
    }
}

fn write(dest: &Destination, rec: &LeaseRecord) -> Result<bool, Error> {
    dest.create(&name(dest, rec.generation), &serde_json::to_vec_pretty(rec).expect("a lease serializes"))
}

/// Takes the lease of `dest`, waiting up to `opts.wait` for another run's to end or expire (or
/// until `stop` is set).
pub fn acquire(dest: &Destination, opts: LeaseOptions, stop: &StopFlag) -> Result<Lease, Error> {
    let owner = format!("{}:{}:{:016x}", host(), std::process::id(), rand_token());
    let deadline = std::time::Instant::now() + opts.wait;
    loop {
        stop.check()?;
        let latest = current(dest)?;
        let generation = latest.as_ref().map_or(1, |r| r.generation + 1);
        match &latest {
            Some(held) if !held.is_free(now_ms()) => {
                if std::time::Instant::now() >= deadline {
                    let left = held.expires_at_ms.saturating_sub(now_ms()) / 1000;
                    return Err(Error::Busy { dest: dest.display(), holder: held.owner.clone(), expires_in_s: left });
                }
                std::thread::sleep(Duration::from_millis(500).min(deadline - std::time::Instant::now()));
            }
            _ => {
                let rec = record(&owner, generation, opts.ttl, false);
                if write(dest, &rec)? {
                    tracing::info!(generation, owner, "lease taken");
                    prune(dest, generation);
                    return Ok(Lease::start(dest.clone(), owner, opts.ttl, rec));
                }
                // Another run created that generation first: look again.
            }
        }
    }
}

pub(crate) fn rand_token() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

impl Lease {
    fn start(dest: Destination, owner: String, ttl: Duration, rec: LeaseRecord) -> Lease {
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(rec.generation),
            expires_at_ms: AtomicU64::new(rec.expires_at_ms),
            lost: AtomicBool::new(false),
        });
        let (stop, stopped) = mpsc::channel::<()>();
        let renewer = {
            let (dest, owner, shared) = (dest.clone(), owner.clone(), shared.clone());
            std::thread::spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(ttl / 4) {
                    let generation = shared.generation.load(Ordering::SeqCst) + 1;
                    let rec = record(&owner, generation, ttl, false);
                    match write(&dest, &rec) {
                        Ok(true) => {
                            shared.generation.store(generation, Ordering::SeqCst);
                            shared.expires_at_ms.store(rec.expires_at_ms, Ordering::SeqCst);
                            if generation > 2 {
                                let _ = dest.delete(&name(&dest, generation - 2));
                            }
                        }
                        Ok(false) => {
                            tracing::warn!(generation, "lease taken by another run");
                            shared.lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot renew the lease; trying again"),
                    }
                }
            })
        };
        Lease { dest, owner, ttl, shared, stop: Some(stop), renewer: Some(renewer) }
    }

    /// Who holds it: host, process and a random token.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Succeeds while the lease is ours with at least half its time to live left: the bound that
    /// keeps a commit from landing after another run could have taken the lease.
    pub fn check(&self) -> Result<(), Error> {
        let left = self.shared.expires_at_ms.load(Ordering::SeqCst).saturating_sub(now_ms());
        if self.shared.lost.load(Ordering::SeqCst) || left < self.ttl.as_millis() as u64 / 2 {
            return Err(Error::LeaseLost { dest: self.dest.display() });
        }
        Ok(())
    }

    /// Stops renewing and marks the lease released, so the next run need not wait.
    pub fn release(mut self) {
        self.stop_renewing();
    }

    fn stop_renewing(&mut self) {
        let Some(stop) = self.stop.take() else { return };
        drop(stop);
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
        if self.shared.lost.load(Ordering::SeqCst) {
            return;
        }
        let generation = self.shared.generation.load(Ordering::SeqCst);
        match write(&self.dest, &record(&self.owner, generation + 1, Duration::ZERO, true)) {
            Ok(true) => {
                let older: Vec<String> =
                    (generation.saturating_sub(1)..=generation).map(|g| name(&self.dest, g)).collect();
                let _ = self.dest.delete_all(&older);
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot release the lease; it expires by itself"),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop_renewing();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest() -> (tempfile::TempDir, Destination) {
        let tmp = tempfile::tempdir().unwrap();
        let d = Destination::local(tmp.path().to_path_buf());
        (tmp, d)
    }

    #[test]
    fn a_held_lease_is_refused_until_released() {
        let (_tmp, d) = dest();
        let opts = LeaseOptions { ttl: Duration::from_secs(60), wait: Duration::ZERO };
        let lease = acquire(&d, opts, &StopFlag::default()).unwrap();
        lease.check().unwrap();
        match acquire(&d, opts, &StopFlag::default()) {
            Err(Error::Busy { holder, .. }) => assert!(holder.contains(&std::process::id().to_string())),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a held lease was taken twice"),
        }
        lease.release();
        let again = acquire(&d, opts, &StopFlag::default()).unwrap();
        assert_eq!(current(&d).unwrap().unwrap().generation, 3);
        drop(again);
        assert!(current(&d).unwrap().unwrap().released);
    }

    #[test]
    fn an_expired_lease_or_one_of_a_dead_process_is_taken() {
        let (_tmp, d) = dest();
        let mut foreign = record("elsewhere:1:0", 1, Duration::from_secs(3600), false);
        foreign.host = "another-host".into();
        assert!(write(&d, &foreign).unwrap());
        let opts = LeaseOptions { ttl: Duration::from_secs(60), wait: Duration::ZERO };
        assert!(matches!(acquire(&d, opts, &StopFlag::default()), Err(Error::Busy { .. })));

        // Expired: taken.
        let mut expired = foreign.clone();
        (expired.generation, expired.expires_at_ms) = (2, now_ms() - 1);
        assert!(write(&d, &expired).unwrap());
        drop(acquire(&d, opts, &StopFlag::default()).unwrap());

        // A live lease of a process of this host that is gone (a pid that cannot exist now
        // with that start time): taken at once.
        let latest = current(&d).unwrap().unwrap().generation;
        let mut dead = record("here:dead:0", latest + 1, Duration::from_secs(3600), false);
        dead.pid_start = Some(u64::MAX);
        assert!(write(&d, &dead).unwrap());
        drop(acquire(&d, opts, &StopFlag::default()).unwrap());
        // A live one of this very process is not.
        let latest = current(&d).unwrap().unwrap().generation;
        assert!(write(&d, &record("here:live:0", latest + 1, Duration::from_secs(3600), false)).unwrap());
        assert!(matches!(acquire(&d, opts, &StopFlag::default()), Err(Error::Busy { .. })));
    }
}
