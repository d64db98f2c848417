//! Parsing a window's objects on the rayon pool: groups of consecutive small objects into shared
//! builders, newline-aligned chunks of larger ones in parallel, and objects larger than a window
//! streamed in blocks.

use rayon::prelude::*;

use crate::access_log::RejectReason;
use crate::error::Error;
use crate::parquet_sink::PartitionedWriter;
use crate::pipeline::options::ConvertOptions;
use crate::pipeline::stats::tally_chunks;
use crate::pipeline::windows::encode;
use crate::report::Report;
use crate::rows::builder::{ChunkOutput, ParseOptions, Rows, parse_chunk, reject_only};
use crate::rows::lines::chunks;
use crate::rows::lines::lines_in;
use crate::source::read::Capped;
use crate::source::read::fill;
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
    let chunks = chunks(&bytes, opts.chunk_bytes)
        .into_par_iter()
        .map(|c| parse_chunk(&bytes[c.range], c.first_line, &o.name, parse))
        .collect();
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
/// rows (16 groups of 512 KiB cost 0.15-0.3 s more CPU per GiB, see docs/performance.md).
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
        let counts = rows.parse(&bytes, 1, &o.name, opts.parse_options(o, &bytes));
        let decoded = bytes.len() as u64;
        let name = o.name.clone();
        outs.push(ObjectOutput { name, missing: None, deferred: None, stored, decoded, chunks: vec![counts] });
    }
    Ok(GroupOutput { objects: outs, batches: rows.finish() })
}

/// Converts an object too large to hold whole (or of unknown size: standard input, a pipe, a
/// compressed object whose content is more than [`whole_cap`]): newline-aligned blocks of about a
/// window each are read, parsed in parallel and encoded in turn, line numbers running on across
/// blocks. Memory stays at a few blocks whatever the object's size or compression ratio. A line
/// longer than a block is rejected as it streams past, keeping only its head. Past
/// `--max-object-bytes` of content, the rest of the object is one reject (`too_large`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn stream_object(
    o: &SourceObject,
    rt: Option<&tokio::runtime::Runtime>,
    pool: &rayon::ThreadPool,
    opts: &ConvertOptions,
    data: &mut PartitionedWriter,
    rejects: &mut PartitionedWriter,
    report: &mut Report,
) -> Result<(), Error> {
    let block = (opts.window_bytes as usize).max(2 * opts.max_line_bytes + 1);
    let mut raw = o.open_stream(rt, opts.store.retry)?;
    let mut reader = Capped { inner: &mut *raw, left: opts.max_object_bytes, read: 0 };
    let mut buf: Vec<u8> = Vec::with_capacity(block);
    let mut line = 1u64;
    let mut parse = opts.parse_options(o, &[]);
    let reject = |report: &mut Report, data: &mut PartitionedWriter, rejects: &mut PartitionedWriter, out| {
        tally_chunks(report, &o.name, std::slice::from_ref(&out));
        encode(std::iter::once(out), pool, data, rejects)
    };
    report.objects_read += 1;
    report.bytes_read += o.size;
    loop {
        let eof = fill(&mut reader, &mut buf, block, o)?;
        // Cut off by the cap, the object goes on: the lines before its last newline are parsed,
        // and the partial line with what follows is one reject.
        let rest = if eof { reader.rest(opts.max_line_bytes, o)? } else { Vec::new() };
        let cut = if !rest.is_empty() {
            memchr::memrchr(b'\n', &buf).map_or(0, |i| i + 1)
        } else if eof {
            buf.len()
        } else if let Some(i) = memchr::memrchr(b'\n', &buf) {
            i + 1
        } else {
            // A whole block without a newline: one line longer than the limit. Keep its head,
            // read past the rest, and go on after its newline.
            let head = buf[..opts.max_line_bytes].to_vec();
            let (mut len, mut last) = (buf.len(), buf.last().copied());
            buf.clear();
            let ended = loop {
                if fill(&mut reader, &mut buf, block, o)? && buf.is_empty() {
                    break false;
                }
                match memchr::memchr(b'\n', &buf) {
                    Some(i) => {
                        len += i;
                        last = if i > 0 { Some(buf[i - 1]) } else { last };
                        buf.drain(..=i);
                        break true;
                    }
                    None => {
                        len += buf.len();
                        last = buf.last().copied().or(last);
                        buf.clear();
                    }
                }
            };
            // As for every line, a `\r` before the line end is not part of the line.
            let len = len - usize::from(last == Some(b'\r'));
            let reason = RejectReason::TooLong { len, limit: opts.max_line_bytes };
            let out = reject_only(&o.name, line, reason, &head);
            line += 1;
            if !ended {
                let rest = reader.rest(opts.max_line_bytes, o)?;
                report.bytes_decompressed += reader.read;
                reject(report, data, rejects, out)?;
                if !rest.is_empty() {
                    let reason = RejectReason::TooLarge { limit: opts.max_object_bytes };
                    reject(report, data, rejects, reject_only(&o.name, line, reason, &rest))?;
                }
                break;
            }
            reject(report, data, rejects, out)?;
            continue;
        };
        let piece = &buf[..cut];
        if parse.key_days.is_none() {
            // An undated object's bound comes from its first record, in its first piece that has one.
            parse = opts.parse_options(o, piece);
        }
        let outs = parse_piece(piece, line, &o.name, parse, pool, opts);
        line += lines_in(piece);
        tally_chunks(report, &o.name, &outs);
        encode(outs.into_iter(), pool, data, rejects)?;
        buf.drain(..cut);
        if eof {
            report.bytes_decompressed += reader.read;
            if !rest.is_empty() {
                let mut head = std::mem::take(&mut buf);
                head.extend_from_slice(&rest);
                head.truncate(opts.max_line_bytes);
                let reason = RejectReason::TooLarge { limit: opts.max_object_bytes };
                reject(report, data, rejects, reject_only(&o.name, line, reason, &head))?;
            }
            break;
        }
    }
    if o.is_stdin() {
        // Standard input and pipes have no size until read: their bytes are counted as read.
        report.bytes_read += reader.read;
    }
    Ok(())
}

/// Parses a newline-aligned piece of a streamed object, its chunks in parallel.
fn parse_piece(
    piece: &[u8],
    line: u64,
    name: &str,
    parse: ParseOptions,
    pool: &rayon::ThreadPool,
    opts: &ConvertOptions,
) -> Vec<ChunkOutput> {
    pool.install(|| {
        chunks(piece, opts.chunk_bytes)
            .into_par_iter()
            .map(|c| parse_chunk(&piece[c.range], line + c.first_line - 1, name, parse))
            .collect()
    })
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
