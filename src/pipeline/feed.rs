//! New objects drawn from the listing as the batches need them, checked against the ledger and
//! against what this run already took, and cut into windows.

use crate::commit::ledger::{Ledger, Verdict};
use crate::error::Error;
use crate::pipeline::options::alone;
use crate::pipeline::prefetch::Fetcher;
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
    /// Objects not converted because the same log delivery was converted from another place
    /// (by an earlier run, or earlier in this one): `(name, converted as)`.
    pub(crate) elsewhere: Vec<(String, String)>,
    /// The log deliveries this run took, by file name: `(name, size)`.
    pub(crate) deliveries: std::collections::HashMap<String, (String, u64)>,
    /// New objects the listing has handed over and that are not drawn yet, in listing order.
    pub(crate) ahead: std::collections::VecDeque<SourceObject>,
    /// New objects found so far, and their stored bytes (for the progress bar).
    pub(crate) found: (u64, u64),
    /// Only objects of this unit: the first of another is handed back to the listing, and the
    /// feed ends there.
    pub(crate) unit: Option<String>,
    /// What else was converted: the legacy DEST-wide ledger, and the other units of the same day
    /// (for log deliveries converted from another place).
    pub(crate) known: Known<'a>,
    /// The run's fetching: its request cap, and downloads started across batches.
    pub(crate) fetcher: std::sync::Arc<Fetcher>,
    /// The feed has met another unit's object: it ends there.
    pub(crate) at_unit_end: bool,
}

/// The ledgers besides a unit's own that say whether an object was converted.
#[derive(Default, Clone, Copy)]
pub(crate) struct Known<'a> {
    /// The ledger of a DEST written before per-unit state, until it is migrated.
    pub(crate) legacy: Option<&'a Ledger>,
    /// The ledgers of the other units of the unit's day.
    pub(crate) neighbours: &'a [(String, Ledger)],
}

impl<'a> Feed<'a> {
    pub(crate) fn new(listing: &'a mut Listing, fetcher: std::sync::Arc<Fetcher>) -> Self {
        let (replay, seen) = (Default::default(), Default::default());
        let (ahead, changed, elsewhere, deliveries) = (Default::default(), Vec::new(), Vec::new(), Default::default());
        Feed {
            listing,
            replay,
            peeked: None,
            retry_quarantined: false,
            seen,
            skipped: 0,
            changed,
            elsewhere,
            deliveries,
            ahead,
            found: (0, 0),
            unit: None,
            known: Known::default(),
            fetcher,
            at_unit_end: false,
        }
    }

    /// What the run does with `o`, from `ledger` (its unit's) and the other ledgers known.
    pub(crate) fn verdict(&self, o: &SourceObject, ledger: &Ledger) -> Verdict {
        if let Some(legacy) = self.known.legacy {
            match legacy.classify(o, self.retry_quarantined) {
                Verdict::New => {}
                other => return other,
            }
        }
        match ledger.classify(o, self.retry_quarantined) {
            Verdict::New => match self.known.neighbours.iter().find_map(|(_, n)| n.converted_elsewhere(o)) {
                Some(first) => Verdict::Elsewhere(first.to_string()),
                None => Verdict::New,
            },
            other => other,
        }
    }

    /// `o` if it belongs to this feed's unit; otherwise it goes back to the listing.
    fn of_unit(&mut self, o: SourceObject) -> Option<SourceObject> {
        match &self.unit {
            Some(u) if *u != crate::source::unit::unit_of(&o.name) => {
                self.listing.unread(o);
                self.at_unit_end = true;
                None
            }
            _ => Some(o),
        }
    }

    /// The next object `ledger` does not hold, waiting for the listing if need be (`wait`; else
    /// `None` also when the listing has not handed over more yet).
    pub(crate) fn next_new(&mut self, ledger: &Ledger, wait: bool) -> Result<Option<SourceObject>, Error> {
        if let Some(o) = self.replay.pop_front().or_else(|| self.peeked.take()).or_else(|| self.ahead.pop_front()) {
            return Ok(Some(o));
        }
        let next = |listing: &mut Listing| if wait { listing.next_object() } else { listing.ready_object() };
        while let Some(o) = next(self.listing)? {
            let Some(o) = self.of_unit(o) else { return Ok(None) };
            if let Some(o) = self.classify(o, ledger) {
                return Ok(Some(o));
            }
        }
        Ok(None)
    }

    /// Classifies what the listing has handed over already, without waiting for more: the new
    /// objects wait in `ahead`, and `found` counts them (the progress bar's total).
    pub(crate) fn look_ahead(&mut self, ledger: &Ledger) -> Result<(), Error> {
        while let Some(o) = self.listing.ready_object()? {
            let Some(o) = self.of_unit(o) else { return Ok(()) };
            if let Some(o) = self.classify(o, ledger) {
                self.ahead.push_back(o);
            }
        }
        Ok(())
    }

