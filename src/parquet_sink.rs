//! Writing record batches as Parquet files: fan-out by partition folder, roll at a target size,
//! stage out of sight, commit by rename.
//!
//! A [`PartitionedWriter`] keeps one open file per partition folder (`dt=2024-01-15`, or `""` for
//! an unpartitioned dataset), opened lazily on the first batch so no empty file is ever written,
//! and rolled when it reaches the target size. Files are written under a staging folder outside the
//! table location; [`commit`] moves each finished file into place with one rename, so a reader never
//! sees a half-written file. File names come from the run's identity and a per-folder sequence
//! number, never from the clock, so the same input gives the same names.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

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
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions { target_file_bytes: 256 << 20, row_group_rows: 128 * 1024, zstd_level: 3, max_open_files: 64 }
    }
}

/// Columns whose values are nearly all distinct: a dictionary costs time and saves nothing.
const NO_DICTIONARY: &[&str] = &["requestdatetime", "requestid", "hostid", "source_line"];

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
        .set_created_by(format!("s3logs {}", env!("CARGO_PKG_VERSION")));
    for name in NO_DICTIONARY {
        b = b.set_column_dictionary_enabled(ColumnPath::from(*name), false);
    }
    Ok(b.build())
}

/// A file that was written (and, after [`commit`], is in place).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
    writer: ArrowWriter<BufWriter<File>>,
    rows: u64,
    last_used: u64,
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

    /// Appends `batch` to the file of partition folder `folder` (such as `dt=2024-01-15`), rolling
    /// to a new file whenever the current one reaches the target size. The batch is written in
    /// slices of at most a row group, so a file rolls close to its target whatever the batch size.
    pub fn write(&mut self, folder: &str, batch: &RecordBatch) -> Result<(), Error> {
        let step = self.opts.row_group_rows.max(1);
        let mut offset = 0;
        while offset < batch.num_rows() {
            let len = step.min(batch.num_rows() - offset);
            self.write_slice(folder, &batch.slice(offset, len))?;
            offset += len;
        }
        Ok(())
    }

    fn write_slice(&mut self, folder: &str, batch: &RecordBatch) -> Result<(), Error> {
        self.tick += 1;
        let i = match self.open.iter().position(|f| f.folder == folder) {
            Some(i) => i,
            None => self.open_file(folder)?,
        };
        let f = &mut self.open[i];
        f.last_used = self.tick;
        f.rows += batch.num_rows() as u64;
        let path = self.staging.join(&f.rel_path);
        f.writer.write(batch).map_err(|e| Error::parquet(&path, e))?;
        // Only flushed row groups count: the estimate of the open row group is of its size before
        // compression, several times too large, and would roll files early and unevenly.
        if f.writer.bytes_written() as u64 >= self.opts.target_file_bytes {
            let f = self.open.swap_remove(i);
            self.close(f)?;
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
        let writer = ArrowWriter::try_new(
            BufWriter::with_capacity(1 << 20, file),
            self.schema.clone(),
            Some(self.props.clone()),
        )
        .map_err(|e| Error::parquet(&path, e))?;
        self.open.push(OpenFile { folder: folder.to_string(), rel_path, writer, rows: 0, last_used: self.tick });
        Ok(self.open.len() - 1)
    }

    fn close(&mut self, f: OpenFile) -> Result<(), Error> {
        let path = self.staging.join(&f.rel_path);
        let buffered = f.writer.into_inner().map_err(|e| Error::parquet(&path, e))?;
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

/// Moves each staged file into `root`, one atomic rename per file, creating folders as needed.
pub fn commit(staging: &Path, root: &Path, files: &[WrittenFile]) -> Result<(), Error> {
    for f in files {
        let from = staging.join(&f.path);
        let to = root.join(&f.path);
        if let Some(dir) = to.parent() {
            fs::create_dir_all(dir).map_err(|e| Error::write(dir, e))?;
        }
        fs::rename(&from, &to).map_err(|e| Error::write(&to, e))?;
    }
    Ok(())
}
