//! Writing a file (Parquet, and a large state file such as a unit's commit record) around the page
//! cache (`O_DIRECT`), where the file system allows it.
//!
//! Every file s3logs writes is fsynced before it counts, so the page cache holds nothing a reader
//! will ask for soon; filling it costs a copy of every byte plus fresh pages for it, which is
//! dear on a virtual machine whose host backs each page the guest touches anew (figures in
//! docs/performance.md, "Figures behind the code"). [`FileOut`] writes through aligned buffers instead: whole aligned
//! blocks while the file grows, the tail padded to a block and cut back with `set_len` at
//! [`FileOut::finish`]. Where `O_DIRECT` cannot be had (not Linux, a file system without it, or a
//! block size the buffer's alignment does not meet) it is an ordinary buffered file, with the
//! same bytes in it.
//!
//! A direct write returns only once the device has the bytes, and a row group's chunks are
//! appended in one burst of about 12 MiB: written on the encoding thread, the other core slept
//! through most of each. Each file has a writer thread, which takes up to
//! [`IN_FLIGHT`] full buffers at a time; written buffers are kept for the next ones to fill.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

/// The alignment of buffer, offsets and lengths: the largest logical block size in common use.
const BLOCK: usize = 4096;
/// Bytes written per `write`.
const CAPACITY: usize = 1 << 20;

/// `CAPACITY` bytes aligned to `BLOCK`: `bytes[start..start + CAPACITY]`.
struct Buffer {
    bytes: Vec<u8>,
    start: usize,
}

/// Buffers written out, for the next ones to fill, at most [`FREE_BUFFERS`].
static FREE: Mutex<Vec<Buffer>> = Mutex::new(Vec::new());

const FREE_BUFFERS: usize = 8;

/// Buffers handed to a file's writer and not yet written, at most: beyond them, filling waits
/// for the device.
const IN_FLIGHT: usize = 8;

impl Buffer {
    fn take() -> Self {
        FREE.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop().unwrap_or_else(Buffer::new)
    }

    fn give_back(self) {
        if self.start != self.bytes.as_ptr().align_offset(BLOCK) {
            return; // only a test misaligns one
        }
        let mut free = FREE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if free.len() < FREE_BUFFERS {
            free.push(self);
        }
    }

    fn new() -> Self {
        let bytes = vec![0; CAPACITY + BLOCK];
        let start = bytes.as_ptr().align_offset(BLOCK);
        Buffer { bytes, start }
    }

    fn get(&self, len: usize) -> &[u8] {
        &self.bytes[self.start..self.start + len]
    }

    fn get_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + CAPACITY]
    }
}

/// The writing end of a file, on its writer thread.
struct Sink {
    path: PathBuf,
    file: File,
    direct: bool,
}

