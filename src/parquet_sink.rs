//! Writing record batches as Parquet files: fan-out by partition folder, roll at a target size,
//! in a staging folder out of the table's sight.
//!
//! A [`PartitionedWriter`] keeps one open file per partition folder (`dt=2024-01-15`, or `""` for
//! an unpartitioned dataset), opened lazily on the first batch so no empty file is ever written,
//! and rolled when it reaches the target size. Files are written under a staging folder outside the
//! table location, and each is fsynced when closed; [`crate::destination`] publishes them. File
//! names come from the run's identity and a per-folder sequence number, never from the clock, so
//! the same input gives the same names.
//!
//! Encoding is the most expensive stage, so the columns of each batch are encoded (dictionary,
//! pages, ZSTD) in parallel on the caller's rayon pool, one `ArrowColumnWriter` per column, and the
//! finished column chunks are appended to the file in column order.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::PathBuf;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use rayon::prelude::*;

use crate::error::Error;

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
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            target_file_bytes: 256 << 20,
            row_group_rows: 128 * 1024,
            zstd_level: 1,
            max_open_files: 64,
            max_buffered_bytes: 48 << 20,
        }
    }
}

/// Columns whose values are nearly all distinct: a dictionary costs time and saves nothing.
const NO_DICTIONARY: &[&str] =
    &["requestdatetime", "requestid", "hostid", "source_line", "requesturi_key", "bytessent", "objectsize"];

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
    for name in NO_DICTIONARY {
        b = b.set_column_dictionary_enabled(ColumnPath::from(*name), false);
    }
    Ok(b.build())
}

/// A file that was written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WrittenFile {
    /// Path relative to the dataset root, such as `dt=2024-01-15/part-0123abcd-00000.parquet`.
    pub path: String,
    /// The partition value (`2024-01-15`), empty for an unpartitioned dataset.
    pub dt: String,
    pub rows: u64,
    pub bytes: u64,
}

struct OpenFile {
    folder: String,
    rel_path: String,
    file: SerializedFileWriter<BufWriter<File>>,
    factory: ArrowRowGroupWriterFactory,
    /// The open row group's column writers, created on its first rows.
    columns: Option<Vec<ArrowColumnWriter>>,
    row_groups: usize,
    rows_in_group: usize,
    rows: u64,
    last_used: u64,
}

