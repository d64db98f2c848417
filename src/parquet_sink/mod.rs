//! Writing record batches as Parquet files: fan-out by partition folder, roll at a target size,
//! in a staging folder out of the table's sight.
//!
//! A [`PartitionedWriter`] keeps one open file per partition folder (`dt=2024-01-15`, or `""` for
//! an unpartitioned dataset), opened lazily on the first batch so no empty file is ever written,
//! and rolled when it reaches the target size. Files are written under a staging folder outside the
//! table location, through [`direct`] (around the page cache, by a writer thread per file), and
//! each is fsynced when closed; [`crate::commit::destination`] publishes them. File
//! names come from the run's identity and a per-folder sequence number, never from the clock, so
//! the same input gives the same names.
//!
//! Encoding is the most expensive stage, so the columns of each batch are encoded (dictionary,
//! pages, ZSTD) in parallel on the caller's rayon pool, one encoder per column, and the finished
//! column chunks are appended to the file in column order. String columns are encoded by hand,
//! much more cheaply than by the crate's generic writer: by [`dictionary`] where a dictionary is
//! enabled (the few-valued columns most of an access log is), by [`plain`] where it is not or
//! was given up; the other columns by the crate's `ArrowColumnWriter`.

mod dictionary;
pub(crate) mod direct;
pub mod naming;
mod pages;
mod plain;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, SchemaRef};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::basic::{Compression, ZstdLevel};
use parquet::column::writer::ColumnCloseResult;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnDescPtr, ColumnPath};
use rayon::prelude::*;

use crate::error::Error;
use crate::rows::partition::PartitionKey;
use crate::schema::{FIELDS, REJECT_FIELDS};
use dictionary::{DictionaryColumn, Written};
use direct::FileOut;
use pages::PageLimits;
use plain::PlainColumn;

/// How Parquet files are written.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// Roll to a new file once a file's finished row groups reach this many bytes (a file
    /// overshoots by at most one row group).
    pub target_file_bytes: u64,
    /// Rows per row group.
    pub row_group_rows: usize,
    pub zstd_level: i32,
    /// Open files at most; the least recently written one is closed beyond that.
    pub max_open_files: usize,
    /// The open row groups of all open files together hold at most about this many bytes of
    /// encoder state; beyond that, the least recently written file's row group is closed early.
    /// Without it, the partial row groups of days that have ended stay in memory until the end
    /// of the batch, and a longer input leaves more of them behind.
    pub max_buffered_bytes: usize,
    /// Write files around the page cache where the file system allows it (see [`direct`]).
    pub direct_io: bool,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            target_file_bytes: 256 << 20,
            row_group_rows: 128 * 1024,
            zstd_level: 1,
            max_open_files: 64,
            max_buffered_bytes: 48 << 20,
            direct_io: true,
        }
    }
}

/// A column chunk's dictionary is given up for plain values once it holds this many bytes (the
/// parquet crate's default is 1 MiB). Whether `key`, `remoteip` or `useragent` repeat depends on
/// the bucket; a column whose values keep being new gives its dictionary up after a few thousand
/// values instead of hashing half a row group first, and one whose values repeat keeps it.
const DICTIONARY_BYTES: usize = 64 << 10;

fn writer_properties(opts: &SinkOptions) -> Result<WriterProperties, Error> {
    let level = ZstdLevel::try_new(opts.zstd_level)
        .map_err(|e| Error::Usage(format!("--zstd-level {}: {e}", opts.zstd_level)))?;
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(opts.row_group_rows.max(1)))
        // Chunk statistics prune row groups; page indexes are left out because JVM readers
        // (Spark, Trino/Athena) have read parquet-rs page indexes as zero rows (arrow-rs #10316).
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_offset_index_disabled(true)
        .set_dictionary_page_size_limit(DICTIONARY_BYTES)
        .set_created_by(format!("s3logs {}", env!("CARGO_PKG_VERSION")));
    // The field table says which columns' values are nearly all distinct (the rejects' share
    // their names: `source_line`).
    for f in FIELDS.iter().chain(REJECT_FIELDS).filter(|f| !f.dictionary()) {
        b = b.set_column_dictionary_enabled(ColumnPath::from(f.name), false);
    }
    Ok(b.build())
}

/// A file that was written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WrittenFile {
    /// Path relative to the dataset root, such as `dt=2024-01-15/part-0123abcd-00000.parquet`.
    pub path: String,
    /// The partition value (`2024-01-15`), empty for an unpartitioned dataset.
    pub dt: String,
    pub rows: u64,
    pub bytes: u64,
}

/// How a column is encoded by hand, and at which ZSTD level.
#[derive(Debug, Clone, Copy)]
enum ByHand {
    /// [`dictionary`], until its values turn out to be too many.
    Dictionary(ZstdLevel, PageLimits),
    /// [`plain`].
    Plain(ZstdLevel, PageLimits),
}

