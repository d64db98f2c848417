//! New objects drawn from the listing as the batches need them, checked against the ledger and
//! against what this run already took, and cut into windows.

use crate::commit::ledger::{Ledger, Verdict};
use crate::error::Error;
use crate::pipeline::options::alone;
use crate::pipeline::stats::BatchTally;
use crate::source::SourceObject;
use crate::source::listing::Listing;

/// New objects drawn from the listing as the batches need them, each checked against the ledger
/// and against the names this run already took (a source named twice is read once).
pub(crate) struct Feed<'a> {
    pub(crate) listing: &'a mut Listing,
    /// Objects drawn and found new, to be drawn again first: those of a batch tried again
    /// without an object that could not be read.
    pub(crate) replay: std::collections::VecDeque<SourceObject>,
    /// An object drawn and found new but not yet placed in a window.
    pub(crate) peeked: Option<SourceObject>,
    pub(crate) retry_quarantined: bool,
    pub(crate) seen: std::collections::HashSet<String>,
    pub(crate) skipped: u64,
    pub(crate) changed: Vec<String>,
}

impl<'a> Feed<'a> {
    pub(crate) fn new(listing: &'a mut Listing) -> Self {
        let (replay, seen) = (Default::default(), Default::default());
        Feed { listing, replay, peeked: None, retry_quarantined: false, seen, skipped: 0, changed: Vec::new() }
    }

    /// The next object `ledger` does not hold, waiting for the listing if need be.
    pub(crate) fn next_new(&mut self, ledger: &Ledger) -> Result<Option<SourceObject>, Error> {
        if let Some(o) = self.replay.pop_front().or_else(|| self.peeked.take()) {
            return Ok(Some(o));
        }
        while let Some(o) = self.listing.next_object()? {
            if !o.is_stdin() && !self.seen.insert(o.name.clone()) {
                self.skipped += 1;
                continue;
            }
            match ledger.classify(&o, self.retry_quarantined) {
                Verdict::New => return Ok(Some(o)),
                Verdict::Skip => self.skipped += 1,
                Verdict::Changed => {
                    tracing::warn!(object = o.name, "changed since it was converted; not converted again");
                    self.changed.push(o.name);
                }
            }
        }
        Ok(None)
    }
}

/// The windows of one batch: consecutive new objects of about `window_bytes` stored bytes each (an
/// object larger than that is a window of its own, and is streamed), until the batch holds about
/// `batch_bytes`.
pub(crate) struct BatchWindows<'f, 'a> {
    pub(crate) feed: &'f mut Feed<'a>,
    pub(crate) ledger: &'f Ledger,
    pub(crate) window_bytes: u64,
    pub(crate) batch_bytes: u64,
    pub(crate) taken: Vec<SourceObject>,
    pub(crate) taken_bytes: u64,
    /// What the objects taken gave, for the batch's commit record and the run's stats.
    pub(crate) tally: BatchTally,
    /// Objects the run read before this batch (for the progress bar).
    pub(crate) objects_before: u64,
}

impl BatchWindows<'_, '_> {
    pub(crate) fn next_window(&mut self) -> Result<Option<Vec<SourceObject>>, Error> {
        if self.taken_bytes >= self.batch_bytes {
            return Ok(None);
        }
        let (mut window, mut size) = (Vec::new(), 0u64);
        while let Some(o) = self.feed.next_new(self.ledger)? {
            let alone = alone(&o, self.window_bytes);
            if alone && !window.is_empty() {
                self.feed.peeked = Some(o);
                break;
            }
            size += o.size;
            window.push(o);
            if alone || size >= self.window_bytes || self.taken_bytes + size >= self.batch_bytes {
                break;
            }
        }
        if window.is_empty() {
            return Ok(None);
        }
        self.taken.extend(window.iter().cloned());
        self.taken_bytes += size;
        Ok(Some(window))
    }
}
