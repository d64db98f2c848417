//! The progress bar on stderr, when it is a terminal: stored bytes and objects converted,
//! against the new objects found so far; a total and an ETA once the listing has ended.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

/// While the listing goes on, the total is what was found so far: no ETA, which would be a guess
/// from a total that is still growing; nor before anything was converted (no rate yet).
const LISTING: &str = "{wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {msg}";
const LISTED: &str = "{wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}";

pub(crate) struct Progress {
    bar: ProgressBar,
    converted: AtomicU64,
    found: AtomicU64,
    listed: AtomicBool,
    eta: AtomicBool,
}

impl Progress {
    /// A bar drawn on stderr when `show`; otherwise one that only counts.
    pub(crate) fn new(show: bool) -> Self {
        let bar = if show { ProgressBar::new(0) } else { ProgressBar::hidden() };
        bar.set_style(ProgressStyle::with_template(LISTING).expect("the template is valid"));
        let (converted, found) = (AtomicU64::new(0), AtomicU64::new(0));
        Progress { bar, converted, found, listed: AtomicBool::new(false), eta: AtomicBool::new(false) }
    }

    /// The new objects found so far and their stored bytes, and whether the listing has ended.
    pub(crate) fn found(&self, objects: u64, bytes: u64, listing_done: bool) {
        self.bar.set_length(bytes);
        self.found.store(objects, Ordering::Relaxed);
        if listing_done {
            self.listed.store(true, Ordering::Relaxed);
        }
        self.show_counts();
    }

    /// Objects converted (written into the batch's files), and their stored bytes.
    pub(crate) fn converted(&self, objects: u64, bytes: u64) {
        self.converted.fetch_add(objects, Ordering::Relaxed);
        self.bar.inc(bytes);
        self.show_counts();
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn show_counts(&self) {
        let (done, found) = (self.converted.load(Ordering::Relaxed), self.found.load(Ordering::Relaxed));
        let listed = self.listed.load(Ordering::Relaxed);
        if listed && done > 0 && !self.eta.swap(true, Ordering::Relaxed) {
            self.bar.set_style(ProgressStyle::with_template(LISTED).expect("the template is valid"));
        }
        let more = if listed { "" } else { "+" };
        self.bar.set_message(format!("{done}/{found}{more} objects"));
    }
}

#[cfg(test)]
mod tests {
    use super::Progress;

    /// The total grows while the listing goes on (marked `+`), and a run that converts every new
    /// object it found ends at 100%, with the object count complete.
    #[test]
    fn the_bar_ends_full_with_every_object_counted() {
        let p = Progress::new(false);
        p.found(2, 100, false);
        p.converted(1, 40);
        assert_eq!((p.bar.position(), p.bar.length(), p.bar.message()), (40, Some(100), "1/2+ objects".into()));
        p.found(3, 150, true);
        p.converted(2, 110);
        assert_eq!((p.bar.position(), p.bar.length(), p.bar.message()), (150, Some(150), "3/3 objects".into()));
    }
}