/// How each column is encoded by hand: every ZSTD-compressed Utf8 column, with a dictionary where
/// the properties enable one. Other columns are left to the parquet crate's writer.
fn hand_encoded(schema: &SchemaRef, props: &WriterProperties) -> Vec<Option<ByHand>> {
    schema
        .fields()
        .iter()
        .map(|f| {
            let path = ColumnPath::from(f.name().as_str());
            match (f.data_type(), props.dictionary_enabled(&path), props.compression(&path)) {
                (DataType::Utf8, true, Compression::ZSTD(level)) => {
                    Some(ByHand::Dictionary(level, PageLimits::of(props, &path)))
                }
                (DataType::Utf8, false, Compression::ZSTD(level)) => {
                    Some(ByHand::Plain(level, PageLimits::of(props, &path)))
                }
                _ => None,
            }
        })
        .collect()
}

/// What encodes one column of the open row group.
enum Encoder {
    Crate(Box<ArrowColumnWriter>),
    Dictionary(DictionaryColumn, ZstdLevel),
    Plain(PlainColumn),
}

/// One column of the open row group.
struct ColumnSlot {
    descr: ColumnDescPtr,
    encoder: Encoder,
}

/// A finished column chunk: from the crate's writer, or encoded by hand.
enum Chunk {
    Arrow(ArrowColumnChunk),
    ByHand(Bytes, ColumnCloseResult),
}

impl ColumnSlot {
    fn new(descr: ColumnDescPtr, writer: ArrowColumnWriter, by_hand: Option<ByHand>) -> Self {
        let encoder = match by_hand {
            Some(ByHand::Dictionary(level, limits)) => Encoder::Dictionary(DictionaryColumn::new(limits), level),
            Some(ByHand::Plain(level, limits)) => Encoder::Plain(PlainColumn::new(descr.clone(), level, limits)),
            None => Encoder::Crate(Box::new(writer)),
        };
        ColumnSlot { descr, encoder }
    }

    /// How the next row group of this column's file is to be encoded: a column that gave its
    /// dictionary up stays plain for the rest of the file.
    fn by_hand(&self) -> Option<ByHand> {
        match &self.encoder {
            Encoder::Crate(_) => None,
            Encoder::Dictionary(d, level) => Some(ByHand::Dictionary(*level, d.limits())),
            Encoder::Plain(p) => Some(ByHand::Plain(p.level(), p.limits())),
        }
    }

    fn write(&mut self, field: &Field, array: &ArrayRef) -> parquet::errors::Result<()> {
        match &mut self.encoder {
            Encoder::Dictionary(d, level) => {
                if let Written::GaveUp = d.write(array) {
                    self.encoder = Encoder::Plain(d.drain_to_plain(self.descr.clone(), *level)?);
                }
                Ok(())
            }
            Encoder::Plain(p) => p.write(array),
            Encoder::Crate(writer) => {
                for leaf in compute_leaves(field, array)? {
                    writer.write(&leaf)?;
                }
                Ok(())
            }
        }
    }

    fn memory_size(&self) -> usize {
        match &self.encoder {
            Encoder::Crate(w) => w.memory_size(),
            Encoder::Dictionary(d, _) => d.memory_size(),
            Encoder::Plain(p) => p.memory_size(),
        }
    }

    fn close(self) -> parquet::errors::Result<Chunk> {
        let (bytes, close) = match self.encoder {
            Encoder::Crate(writer) => return Ok(Chunk::Arrow(writer.close()?)),
            Encoder::Dictionary(mut d, level) if d.non_null() > 0 => d.close(self.descr, level)?,
            // All NULL: nothing for a dictionary to hold.
            Encoder::Dictionary(mut d, level) => d.drain_to_plain(self.descr, level)?.close()?,
            Encoder::Plain(p) => p.close()?,
        };
        Ok(Chunk::ByHand(bytes, close))
    }
}

/// A file's write-back, started on a background thread after each row group, so that the fsync
/// at close finds little left to write. Fsyncing each day's whole file at the end left both cores
/// idle meanwhile (docs/performance.md); now it overlaps the encoding of the next row groups.
/// An error of any of these fsyncs fails the file's close, so none is lost.
struct WriteBack {
    file: Arc<File>,
    running: Option<JoinHandle<io::Result<()>>>,
    failed: Option<io::Error>,
}

impl WriteBack {
    fn new(file: &File) -> io::Result<Self> {
        Ok(WriteBack { file: Arc::new(file.try_clone()?), running: None, failed: None })
    }

    /// Starts an fsync of what the file holds so far, unless one is still running. Should no
    /// thread start, nothing is lost: the fsync at close writes everything back anyway.
    fn start(&mut self) {
        if self.running.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        self.join();
        let file = Arc::clone(&self.file);
        self.running = std::thread::Builder::new().name("fsync".into()).spawn(move || file.sync_data()).ok();
    }

    fn join(&mut self) {
        let result = match self.running.take() {
            Some(h) => h.join().unwrap_or_else(|_| Err(io::Error::other("the fsync thread panicked"))),
            None => Ok(()),
        };
        if let Err(e) = result {
            self.failed.get_or_insert(e);
        }
    }

    /// Waits for the fsync under way; the first error of any of them, if one failed.
    fn finish(mut self) -> io::Result<()> {
        self.join();
        self.failed.map_or(Ok(()), Err)
    }
}

