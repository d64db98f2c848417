//! Stopping a run from outside: a flag that a signal handler (or another thread) sets, and that
//! the run looks at in its safe points (between windows, between blocks of a streamed object,
//! while it waits for the lease). A run that sees it drops the batch it is parsing (nothing of it
//! is committed) and ends with [`Error::Stopped`]; a batch already being staged or committed is
//! finished first.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::Error;

/// Asks a run to stop at its next safe point.
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<AtomicUsize>);

impl StopFlag {
    /// Asks the run to stop, for `signal` (its number: the run exits with 128 + it).
    pub fn request(&self, signal: i32) {
        self.0.store(signal.max(1) as usize, Ordering::SeqCst);
    }

    /// The atomic a signal handler stores the signal number in (`signal_hook::flag::register_usize`).
    pub fn atomic(&self) -> Arc<AtomicUsize> {
        self.0.clone()
    }

    /// `Err(Error::Stopped)` once a stop was asked for.
    pub(crate) fn check(&self) -> Result<(), Error> {
        match self.0.load(Ordering::SeqCst) {
            0 => Ok(()),
            signal => Err(Error::Stopped { signal: signal as i32 }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StopFlag;

    #[test]
    fn a_stop_is_seen_by_every_clone() {
        let stop = StopFlag::default();
        let seen_by_the_run = stop.clone();
        assert!(seen_by_the_run.check().is_ok());
        stop.request(15);
        let e = seen_by_the_run.check().unwrap_err();
        assert_eq!((e.exit_code(), e.to_string().contains("SIGTERM")), (143, true), "{e}");
    }
}