    /// `o` if it is new: not held by `ledger`, nor taken by this run already.
    fn classify(&mut self, o: SourceObject, ledger: &Ledger) -> Option<SourceObject> {
        if !o.is_stdin() && !self.seen.insert(o.name.clone()) {
            self.skipped += 1;
            return None;
        }
        match self.verdict(&o, ledger) {
            Verdict::New => {
                if let Some(d) = crate::source::delivery_name(&o.name) {
                    match self.deliveries.get(d) {
                        Some((first, size)) if *size == o.size => {
                            let first = first.clone();
                            self.converted_elsewhere(o, first);
                            return None;
                        }
                        _ => {
                            self.deliveries.insert(d.to_string(), (o.name.clone(), o.size));
                        }
                    }
                }
                self.found = (self.found.0 + 1, self.found.1 + o.size);
                return Some(o);
            }
            Verdict::Elsewhere(first) => self.converted_elsewhere(o, first),
            Verdict::Skip => self.skipped += 1,
            Verdict::Changed => {
                tracing::warn!(object = o.name, "changed since it was converted; not converted again");
                self.changed.push(o.name);
            }
        }
        None
    }

    fn converted_elsewhere(&mut self, o: SourceObject, first: String) {
        let why = "the same log delivery was converted from another place; not converted again";
        tracing::warn!(object = o.name, converted_as = first, "{why}");
        self.elsewhere.push((o.name, first));
    }

    /// `o`, found new, turned out to be converted already (by a run that finished meanwhile).
    pub(crate) fn skip_found(&mut self, o: &SourceObject) {
        self.skipped += 1;
        self.found = (self.found.0 - 1, self.found.1 - o.size);
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
}

impl BatchWindows<'_, '_> {
    /// Whether the objects after this batch are known: the listing has reached the next unit's,
    /// or the batch is full.
    pub(crate) fn next_is_known(&self) -> bool {
        self.feed.at_unit_end || self.taken_bytes >= self.batch_bytes
    }

    /// The objects the next batch will most likely draw first, as far as the listing has handed
    /// them over: objects of the next unit (if this run takes it), remote ones or local files
    /// (`remote`), up to `bytes` (the object that crosses it included, as a window takes it),
    /// none to be streamed. None when this batch's unit had objects converted already: then the
    /// next ones may be too, and are not worth a request or a parse before their ledger says
    /// they are new. Also whether they end where a window would end anyway (the unit's end, an
    /// object to be streamed, the listing's end, or none worth it), not for lack of `bytes` or of
    /// objects handed over.
    pub(crate) fn likely_next(
        &self,
        selection: &crate::source::unit::Selection,
        bytes: u64,
        remote: bool,
    ) -> (Vec<SourceObject>, bool) {
        let feed = &*self.feed;
        if feed.skipped > 0 || !feed.changed.is_empty() || !feed.elsewhere.is_empty() {
            return (Vec::new(), true);
        }
        // At a unit's end the next objects are the listing's; in a full batch, those the feed
        // holds come first.
        let held = (!feed.at_unit_end).then(|| feed.peeked.iter().chain(&feed.ahead));
        let (mut before, mut unit, mut cut) = (0, None, false);
        let next = held
            .into_iter()
            .flatten()
            .chain(feed.listing.ready())
            .take_while(|o| {
                let under = before < bytes;
                before += o.size;
                let of = crate::source::unit::unit_of(&o.name);
                // One unit's: the one after it has its own ledger, not read yet.
                let same = unit.get_or_insert_with(|| of.clone()) == &of;
                let kind = o.is_remote() == remote && !o.is_stdin();
                let takes = under && same && kind && !alone(o, self.window_bytes) && selection.takes(&of);
                cut = !takes && under;
                takes
            })
            .cloned()
            .collect();
        (next, cut || feed.listing.is_done())
    }

    /// The first `n` windows of local files the next batch will most likely draw
    /// ([`likely_next`]), as far as the listing has handed them over, cut as
    /// [`next_window`] cuts them; and whether all `n` (or all there are) are among them.
    ///
    /// [`likely_next`]: BatchWindows::likely_next
    /// [`next_window`]: BatchWindows::next_window
    pub(crate) fn likely_windows(
        &self,
        selection: &crate::source::unit::Selection,
        n: usize,
    ) -> (Vec<Vec<SourceObject>>, bool) {
        let bytes = self.window_bytes.min(self.batch_bytes);
        let (objects, ended) = self.likely_next(selection, bytes.saturating_mul(n as u64), false);
        let (mut windows, mut window, mut size) = (Vec::new(), Vec::new(), 0);
        for o in objects {
            size += o.size;
            window.push(o);
            if size >= bytes {
                windows.push(std::mem::take(&mut window));
                size = 0;
            }
        }
        if ended && !window.is_empty() {
            windows.push(window);
        }
        windows.truncate(n);
        let all = ended || windows.len() == n;
        (windows, all)
    }

    /// The next window, waiting for the listing if need be (`wait`); without waiting, what the
    /// listing has handed over already (a window cut short, or `None`).
    pub(crate) fn next_window(&mut self, wait: bool) -> Result<Option<Vec<SourceObject>>, Error> {
        if self.taken_bytes >= self.batch_bytes {
            return Ok(None);
        }
        let (mut window, mut size) = (Vec::new(), 0u64);
        while let Some(o) = self.feed.next_new(self.ledger, wait)? {
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