struct OpenFile {
    /// Its partition; `None` for an unpartitioned dataset (the rejects).
    key: Option<PartitionKey>,
    rel_path: String,
    file: SerializedFileWriter<FileOut>,
    write_back: WriteBack,
    factory: ArrowRowGroupWriterFactory,
    /// The open row group's columns, created on its first rows.
    columns: Option<Vec<ColumnSlot>>,
    /// Per column, how the next row group encodes it by hand, if it does.
    by_hand: Vec<Option<ByHand>>,
    fields: arrow_schema::Fields,
    row_groups: usize,
    rows_in_group: usize,
    rows: u64,
    last_used: u64,
}

impl OpenFile {
    /// Encodes `batches` (rows that fit in the open row group) into it, one rayon task per
    /// column, each writing its column of every batch in turn: joining the batches first would
    /// copy every value once more, on one thread.
    fn append(&mut self, batches: &[RecordBatch]) -> parquet::errors::Result<()> {
        if self.columns.is_none() {
            let writers = self.factory.create_column_writers(self.row_groups)?;
            let schema = self.file.schema_descr();
            let slots = writers.into_iter().zip(&self.by_hand).enumerate();
            let slots = slots.map(|(i, (writer, by_hand))| ColumnSlot::new(schema.column(i), writer, *by_hand));
            self.columns = Some(slots.collect());
        }
        let columns = self.columns.as_mut().expect("just created");
        columns
            .par_iter_mut()
            .zip(self.fields.par_iter())
            .enumerate()
            .try_for_each(|(i, (slot, field))| batches.iter().try_for_each(|b| slot.write(field, b.column(i))))?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        self.rows_in_group += rows;
        self.rows += rows as u64;
        Ok(())
    }

    /// Bytes held by the open row group's encoders (buffered pages, dictionaries, values).
    fn buffered_bytes(&self) -> usize {
        self.columns.iter().flatten().map(ColumnSlot::memory_size).sum()
    }

    /// Closes the open row group (its column chunks in parallel) and appends it to the file.
    fn flush_row_group(&mut self) -> parquet::errors::Result<()> {
        let Some(columns) = self.columns.take() else { return Ok(()) };
        for (by_hand, slot) in self.by_hand.iter_mut().zip(&columns) {
            *by_hand = slot.by_hand();
        }
        let chunks: Vec<Chunk> = columns.into_par_iter().map(ColumnSlot::close).collect::<Result<_, _>>()?;
        let mut row_group = self.file.next_row_group()?;
        for chunk in chunks {
            match chunk {
                Chunk::Arrow(chunk) => chunk.append_to_row_group(&mut row_group)?,
                Chunk::ByHand(bytes, close) => row_group.append_column(&bytes, close)?,
            }
        }
        row_group.close()?;
        self.row_groups += 1;
        self.rows_in_group = 0;
        self.write_back.start();
        Ok(())
    }

    /// Writes the open row group and the footer, and fsyncs the file under `staging`.
    fn close(mut self, staging: &Path) -> Result<WrittenFile, Error> {
        let path = staging.join(&self.rel_path);
        self.flush_row_group().map_err(|e| Error::parquet(&path, e))?;
        let out = self.file.into_inner().map_err(|e| Error::parquet(&path, e))?;
        let file = out.finish().map_err(|e| Error::write(&path, e))?;
        self.write_back.finish().map_err(|e| Error::write(&path, e))?;
        file.sync_all().map_err(|e| Error::write(&path, e))?;
        let bytes = file.metadata().map_err(|e| Error::write(&path, e))?.len();
        let dt = self.key.map(|k| crate::access_log::time::format_day(k.day)).unwrap_or_default();
        Ok(WrittenFile { path: self.rel_path, dt, rows: self.rows, bytes })
    }
}

/// Fans batches out to one rolling Parquet file per partition folder, under a staging root.
pub struct PartitionedWriter {
    staging: PathBuf,
    name: String,
    schema: SchemaRef,
    props: WriterProperties,
    opts: SinkOptions,
    open: Vec<OpenFile>,
    next_seq: std::collections::HashMap<Option<PartitionKey>, u32>,
    written: Vec<WrittenFile>,
    tick: u64,
}

impl PartitionedWriter {
    /// Files go to `staging/<folder>/part-<name>-<seq>.parquet`.
    pub fn new(staging: PathBuf, name: String, schema: SchemaRef, opts: SinkOptions) -> Result<Self, Error> {
        Ok(PartitionedWriter {
            staging,
            name,
            schema,
            props: writer_properties(&opts)?,
            opts,
            open: Vec::new(),
            next_seq: Default::default(),
            written: Vec::new(),
            tick: 0,
        })
    }

    /// Appends `batches` to the file of partition `key` (`None`: the dataset is not partitioned),
    /// in order. Row groups hold `row_group_rows` rows, fewer when the buffered-bytes budget closes
    /// one early (and the last of a file), and a file rolls to the next as soon as its finished
    /// row groups reach the target size.
    pub fn write(&mut self, key: Option<&PartitionKey>, batches: &[RecordBatch]) -> Result<(), Error> {
        self.append(key, batches)?;
        self.keep_within_budget()
    }