impl Sink {
    /// Writes all of `bytes` (a multiple of `BLOCK` while direct).
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut done = 0;
        while done < bytes.len() {
            match self.file.write(&bytes[done..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if self.direct && e.raw_os_error() == Some(invalid_argument()) => {
                    // The file system refused the alignment: go on buffered, from where it stopped.
                    let at = self.file.stream_position()?;
                    self.file = OpenOptions::new().write(true).open(&self.path)?;
                    self.file.seek(SeekFrom::Start(at))?;
                    self.direct = false;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A file being written, through aligned buffers handed to its writer thread.
pub struct FileOut {
    /// A second handle to the file, to fsync it with.
    handle: File,
    direct: bool,
    fill: Buffer,
    len: usize,
    /// Bytes handed to `write` so far.
    written: u64,
    /// To the writer thread: full buffers and the bytes of each to write.
    full: Option<SyncSender<(Buffer, usize)>>,
    writer: Option<JoinHandle<io::Result<Sink>>>,
}

impl FileOut {
    /// Creates (or truncates) `path`, with `O_DIRECT` if `direct` and the file system takes it.
    pub fn create(path: &Path, direct: bool) -> io::Result<Self> {
        let opened = if direct { open_direct(path) } else { None };
        let (file, direct) = match opened {
            Some(file) => (file, true),
            None => (File::create(path)?, false),
        };
        let handle = file.try_clone()?;
        let mut sink = Sink { path: path.to_path_buf(), file, direct };
        let (full, to_write) = sync_channel::<(Buffer, usize)>(IN_FLIGHT);
        let writer = std::thread::Builder::new().name("write".into()).spawn(move || {
            for (buf, len) in to_write {
                sink.write_all(buf.get(len))?;
                Buffer::give_back(buf);
            }
            Ok(sink)
        })?;
        Ok(FileOut { handle, direct, fill: Buffer::take(), len: 0, written: 0, full: Some(full), writer: Some(writer) })
    }

    /// The file, for a second handle to fsync it with.
    pub fn file(&self) -> &File {
        &self.handle
    }

    /// Hands the filled buffer's first `len` bytes to the writer (waiting while it holds
    /// [`IN_FLIGHT`] of them) and takes an empty buffer.
    fn hand_over(&mut self, len: usize) -> io::Result<()> {
        let filled = std::mem::replace(&mut self.fill, Buffer::take());
        self.len = 0;
        self.send(filled, len)
    }

    fn send(&mut self, filled: Buffer, len: usize) -> io::Result<()> {
        if self.full.as_ref().is_none_or(|f| f.send((filled, len)).is_err()) {
            return Err(self.writer_error());
        }
        Ok(())
    }

    /// Why the writer stopped.
    fn writer_error(&mut self) -> io::Error {
        self.full = None;
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            Some(Err(_)) => io::Error::other("the file's writer thread panicked"),
            _ => io::Error::other("the file's writer thread stopped"),
        }
    }

    /// Writes what is buffered, padded to a block while direct, and waits for the writer.
    fn finish_sink(mut self) -> io::Result<Sink> {
        let len = self.len;
        let padded = if self.direct { len.div_ceil(BLOCK) * BLOCK } else { len };
        self.fill.get_mut()[len..padded].fill(0);
        let last = std::mem::replace(&mut self.fill, Buffer { bytes: Vec::new(), start: 0 });
        self.send(last, padded)?;
        self.full = None;
        let sink = match self.writer.take().map(JoinHandle::join) {
            Some(Ok(result)) => result?,
            _ => return Err(io::Error::other("the file's writer thread panicked")),
        };
        if padded > len {
            sink.file.set_len(self.written)?;
        }
        Ok(sink)
    }

    /// Writes what is buffered, pads no more than the file's last block, and returns the file,
    /// holding exactly the bytes written to it (not yet fsynced).
    pub fn finish(self) -> io::Result<File> {
        self.finish_sink().map(|sink| sink.file)
    }
}

impl Write for FileOut {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CAPACITY - self.len);
        self.fill.get_mut()[self.len..self.len + n].copy_from_slice(&data[..n]);
        self.len += n;
        self.written += n as u64;
        if self.len == CAPACITY {
            self.hand_over(CAPACITY)?;
        }
        Ok(n)
    }

    /// Writes nothing until a buffer is full: a partial block cannot be written directly, and
    /// nothing reads the file before [`FileOut::finish`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// State files this large go around the page cache when asked: a unit's commit record of
/// thousands of objects is written at the unit's end while the parsers wait (docs/performance.md,
/// "Figures behind the code").
const DIRECT_FROM: usize = 1 << 20;

/// Writes `bytes` as the file `path` (created or truncated) and fsyncs it: around the page cache
/// when `direct` and they are at least [`DIRECT_FROM`].
pub fn write_synced(path: &Path, bytes: &[u8], direct: bool) -> io::Result<()> {
    if direct && bytes.len() >= DIRECT_FROM {
        let mut f = FileOut::create(path, true)?;
        f.write_all(bytes)?;
        return f.finish()?.sync_all();
    }
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new().write(true).create(true).truncate(true).custom_flags(libc::O_DIRECT).open(path).ok()
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_: &Path) -> Option<File> {
    None
}

#[cfg(unix)]
fn invalid_argument() -> i32 {
    libc::EINVAL
}

#[cfg(not(unix))]
fn invalid_argument() -> i32 {
    -1
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use proptest::prelude::*;

    use super::{BLOCK, CAPACITY, DIRECT_FROM, FileOut, write_synced};

    /// Bytes that differ from offset to offset, so a block written twice or out of place shows.
    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ (i / 251) as u8).collect()
    }

    /// A state file holds its bytes exactly, written around the page cache or not, above and
    /// below the size from which it is, over a longer file left at the same path.
    #[test]
    fn state_files_hold_their_bytes_either_way() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.json");
        for len in [0, 10, DIRECT_FROM - 1, DIRECT_FROM, 3 * DIRECT_FROM + 123, 5] {
            for direct in [true, false] {
                write_synced(&path, &data(len), direct).unwrap();
                assert!(std::fs::read(&path).unwrap() == data(len), "{len} bytes, direct {direct}");
            }
        }
    }