impl OpenFile {
    /// Encodes `batch` into the open row group, one rayon task per column.
    fn append(&mut self, schema: &SchemaRef, batch: &RecordBatch) -> parquet::errors::Result<()> {
        if self.columns.is_none() {
            self.columns = Some(self.factory.create_column_writers(self.row_groups)?);
        }
        let columns = self.columns.as_mut().expect("just created");
        let mut leaves = Vec::with_capacity(columns.len());
        for (field, array) in schema.fields().iter().zip(batch.columns()) {
            leaves.extend(compute_leaves(field, array)?);
        }
        columns.par_iter_mut().zip(leaves.par_iter()).try_for_each(|(w, leaf)| w.write(leaf))?;
        self.rows_in_group += batch.num_rows();
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Bytes held by the open row group's encoders (buffered pages, dictionaries, values).
    fn buffered_bytes(&self) -> usize {
        self.columns.iter().flatten().map(ArrowColumnWriter::memory_size).sum()
    }

    /// Closes the open row group (its column chunks in parallel) and appends it to the file.
    fn flush_row_group(&mut self) -> parquet::errors::Result<()> {
        let Some(columns) = self.columns.take() else { return Ok(()) };
        let chunks: Vec<ArrowColumnChunk> =
            columns.into_par_iter().map(ArrowColumnWriter::close).collect::<Result<_, _>>()?;
        let mut row_group = self.file.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        self.row_groups += 1;
        self.rows_in_group = 0;
        Ok(())
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
    next_seq: std::collections::HashMap<String, u32>,
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

    /// Appends `batch` to the file of partition folder `folder` (such as `dt=2024-01-15`). Row
    /// groups hold `row_group_rows` rows, fewer when the buffered-bytes budget closes one early
    /// (and the last of a file), and a file rolls to the next as soon as its finished row groups
    /// reach the target size.
    pub fn write(&mut self, folder: &str, batch: &RecordBatch) -> Result<(), Error> {
        self.append(folder, batch)?;
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

    fn append(&mut self, folder: &str, batch: &RecordBatch) -> Result<(), Error> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            self.tick += 1;
            let i = match self.open.iter().position(|f| f.folder == folder) {
                Some(i) => i,
                None => self.open_file(folder)?,
            };
            let group = self.opts.row_group_rows.max(1);
            let f = &mut self.open[i];
            f.last_used = self.tick;
            let len = (group - f.rows_in_group).min(batch.num_rows() - offset);
            let path = self.staging.join(&f.rel_path);
            f.append(&self.schema, &batch.slice(offset, len)).map_err(|e| Error::parquet(&path, e))?;
            offset += len;
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

    fn open_file(&mut self, folder: &str) -> Result<usize, Error> {
        if self.open.len() >= self.opts.max_open_files.max(1) {
            let lru = (0..self.open.len()).min_by_key(|&i| self.open[i].last_used).expect("open is not empty");
            let f = self.open.swap_remove(lru);
            self.close(f)?;
        }
        let seq = self.next_seq.entry(folder.to_string()).or_default();
        let file_name = format!("part-{}-{:05}.parquet", self.name, *seq);
        *seq += 1;
        let rel_path = if folder.is_empty() { file_name } else { format!("{folder}/{file_name}") };
        let path = self.staging.join(&rel_path);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| Error::write(dir, e))?;
        }
        let file = File::create(&path).map_err(|e| Error::write(&path, e))?;
        // ArrowWriter sets up the file (schema, and the Arrow schema in the metadata); its
        // low-level halves let the columns be encoded in parallel.
        let (file, factory) = ArrowWriter::try_new(
            BufWriter::with_capacity(1 << 20, file),
            self.schema.clone(),
            Some(self.props.clone()),
        )
        .and_then(ArrowWriter::into_serialized_writer)
        .map_err(|e| Error::parquet(&path, e))?;
        self.open.push(OpenFile {
            folder: folder.to_string(),
            rel_path,
            file,
            factory,
            columns: None,
            row_groups: 0,
            rows_in_group: 0,
            rows: 0,
            last_used: self.tick,
        });
        Ok(self.open.len() - 1)
    }

    fn close(&mut self, mut f: OpenFile) -> Result<(), Error> {
        let path = self.staging.join(&f.rel_path);
        f.flush_row_group().map_err(|e| Error::parquet(&path, e))?;
        let buffered = f.file.into_inner().map_err(|e| Error::parquet(&path, e))?;
        let file = buffered.into_inner().map_err(|e| Error::write(&path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::write(&path, e))?;
        let bytes = file.metadata().map_err(|e| Error::write(&path, e))?.len();
        let dt = f.folder.rsplit('/').next().and_then(|d| d.strip_prefix("dt=")).unwrap_or_default().to_string();
        self.written.push(WrittenFile { path: f.rel_path, dt, rows: f.rows, bytes });
        Ok(())
    }

    /// Closes every open file and returns all files written, sorted by path.
    pub fn finish(mut self) -> Result<Vec<WrittenFile>, Error> {
        let mut open = std::mem::take(&mut self.open);
        open.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
        for f in open {
            self.close(f)?;
        }
        self.written.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::basic::Encoding;

    use super::{PartitionedWriter, SinkOptions};

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
        w.write("a", &batch(0..10)).unwrap();
        w.write("b", &batch(100..110)).unwrap();
        w.write("a", &batch(10..20)).unwrap();
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
            out.push((f.dt.clone() + &f.path, groups, values));
        }
        out
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
                ("a/part-t-00000.parquet".into(), vec![20], a.clone()),
                ("b/part-t-00000.parquet".into(), vec![10], b.clone())
            ]
        );
        // Over it, every write closes the open row groups, least recently written first, and
        // every row is still there once, in order.
        let tight = write_a_b_a(1);
        assert_eq!(
            tight,
            vec![("a/part-t-00000.parquet".into(), vec![10, 10], a), ("b/part-t-00000.parquet".into(), vec![10], b)]
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
        w.write("", &batch).unwrap();
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
        // `key` gave its dictionary up after at most 64 KiB (plus page overhead), well before
        // 20,000 distinct values (720 KB); the rest of its values are plain.
        let key_dictionary = dictionary_bytes(0).expect("key starts with a dictionary");
        assert!(key_dictionary < 70_000, "{key_dictionary}");
        assert!(!all_dictionary(0));
        // `bucket` keeps its three-value dictionary for the whole chunk.
        assert!(dictionary_bytes(1).is_some() && all_dictionary(1));
        assert_eq!(r.build().unwrap().map(|b| b.unwrap().num_rows()).sum::<usize>(), rows);
    }
}