    /// Closes the open row groups of the least recently written files until all open row groups
    /// together hold at most `max_buffered_bytes`: memory stays flat however long the input.
    fn keep_within_budget(&mut self) -> Result<(), Error> {
        let mut sizes: Vec<(u64, usize, usize)> =
            self.open.iter().enumerate().map(|(i, f)| (f.last_used, f.buffered_bytes(), i)).collect();
        let mut total: usize = sizes.iter().map(|s| s.1).sum();
        sizes.sort_unstable();
        for (_, bytes, i) in sizes {
            if total <= self.opts.max_buffered_bytes {
                break;
            }
            if bytes == 0 {
                continue;
            }
            let f = &mut self.open[i];
            let path = self.staging.join(&f.rel_path);
            f.flush_row_group().map_err(|e| Error::parquet(&path, e))?;
            total -= bytes;
        }
        Ok(())
    }

    fn append(&mut self, key: Option<&PartitionKey>, batches: &[RecordBatch]) -> Result<(), Error> {
        // The batches, cut where row groups end: each piece goes to one row group in one
        // parallel round.
        let mut rest: std::collections::VecDeque<RecordBatch> =
            batches.iter().filter(|b| b.num_rows() > 0).cloned().collect();
        while !rest.is_empty() {
            self.tick += 1;
            let i = match self.open.iter().position(|f| f.key.as_ref() == key) {
                Some(i) => i,
                None => self.open_file(key)?,
            };
            let group = self.opts.row_group_rows.max(1);
            let f = &mut self.open[i];
            f.last_used = self.tick;
            let mut room = group - f.rows_in_group;
            let mut piece = Vec::new();
            while let Some(b) = rest.pop_front() {
                if b.num_rows() > room {
                    piece.push(b.slice(0, room));
                    rest.push_front(b.slice(room, b.num_rows() - room));
                    break;
                }
                room -= b.num_rows();
                piece.push(b);
            }
            let path = self.staging.join(&f.rel_path);
            f.append(&piece).map_err(|e| Error::parquet(&path, e))?;
            if f.rows_in_group >= group {
                f.flush_row_group().map_err(|e| Error::parquet(&path, e))?;
                if f.file.bytes_written() as u64 >= self.opts.target_file_bytes {
                    let f = self.open.swap_remove(i);
                    self.close(f)?;
                }
            }
        }
        Ok(())
    }