    /// Writes `data` in pieces of the given sizes (the last piece takes the rest) and reads the
    /// file back.
    fn write_in_pieces(out: FileOut, data: &[u8], pieces: &[usize], path: &std::path::Path) -> Vec<u8> {
        let mut out = out;
        let mut rest = data;
        for &n in pieces {
            let (piece, after) = rest.split_at(n.min(rest.len()));
            out.write_all(piece).unwrap();
            rest = after;
        }
        out.write_all(rest).unwrap();
        out.flush().unwrap();
        let file = out.finish().unwrap();
        file.sync_all().unwrap();
        assert_eq!(file.metadata().unwrap().len(), data.len() as u64);
        std::fs::read(path).unwrap()
    }

    #[test]
    fn a_file_holds_exactly_the_bytes_written_direct_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let sizes = [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, CAPACITY - 1, CAPACITY, CAPACITY + 1, 3 * CAPACITY + 5000];
        for direct in [true, false] {
            for len in sizes {
                let data = data(len);
                let back = write_in_pieces(FileOut::create(&path, direct).unwrap(), &data, &[7, BLOCK], &path);
                assert!(back == data, "direct {direct}, {len} bytes: the file differs");
            }
        }
        // Creating truncates: a shorter file after a longer one holds only its own bytes.
        let back = write_in_pieces(FileOut::create(&path, true).unwrap(), b"short", &[], &path);
        assert_eq!(back, b"short");
    }

    #[test]
    fn a_refused_direct_write_goes_on_buffered_without_losing_or_repeating_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut out = FileOut::create(&path, true).unwrap();
        assert!(out.direct, "the test folder's file system does not take O_DIRECT: this test cannot run here");
        let data = data(3 * CAPACITY + 123);
        // A buffer written directly, then the next one moved one byte off its alignment: the
        // kernel refuses its write (EINVAL) and the file goes on buffered.
        out.write_all(&data[..CAPACITY]).unwrap();
        out.fill.start += 1;
        out.write_all(&data[CAPACITY..]).unwrap();
        let sink = out.finish_sink().unwrap();
        assert!(!sink.direct, "the misaligned write was not refused");
        sink.file.sync_all().unwrap();
        assert!(std::fs::read(&path).unwrap() == data, "the file differs from what was written");
    }

    /// A failed write on the writer thread reaches the caller: at a later write, or at finish.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_failed_write_is_reported() {
        let mut out = FileOut::create(std::path::Path::new("/dev/full"), false).unwrap();
        let data = data(3 * CAPACITY);
        let error = match out.write_all(&data) {
            Err(e) => e,
            Ok(()) => out.finish().expect_err("/dev/full took 3 MiB"),
        };
        assert_eq!(error.raw_os_error(), Some(libc::ENOSPC), "{error}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn any_pieces_give_the_same_file(len in 0..3 * CAPACITY, pieces in prop::collection::vec(0..2 * CAPACITY, 0..6)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            let data = data(len);
            let back = write_in_pieces(FileOut::create(&path, true).unwrap(), &data, &pieces, &path);
            prop_assert!(back == data);
        }
    }
}
