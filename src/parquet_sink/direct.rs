//! Writing a Parquet file around the page cache (`O_DIRECT`), where the file system allows it.
//!
//! Every file s3logs writes is fsynced before it counts, so the page cache holds nothing a reader
//! will ask for soon; filling it costs a copy of every byte plus fresh pages for it, which on the
//! project's virtual machine is 0.3-0.4 s of CPU per 200 MB of Parquet (the host backs each page
//! the guest touches anew). [`FileOut`] writes through an aligned buffer instead: whole aligned
//! blocks while the file grows, the tail padded to a block and cut back with `set_len` at
//! [`FileOut::finish`]. Where `O_DIRECT` cannot be had (not Linux, a file system without it, or a
//! block size the buffer's alignment does not meet) it is an ordinary buffered file, with the
//! same bytes in it.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The alignment of buffer, offsets and lengths: the largest logical block size in common use.
const BLOCK: usize = 4096;
/// Bytes written per `write`.
const CAPACITY: usize = 1 << 20;

/// A file being written, through an aligned buffer.
pub struct FileOut {
    path: PathBuf,
    file: File,
    direct: bool,
    /// `CAPACITY + BLOCK` bytes; the buffer is `buf[start..start + CAPACITY]`, aligned to `BLOCK`.
    buf: Vec<u8>,
    start: usize,
    len: usize,
    /// Bytes handed to `write` so far.
    written: u64,
}

impl FileOut {
    /// Creates (or truncates) `path`, with `O_DIRECT` if `direct` and the file system takes it.
    pub fn create(path: &Path, direct: bool) -> io::Result<Self> {
        let opened = if direct { open_direct(path) } else { None };
        let (file, direct) = match opened {
            Some(file) => (file, true),
            None => (File::create(path)?, false),
        };
        let buf = vec![0; CAPACITY + BLOCK];
        let start = buf.as_ptr().align_offset(BLOCK);
        Ok(FileOut { path: path.to_path_buf(), file, direct, buf, start, len: 0, written: 0 })
    }

    /// The file, for a second handle to fsync it with.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Writes the buffer's first `len` bytes (`len` a multiple of `BLOCK` while direct).
    fn write_out(&mut self, len: usize) -> io::Result<()> {
        let mut done = 0;
        while done < len {
            match self.file.write(&self.buf[self.start + done..self.start + len]) {
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

    /// Writes what is buffered, pads no more than the file's last block, and returns the file,
    /// holding exactly the bytes written to it (not yet fsynced).
    pub fn finish(mut self) -> io::Result<File> {
        let len = self.len;
        let padded = if self.direct { len.div_ceil(BLOCK) * BLOCK } else { len };
        self.buf[self.start + len..self.start + padded].fill(0);
        self.write_out(padded)?;
        if padded > len {
            self.file.set_len(self.written)?;
        }
        Ok(self.file)
    }
}

impl Write for FileOut {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CAPACITY - self.len);
        let at = self.start + self.len;
        self.buf[at..at + n].copy_from_slice(&data[..n]);
        self.len += n;
        self.written += n as u64;
        if self.len == CAPACITY {
            self.write_out(CAPACITY)?;
            self.len = 0;
        }
        Ok(n)
    }

    /// Writes nothing until a block is full: a partial block cannot be written directly, and
    /// nothing reads the file before [`FileOut::finish`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
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

    use super::{BLOCK, CAPACITY, FileOut};

    /// Bytes that differ from offset to offset, so a block written twice or out of place shows.
    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ (i / 251) as u8).collect()
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
        let data = data(2 * CAPACITY + 123);
        // Two blocks written directly, then the buffer moved one byte off its alignment: the
        // kernel refuses the next direct write (EINVAL) and the file goes on buffered.
        out.write_all(&data[..2 * BLOCK]).unwrap();
        out.write_out(out.len).unwrap();
        out.len = 0;
        out.start += 1;
        out.write_all(&data[2 * BLOCK..]).unwrap();
        assert!(!out.direct, "the misaligned write was not refused");
        let file = out.finish().unwrap();
        file.sync_all().unwrap();
        assert!(std::fs::read(&path).unwrap() == data, "the file differs from what was written");
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