    fn open_file(&mut self, key: Option<&PartitionKey>) -> Result<usize, Error> {
        if self.open.len() >= self.opts.max_open_files.max(1) {
            let lru = (0..self.open.len()).min_by_key(|&i| self.open[i].last_used).expect("open is not empty");
            let f = self.open.swap_remove(lru);
            self.close(f)?;
        }
        let seq = self.next_seq.entry(key.cloned()).or_default();
        let file_name = naming::file_name(&self.name, *seq);
        *seq += 1;
        let rel_path = match key {
            Some(key) => format!("{}/{file_name}", key.folder()),
            None => file_name,
        };
        let path = self.staging.join(&rel_path);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| Error::write(dir, e))?;
        }
        let file = FileOut::create(&path, self.opts.direct_io).map_err(|e| Error::write(&path, e))?;
        let write_back = WriteBack::new(file.file()).map_err(|e| Error::write(&path, e))?;
        // ArrowWriter sets up the file (schema, and the Arrow schema in the metadata); its
        // low-level halves let the columns be encoded in parallel.
        let (file, factory) = ArrowWriter::try_new(file, self.schema.clone(), Some(self.props.clone()))
            .and_then(ArrowWriter::into_serialized_writer)
            .map_err(|e| Error::parquet(&path, e))?;
        self.open.push(OpenFile {
            key: key.cloned(),
            rel_path,
            file,
            write_back,
            factory,
            columns: None,
            by_hand: hand_encoded(&self.schema, &self.props),
            fields: self.schema.fields().clone(),
            row_groups: 0,
            rows_in_group: 0,
            rows: 0,
            last_used: self.tick,
        });
        Ok(self.open.len() - 1)
    }

    fn close(&mut self, f: OpenFile) -> Result<(), Error> {
        let written = f.close(&self.staging)?;
        self.written.push(written);
        Ok(())
    }

    /// Closes every open file and returns all files written, sorted by path. The files are
    /// closed in parallel: one's fsync no longer waits for the last row group of the next.
    pub fn finish(mut self) -> Result<Vec<WrittenFile>, Error> {
        let open = std::mem::take(&mut self.open);
        let closed: Vec<WrittenFile> =
            open.into_par_iter().map(|f| f.close(&self.staging)).collect::<Result<_, _>>()?;
        self.written.extend(closed);
        self.written.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io;
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::basic::Encoding;

    use super::{PartitionKey, PartitionedWriter, SinkOptions, WriteBack};

    fn batch(values: std::ops::Range<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(values))]).unwrap()
    }

    /// Writes 0..10 to `a`, 100..110 to `b`, then 10..20 to `a`; returns each file's row group
    /// sizes and values.
    fn write_a_b_a(budget: usize) -> Vec<(String, Vec<i64>, Vec<i64>)> {
        let tmp = tempfile::tempdir().unwrap();
        let opts = SinkOptions { row_group_rows: 1000, max_buffered_bytes: budget, ..SinkOptions::default() };
        let mut w = PartitionedWriter::new(tmp.path().into(), "t".into(), batch(0..0).schema(), opts).unwrap();
        let (a, b) = (PartitionKey { bucket: None, day: 0 }, PartitionKey { bucket: None, day: 1 });
        w.write(Some(&a), &[batch(0..10)]).unwrap();
        w.write(Some(&b), &[batch(100..110)]).unwrap();
        w.write(Some(&a), &[batch(10..20)]).unwrap();
        let mut out = Vec::new();
        for f in w.finish().unwrap() {
            let r = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(tmp.path().join(&f.path)).unwrap())
                .unwrap();
            let groups = r.metadata().row_groups().iter().map(|g| g.num_rows()).collect();
            let values = r
                .build()
                .unwrap()
                .flat_map(|b| b.unwrap().column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
                .collect();
            assert!(f.path.starts_with(&format!("dt={}/", f.dt)), "{f:?}");
            out.push((f.path.clone(), groups, values));
        }
        out
    }

    #[test]
    fn a_failed_background_fsync_fails_the_close() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("f")).unwrap();
        let mut ok = WriteBack::new(&file).unwrap();
        ok.start();
        ok.start();
        assert!(ok.finish().is_ok());

        // fsync of a pipe fails (EINVAL); the error must come out of finish, even after
        // another fsync was started behind it.
        let (_reader, writer) = io::pipe().unwrap();
        let pipe = File::from(std::os::fd::OwnedFd::from(writer));
        let mut failing = WriteBack::new(&pipe).unwrap();
        failing.start();
        failing.join();
        failing.start();
        let err = failing.finish().expect_err("fsync of a pipe fails");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    }

    #[test]
    fn open_row_groups_close_early_beyond_the_buffered_bytes_budget() {
        let a: Vec<i64> = (0..20).collect();
        let b: Vec<i64> = (100..110).collect();
        // Within the budget, each file is one row group.
        let roomy = write_a_b_a(SinkOptions::default().max_buffered_bytes);
        assert_eq!(
            roomy,
            vec![
                ("dt=1970-01-01/part-t-00000.parquet".into(), vec![20], a.clone()),
                ("dt=1970-01-02/part-t-00000.parquet".into(), vec![10], b.clone())
            ]
        );
        // Over it, every write closes the open row groups, least recently written first, and
        // every row is still there once, in order.
        let tight = write_a_b_a(1);
        assert_eq!(
            tight,
            vec![
                ("dt=1970-01-01/part-t-00000.parquet".into(), vec![10, 10], a),
                ("dt=1970-01-02/part-t-00000.parquet".into(), vec![10], b)
            ]
        );
    }

    #[test]
    fn dictionaries_are_kept_for_repeating_values_and_given_up_early_for_new_ones() {
        let rows = 20_000;
        let column = |name: &str, value: &dyn Fn(usize) -> String| -> (Field, ArrayRef) {
            (Field::new(name, DataType::Utf8, false), Arc::new(StringArray::from_iter_values((0..rows).map(value))))
        };
        // 36-byte values: `key` all distinct, `bucket` three of them.
        let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = [
            column("key", &|i| format!("photos/2024/{i:08}/img-{:08}.jpg", i * 7)),
            column("bucket", &|i| format!("bucket-{}-{:028}", i % 3, 0)),
        ]
        .into_iter()
        .unzip();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let mut w =
            PartitionedWriter::new(tmp.path().into(), "t".into(), batch.schema(), SinkOptions::default()).unwrap();
        w.write(None, &[batch]).unwrap();
        let f = &w.finish().unwrap()[0];
        let r =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(tmp.path().join(&f.path)).unwrap()).unwrap();
        let chunk = |i: usize| r.metadata().row_group(0).column(i);
        let dictionary_bytes = |i: usize| {
            let c = chunk(i);
            c.dictionary_page_offset().map(|d| c.data_page_offset() - d)
        };
        // Data pages all dictionary-encoded, or not.
        let all_dictionary =
            |i: usize| chunk(i).page_encoding_stats_mask().expect("encoding stats").is_only(Encoding::RLE_DICTIONARY);
        // `key` gave its dictionary up (at 64 KiB, well before 20,000 distinct values, 720 KB),
        // and the whole chunk is written plain, the rows before included.
        assert_eq!(dictionary_bytes(0), None);
        assert!(chunk(0).page_encoding_stats_mask().expect("encoding stats").is_only(Encoding::PLAIN));
        // `bucket` keeps its three-value dictionary for the whole chunk.
        assert!(dictionary_bytes(1).is_some() && all_dictionary(1));
        assert_eq!(r.build().unwrap().map(|b| b.unwrap().num_rows()).sum::<usize>(), rows);
    }

    /// Writes `all` to one file in `dir`, in slices of `lens` rows and row groups of
    /// `row_group_rows` (the first slice in one write, the others together in a second, so row
    /// groups end inside a batch of a write), and reads it back: every row of every column must
    /// come back as written, in order. Returns the file and its metadata.
    fn write_in_slices_and_read_back(
        dir: &std::path::Path,
        all: &RecordBatch,
        row_group_rows: usize,
        lens: &[usize],
    ) -> (std::path::PathBuf, Arc<parquet::file::metadata::ParquetMetaData>) {
        let opts = SinkOptions { row_group_rows, ..SinkOptions::default() };
        let mut w = PartitionedWriter::new(dir.into(), "t".into(), all.schema(), opts).unwrap();
        let mut at = 0;
        let slices: Vec<RecordBatch> = lens
            .iter()
            .map(|&len| {
                at += len;
                all.slice(at - len, len)
            })
            .collect();
        assert_eq!(at, all.num_rows());
        w.write(None, &slices[..1]).unwrap();
        w.write(None, &slices[1..]).unwrap();
        let path = dir.join(&w.finish().unwrap()[0].path);
        let r = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap()).unwrap();
        let meta = r.metadata().clone();
        let read: Vec<RecordBatch> = r.build().unwrap().map(Result::unwrap).collect();
        let read = arrow_select::concat::concat_batches(&read[0].schema(), &read).unwrap();
        for c in 0..all.num_columns() {
            assert_eq!(read.column(c).as_ref(), all.column(c).as_ref(), "column {c}");
        }
        (path, meta)
    }

    /// The few-valued string columns are encoded by hand (`dictionary`): over several batches,
    /// row groups and data pages, with NULLs, one value, no value, 10-bit keys, a column that gives
    /// its dictionary up, one whose dictionary passes 64 KiB but repeats and one that repeats past
    /// 1 MiB, every value reads back and the statistics hold per row group.
    #[test]
    fn hand_encoded_dictionary_columns_read_back_with_their_statistics() {
        use parquet::file::statistics::Statistics;

        let rows = 45_000;
        let ops = ["REST.GET.OBJECT", "REST.PUT.OBJECT", "", "日本/キー", "REST.HEAD.OBJECT"];
        // Runs of 40 equal values, then values changing every row, and every 7th row NULL.
        let op = |i: usize| (i % 7 != 3).then(|| if i % 200 < 40 { ops[0] } else { ops[i * 31 % 5] });
        let key = |i: usize| (!i.is_multiple_of(11)).then(|| format!("photos/2024/{i:08}/img-{:08}.jpg", i * 7));
        // 1,000 values, keys 10 bits wide: runs of 20 (two bytes a value in an RLE run), then
        // values changing every row (bit-packed).
        let user = |i: usize| format!("user{}", if i % 200 < 100 { i / 20 % 1000 } else { i * 7 % 1000 });
        // 100-byte values, each for 20 rows: past 64 KiB of dictionary, but repeating.
        let object = |i: usize| format!("{:0>100}", i / 20);
        // The same with 1,000-byte values: repeating, but past 1 MiB of dictionary.
        let long = |i: usize| format!("{:0>1000}", i / 20);
        let schema = Arc::new(Schema::new(vec![
            Field::new("op", DataType::Utf8, true),
            Field::new("one", DataType::Utf8, false),
            Field::new("nothing", DataType::Utf8, true),
            Field::new("key", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
            Field::new("user", DataType::Utf8, false),
            Field::new("object", DataType::Utf8, false),
            Field::new("long", DataType::Utf8, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter((0..rows).map(op))),
            Arc::new(StringArray::from_iter_values((0..rows).map(|_| "bucket-1"))),
            Arc::new(StringArray::from_iter((0..rows).map(|_| None::<&str>))),
            Arc::new(StringArray::from_iter((0..rows).map(key))),
            Arc::new(Int64Array::from_iter_values(0..rows as i64)),
            Arc::new(StringArray::from_iter_values((0..rows).map(user))),
            Arc::new(StringArray::from_iter_values((0..rows).map(object))),
            Arc::new(StringArray::from_iter_values((0..rows).map(long))),
        ];
        let all = RecordBatch::try_new(schema, columns).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let (path, meta) = write_in_slices_and_read_back(tmp.path(), &all, 30_000, &[1, 999, 17_000, 23_000, 4_000]);

        assert_eq!(meta.row_groups().iter().map(|g| g.num_rows()).collect::<Vec<_>>(), [30_000, 15_000]);
        for (g, first) in meta.row_groups().iter().zip([0, 30_000]) {
            let range = first..first + g.num_rows() as usize;
            let only_dictionary = |c: usize| {
                g.column(c).page_encoding_stats_mask().expect("encoding stats").is_only(Encoding::RLE_DICTIONARY)
            };
            let stats = |c: usize| match g.column(c).statistics() {
                Some(Statistics::ByteArray(s)) => {
                    let text = |v: Option<&parquet::data_type::ByteArray>| v.map(|v| v.as_utf8().unwrap().to_string());
                    (text(s.min_opt()), text(s.max_opt()), s.null_count_opt())
                }
                other => panic!("column {c}: {other:?}"),
            };
            let values: Vec<&str> = range.clone().filter_map(op).collect();
            let nulls = (range.len() - values.len()) as u64;
            let (min, max) = (values.iter().min().unwrap(), values.iter().max().unwrap());
            assert!(only_dictionary(0) && only_dictionary(1) && only_dictionary(5));
            // 1,500 values of 100 bytes in the first row group, one per 20 rows.
            assert!(only_dictionary(6) && g.column(6).dictionary_page_offset().is_some());
            assert!(!only_dictionary(7));
            assert_eq!(stats(0), (Some(min.to_string()), Some(max.to_string()), Some(nulls)));
            assert_eq!(stats(1), (Some("bucket-1".into()), Some("bucket-1".into()), Some(0)));
            assert_eq!(stats(2), (None, None, Some(range.len() as u64)));
            // `key` gave its dictionary up in the first row group and stays plain after it.
            assert!(!only_dictionary(3));
            assert_eq!(
                g.column(3).statistics().unwrap().null_count_opt(),
                Some(range.filter(|i| i.is_multiple_of(11)).count() as u64)
            );
        }
        // Pages of at most 20,000 rows: a dictionary page and two data pages in the first row
        // group, one of each in the second.
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let file = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        for (g, want) in [(0, vec![5, 20_000, 10_000]), (1, vec![5, 15_000])] {
            let pages = file.get_row_group(g).unwrap().get_column_page_reader(0).unwrap();
            let values: Vec<u32> = pages.map(|p| p.unwrap().num_values()).collect();
            assert_eq!(values, want, "row group {g}");
        }
    }

    #[test]
    fn hand_encoded_plain_columns_read_back_with_their_pages_and_statistics() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        use parquet::file::statistics::Statistics;

        let rows = 50_000;
        // `hostid` and `requesturi_key` take no dictionary (by name), so they are plain from the
        // first row. `hostid`: required, 60 bytes (min/max whole), pages cut at 20,000 rows.
        let hostid = |i: usize| format!("{:060}", (i * 7_919) % 100_003);
        // `requesturi_key`: nullable, 100 to 400 bytes (so pages are cut at 1 MiB of values,
        // and min/max are cut to 64 bytes), sharing a long prefix; every 5th row NULL.
        let uri = |i: usize| {
            (i % 5 != 2).then(|| format!("GET /bucket/{:0>40}/{} HTTP/1.1", (i * 31) % 997, "x".repeat(50 + i % 300)))
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("hostid", DataType::Utf8, false),
            Field::new("requesturi_key", DataType::Utf8, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values((0..rows).map(hostid))),
            Arc::new(StringArray::from_iter((0..rows).map(uri))),
        ];
        let all = RecordBatch::try_new(schema, columns).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let (path, meta) = write_in_slices_and_read_back(tmp.path(), &all, 45_000, &[3, 19_999, 20_000, 10_000 - 2]);

        let file = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        for (g, first) in meta.row_groups().iter().zip([0, 45_000]) {
            let range = first..first + g.num_rows() as usize;
            for c in 0..2 {
                let chunk = g.column(c);
                assert!(chunk.page_encoding_stats_mask().unwrap().is_only(Encoding::PLAIN), "column {c}");
                assert_eq!(chunk.dictionary_page_offset(), None);
            }
            let stats = |c: usize| match g.column(c).statistics() {
                Some(Statistics::ByteArray(s)) => s.clone(),
                other => panic!("column {c}: {other:?}"),
            };
            let ids: Vec<String> = range.clone().map(hostid).collect();
            let h = stats(0);
            assert_eq!(h.min_opt().unwrap().as_utf8().unwrap(), ids.iter().min().unwrap());
            assert_eq!(h.max_opt().unwrap().as_utf8().unwrap(), ids.iter().max().unwrap());
            assert_eq!((h.null_count_opt(), h.min_is_exact(), h.max_is_exact()), (Some(0), true, true));

            let uris: Vec<String> = range.clone().filter_map(uri).collect();
            let (min, max) = (uris.iter().min().unwrap(), uris.iter().max().unwrap());
            let u = stats(1);
            // Cut to 64 bytes; the max's last byte raised so it stays above every value.
            assert_eq!(u.min_opt().unwrap().as_utf8().unwrap(), &min[..64]);
            let mut raised = max.as_bytes()[..64].to_vec();
            *raised.last_mut().unwrap() += 1;
            assert_eq!(u.max_bytes_opt().unwrap(), raised.as_slice());
            assert_eq!(u.null_count_opt(), Some((range.len() - uris.len()) as u64));

            let rows_per_page = |c: usize| -> Vec<u32> {
                let pages = file.get_row_group(first / 45_000).unwrap().get_column_page_reader(c).unwrap();
                pages.map(|p| p.unwrap().num_values()).collect()
            };
            let pages = rows_per_page(0);
            assert!(pages.iter().all(|&n| n <= 20_000), "{pages:?}");
            assert_eq!(pages.iter().sum::<u32>() as usize, range.len());
            // About 250 bytes a value: pages are cut at 1 MiB of values, about 4,200 rows.
            let pages = rows_per_page(1);
            assert!(
                pages.len() >= 2 && pages[..pages.len() - 1].iter().all(|&n| (3_000..5_500).contains(&n)),
                "{pages:?}"
            );
            assert_eq!(pages.iter().sum::<u32>() as usize, range.len());
        }
    }

    /// The hand-written encoders against the crate's own `ArrowWriter` with the same properties:
    /// random nullable string columns (few values, many values, values past the statistics cut,
    /// a required one, and `requestid`, which the field table makes plain random text), written in
    /// random slices with row groups cut inside them, decode to the same values, and every row
    /// group's chunks have the same null counts and statistics.
    #[test]
    fn hand_encoded_columns_match_the_crates_writer() {
        use parquet::arrow::ArrowWriter;
        use parquet::file::statistics::Statistics;
        use proptest::prelude::*;

        let cases = std::env::var("S3LOGS_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24);
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases, ..ProptestConfig::default() });
        let strategy = (1usize..4000, 1usize..1500, proptest::collection::vec(1usize..1200, 1..6), any::<u64>());
        runner
            .run(&strategy, |(rows, row_group_rows, lens, seed)| {
                let mut x = seed | 1;
                let mut next = move || {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                };
                let alphabet: Vec<char> = "abcxyz-_/0129 ÄéΩ日本🙂".chars().collect();
                let text = |len: usize, next: &mut dyn FnMut() -> u64| -> String {
                    (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect()
                };
                let few = ["REST.GET.OBJECT", "", "日本/キー", "REST.PUT.OBJECT", "zz"];
                let mut columns: [Vec<Option<String>>; 5] = Default::default();
                for _ in 0..rows {
                    let null = next() % 7 == 0;
                    columns[0].push((!null).then(|| few[(next() % 5) as usize].to_string()));
                    let len = (next() % 30) as usize;
                    columns[1].push((next() % 5 != 0).then(|| text(len, &mut next)));
                    let len = 50 + (next() % 100) as usize;
                    columns[2].push((next() % 9 != 0).then(|| text(len, &mut next)));
                    let len = (next() % 12) as usize;
                    columns[3].push(Some(text(len, &mut next)));
                    let len = 16 + (next() % 8) as usize;
                    columns[4].push((next() % 3 != 0).then(|| text(len, &mut next)));
                }
                let names = ["few", "many", "long", "required", "requestid"];
                let schema = Arc::new(Schema::new(
                    names.iter().map(|n| Field::new(*n, DataType::Utf8, *n != "required")).collect::<Vec<_>>(),
                ));
                let arrays: Vec<ArrayRef> =
                    columns.iter().map(|c| Arc::new(StringArray::from(c.clone())) as ArrayRef).collect();
                let all = RecordBatch::try_new(schema.clone(), arrays).unwrap();
                let mut slices = Vec::new();
                let mut at = 0;
                for len in lens.iter().cycle() {
                    if at == rows {
                        break;
                    }
                    let len = (*len).min(rows - at);
                    slices.push(all.slice(at, len));
                    at += len;
                }

                let tmp = tempfile::tempdir().unwrap();
                let opts = SinkOptions { row_group_rows, ..SinkOptions::default() };
                let mut w =
                    PartitionedWriter::new(tmp.path().into(), "t".into(), schema.clone(), opts.clone()).unwrap();
                w.write(None, &slices).unwrap();
                let by_hand = tmp.path().join(&w.finish().unwrap()[0].path);
                let by_crate = tmp.path().join("crate.parquet");
                let props = super::writer_properties(&opts).unwrap();
                let mut crate_writer =
                    ArrowWriter::try_new(File::create(&by_crate).unwrap(), schema, Some(props)).unwrap();
                for b in &slices {
                    crate_writer.write(b).unwrap();
                }
                crate_writer.close().unwrap();

                let read = |path: &std::path::Path| {
                    let r = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
                    let meta = r.metadata().clone();
                    let batches: Vec<RecordBatch> = r.build().unwrap().map(Result::unwrap).collect();
                    (arrow_select::concat::concat_batches(&all.schema(), &batches).unwrap(), meta)
                };
                let ((hand, hand_meta), (theirs, crate_meta)) = (read(&by_hand), read(&by_crate));
                prop_assert_eq!(&hand, &all);
                prop_assert_eq!(&theirs, &all);
                let groups = |m: &parquet::file::metadata::ParquetMetaData| {
                    m.row_groups().iter().map(|g| g.num_rows()).collect::<Vec<_>>()
                };
                prop_assert_eq!(groups(&hand_meta), groups(&crate_meta));
                let stats = |s: Option<&Statistics>| match s {
                    Some(Statistics::ByteArray(s)) => (
                        s.min_opt().map(|v| v.data().to_vec()),
                        s.max_opt().map(|v| v.data().to_vec()),
                        s.null_count_opt(),
                        s.min_is_exact(),
                        s.max_is_exact(),
                    ),
                    other => panic!("{other:?}"),
                };
                for (g, (h, c)) in hand_meta.row_groups().iter().zip(crate_meta.row_groups()).enumerate() {
                    for (col, name) in names.iter().enumerate() {
                        prop_assert_eq!(
                            stats(h.column(col).statistics()),
                            stats(c.column(col).statistics()),
                            "row group {}, column {}",
                            g,
                            name
                        );
                    }
                }
                Ok(())
            })
            .unwrap();
    }
}
