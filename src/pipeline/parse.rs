//! Parsing a window's objects on the rayon pool: groups of consecutive small objects into shared
//! builders, newline-aligned chunks of larger ones in parallel, and objects larger than a window
//! streamed in blocks.

use rayon::prelude::*;

use crate::error::Error;
use crate::pipeline::options::ConvertOptions;
use crate::rows::builder::{ChunkOutput, ParseOptions, Rows, parse_chunk, parse_frame};
use crate::rows::lines::{Frame, LineFramer, chunks};
use crate::source::{Fetched, SourceObject};

pub(crate) struct ObjectOutput {
    pub(crate) name: String,
    /// Listed but gone when fetched: reported, not fatal.
    pub(crate) missing: Option<String>,
    /// Its content is more than [`ConvertOptions::whole_cap`]: not parsed here, streamed after
    /// its window is written.
    pub(crate) deferred: Option<SourceObject>,
    pub(crate) stored: u64,
    pub(crate) decoded: u64,
    pub(crate) chunks: Vec<ChunkOutput>,
}

fn process_object(o: &SourceObject, fetched: Fetched, opts: &ConvertOptions) -> Result<ObjectOutput, Error> {
    if matches!(fetched, Fetched::Missing) {
        return Ok(ObjectOutput::missing(o));
    }
    let (stored, Some(bytes)) = o.read(fetched, opts.whole_cap())? else {
        return Ok(ObjectOutput::deferred(o));
    };
    let parse = opts.parse_options(o, &bytes);
    let mut chunks = Vec::new();
    LineFramer::frame_whole(&bytes, opts.max_line_bytes, |frame| {
        chunks.extend(parse_in_chunks(frame, &o.name, parse, opts.chunk_bytes));
    });
    Ok(ObjectOutput {
        name: o.name.clone(),
        missing: None,
        deferred: None,
        stored,
        decoded: bytes.len() as u64,
        chunks,
    })
}

impl ObjectOutput {
    fn empty(o: &SourceObject) -> Self {
        ObjectOutput { name: o.name.clone(), missing: None, deferred: None, stored: 0, decoded: 0, chunks: Vec::new() }
    }

    fn missing(o: &SourceObject) -> Self {
        ObjectOutput { missing: Some(o.name.clone()), ..ObjectOutput::empty(o) }
    }

    fn deferred(o: &SourceObject) -> Self {
        ObjectOutput { deferred: Some(o.clone()), ..ObjectOutput::empty(o) }
    }
}

/// What a group of objects produced: each object's counts, and the group's batches.
pub(crate) struct GroupOutput {
    pub(crate) objects: Vec<ObjectOutput>,
    pub(crate) batches: ChunkOutput,
}

/// Stored bytes of consecutive small objects parsed together on one thread. A window holds 4 of
/// them: enough to keep 2 cores busy, and few enough that each makes batches of a few thousand
/// rows (smaller groups cost measurably more CPU: docs/performance.md).
pub(crate) fn group_bytes(opts: &ConvertOptions) -> u64 {
    (opts.window_bytes / 4).clamp(1, opts.chunk_bytes as u64)
}

/// Cuts a window of objects of these sizes into groups of consecutive objects: an object of at
/// least `target` bytes alone (its chunks are parsed in parallel), smaller ones together until a
/// group reaches `target`.
pub(crate) fn groups(sizes: &[u64], target: u64) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let (mut start, mut size) = (0, 0u64);
    for (i, &o) in sizes.iter().enumerate() {
        if o >= target && i > start {
            groups.push(start..i);
            (start, size) = (i, 0);
        }
        size += o;
        if size >= target {
            groups.push(start..i + 1);
            (start, size) = (i + 1, 0);
        }
    }
    if start < sizes.len() {
        groups.push(start..sizes.len());
    }
    groups
}

/// Parses a window's objects (`fetched`, in order) in groups ([`groups`]) in parallel on the
/// current pool.
pub(crate) fn parse_window(
    window: &[SourceObject],
    fetched: Vec<Fetched>,
    opts: &ConvertOptions,
) -> Result<Vec<GroupOutput>, Error> {
    let sizes: Vec<u64> = window.iter().map(|o| o.size).collect();
    let mut fetched = fetched.into_iter();
    let work: Vec<_> = groups(&sizes, group_bytes(opts))
        .into_iter()
        .map(|g| (&window[g.clone()], fetched.by_ref().take(g.len()).collect::<Vec<_>>()))
        .collect();
    work.into_par_iter().map(|(objects, f)| process_group(objects, f, opts)).collect()
}

/// Parses a group of objects. A lone object is cut into chunks parsed in parallel; several small
/// ones are parsed one after the other into the same builders, in order.
pub(crate) fn process_group(
    objects: &[SourceObject],
    fetched: Vec<Fetched>,
    opts: &ConvertOptions,
) -> Result<GroupOutput, Error> {
    if let ([o], [_]) = (objects, fetched.as_slice()) {
        let f = fetched.into_iter().next().expect("one fetched");
        return Ok(GroupOutput { objects: vec![process_object(o, f, opts)?], batches: ChunkOutput::default() });
    }
    let mut rows = Rows::with_capacity(objects.iter().map(|o| o.size as usize).sum());
    let mut outs = Vec::with_capacity(objects.len());
    // The group's rows stay in its builders until its window is encoded: its decompressed bytes
    // are held to the cap together, not each object's.
    let mut budget = opts.whole_cap();
    for (o, f) in objects.iter().zip(fetched) {
        if matches!(f, Fetched::Missing) {
            outs.push(ObjectOutput::missing(o));
            continue;
        }
        let (stored, Some(bytes)) = o.read(f, budget)? else {
            outs.push(ObjectOutput::deferred(o));
            continue;
        };
        budget -= bytes.len();
        let parse = opts.parse_options(o, &bytes);
        let mut counts = ChunkOutput::default();
        LineFramer::frame_whole(&bytes, opts.max_line_bytes, |frame| {
            counts.add_counts(rows.frame(frame, &o.name, parse));
        });
        let decoded = bytes.len() as u64;
        let name = o.name.clone();
        outs.push(ObjectOutput { name, missing: None, deferred: None, stored, decoded, chunks: vec![counts] });
    }
    Ok(GroupOutput { objects: outs, batches: rows.finish() })
}

/// Parses a frame of an object on the current pool: a piece's chunks in parallel, or a line too
/// long to hold.
pub(crate) fn parse_in_chunks(
    frame: Frame<'_>,
    name: &str,
    parse: ParseOptions,
    chunk_bytes: usize,
) -> Vec<ChunkOutput> {
    match frame {
        Frame::Lines { bytes, first_line } => chunks(bytes, chunk_bytes)
            .into_par_iter()
            .map(|c| parse_chunk(&bytes[c.range], first_line + c.first_line - 1, name, parse))
            .collect(),
        long => vec![parse_frame(long, name, parse)],
    }
}

#[cfg(test)]
mod tests {
    use super::groups;

    #[test]
    fn groups_cover_the_window_in_order_and_a_large_object_is_alone() {
        assert_eq!(groups(&[], 10), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(groups(&[3, 3, 3, 3, 3], 10), vec![0..4, 4..5]);
        assert_eq!(groups(&[3, 12, 3, 10, 2, 2], 10), vec![0..1, 1..2, 2..3, 3..4, 4..6]);
        assert_eq!(groups(&[0, 0, 0], 10), vec![0..3]);
        assert_eq!(groups(&[9, 1, 9], 10), vec![0..2, 2..3]);
    }
}
