//! Reading log objects: whole (local files, fetched S3 bodies) or as a stream of blocks (large
//! objects, standard input, pipes), with gzip and zstd detected by their magic bytes and every
//! decompression capped, so memory stays bounded whatever the compression ratio.

use std::io::Read;
use std::path::Path;

use crate::error::Error;

use crate::source::SourceObject;

pub(crate) const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

pub(crate) const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// A local file's bytes, read into a buffer of the size the listing saw. `std::fs::read` (and
/// `File::read_to_end`) ask the file system for the size again first, one more system call per
/// object, which shows with 50,000 small objects. The buffer is read into as it comes from the
/// allocator: zeroing it first wrote every input byte once more (docs/performance.md, "Figures
/// behind the code"). A file that changed size since the listing is still read to its end. One
/// that did not takes one read: asked for a byte more than the listing saw, read(2) of a regular
/// file gives less than asked only at the file's end, so a second read would only say what the
/// first did (a file that grows after either is read as it was then).
pub(crate) fn read_file(p: &Path, listed: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::io::AsRawFd;
    let f = std::fs::File::open(p)?;
    let listed = usize::try_from(listed).unwrap_or(usize::MAX - 1);
    let mut buf: Vec<u8> = Vec::with_capacity(listed.saturating_add(1).min(1 << 30));
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.len());
        }
        let spare = buf.spare_capacity_mut();
        // SAFETY: read(2) writes at most `spare.len()` bytes at the start of the buffer's unused
        // capacity, and the count it returns is how many it wrote; no reference to the
        // uninitialized bytes is made.
        let asked = spare.len();
        let n = unsafe { libc::read(f.as_raw_fd(), spare.as_mut_ptr().cast(), asked) };
        match n {
            0 => break,
            n if n > 0 => {
                // SAFETY: the `n` bytes after the buffer's length were just written by read(2).
                unsafe { buf.set_len(buf.len() + n as usize) };
                if (n as usize) < asked && buf.len() == listed {
                    break; // short, where the listing said the file ends: its end
                }
            }
            _ => match std::io::Error::last_os_error() {
                e if e.kind() == std::io::ErrorKind::Interrupted => {}
                e => return Err(e),
            },
        }
    }
    Ok(buf)
}

/// Decompresses gzip (all members) or zstd content; anything else is returned as it is. `None`
/// when the content is more than `cap` bytes: decompression stops there, whatever the ratio.
pub fn decode(name: &str, raw: Vec<u8>, cap: usize) -> Result<Option<Vec<u8>>, Error> {
    let fail = |format, cause| Error::Decompress { path: name.to_string(), format, cause };
    let capped = |reader: &mut dyn Read, format| -> Result<Option<Vec<u8>>, Error> {
        let mut out = Vec::with_capacity((raw.len() * 8).min(cap));
        reader.take(cap as u64 + 1).read_to_end(&mut out).map_err(|e| fail(format, e))?;
        Ok((out.len() <= cap).then_some(out))
    };
    if raw.starts_with(GZIP_MAGIC) {
        capped(&mut flate2::read::MultiGzDecoder::new(raw.as_slice()), "gzip")
    } else if raw.starts_with(ZSTD_MAGIC) {
        let mut decoder = zstd::stream::read::Decoder::new(raw.as_slice()).map_err(|e| fail("zstd", e))?;
        capped(&mut decoder, "zstd")
    } else {
        Ok((raw.len() <= cap).then_some(raw))
    }
}

/// Opens a named pipe or device for reading without waiting for a writer: a FIFO that nobody
/// writes to reads as empty instead of blocking the run (with DEST's lease held) for ever.
pub(crate) fn open_pipe(p: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(p)?;
    // Reads block again once it is open: a FIFO without a writer then reads as its end.
    // SAFETY: F_GETFL and F_SETFL on a descriptor this function owns; no memory is passed.
    let flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(f)
}

/// Reads from `reader` until `buf` is full or the stream ends, and returns the bytes read and
/// whether it ended. The caller keeps `buf` from block to block: pipes and S3 response bodies hand
/// over 16-64 KiB a read, and room made again for each read (or each block) zeroed it every time.
pub(crate) fn fill(reader: &mut dyn Read, buf: &mut [u8], o: &SourceObject) -> Result<(usize, bool), Error> {
    let mut len = 0;
    while len < buf.len() {
        match reader.read(&mut buf[len..]) {
            Ok(0) => return Ok((len, true)),
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(o.stream_error(e)),
        }
    }
    Ok((len, false))
}

/// An object's decompressed stream, ending after `left` bytes; [`Capped::rest`] then says whether
/// the object goes on.
pub(crate) struct Capped<'a> {
    pub(crate) inner: &'a mut dyn Read,
    pub(crate) left: u64,
    pub(crate) read: u64,
}

impl Read for Capped<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        self.read += n as u64;
        Ok(n)
    }
}

impl Capped<'_> {
    /// The first bytes past the cap (up to `max`), when the cap was reached and the object goes on.
    pub(crate) fn rest(&mut self, max: usize, o: &SourceObject) -> Result<Vec<u8>, Error> {
        let mut rest = Vec::new();
        if self.left == 0 {
            (&mut *self.inner).take(max as u64).read_to_end(&mut rest).map_err(|e| o.stream_error(e))?;
        }
        Ok(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    /// The listed size is only where reading starts: a file that grew or shrank since the
    /// listing is read whole, and so is an empty one.
    #[test]
    fn local_files_are_read_whole_whatever_size_was_listed() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 1, 5, 4096, 100_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let p = dir.path().join(format!("f{len}"));
            std::fs::write(&p, &data).unwrap();
            for listed in [0, len as u64 / 2, len as u64, len as u64 + 10, 3 * len as u64] {
                assert_eq!(read_file(&p, listed).unwrap(), data, "{len} bytes, {listed} listed");
            }
        }
        assert_eq!(read_file(&dir.path().join("gone"), 1).unwrap_err().kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn gzip_and_zstd_are_detected_by_magic() {
        let text = b"line one\nline two\n".to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&text).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(decode("a", gz, 1 << 20).unwrap(), Some(text.clone()));
        let zs = zstd::stream::encode_all(text.as_slice(), 1).unwrap();
        assert_eq!(decode("b", zs, 1 << 20).unwrap(), Some(text.clone()));
        assert_eq!(decode("c", text.clone(), 1 << 20).unwrap(), Some(text));
    }

    /// A small object whose content is larger than the cap is not decompressed past the cap
    /// (`None`: it is streamed instead), whatever the ratio: 64 MiB of zeros in a few KiB.
    #[test]
    fn decompression_stops_at_the_cap() {
        let zeros = vec![0u8; 64 << 20];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&zeros).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::stream::encode_all(zeros.as_slice(), 19).unwrap();
        assert!(gz.len() < 100 << 10 && zs.len() < 100 << 10, "{} {}", gz.len(), zs.len());
        for raw in [gz, zs] {
            assert_eq!(decode("bomb", raw.clone(), 1 << 20).unwrap(), None);
            assert_eq!(decode("bomb", raw, 64 << 20).unwrap().map(|v| v.len()), Some(64 << 20), "exactly the cap");
        }
        assert_eq!(decode("plain", vec![b'x'; 11], 10).unwrap(), None);
    }

    #[test]
    fn corrupt_gzip_is_an_error_naming_the_object() {
        let err = decode("s3://b/k.gz", vec![0x1f, 0x8b, 8, 0, 1, 2, 3], 1 << 20).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("s3://b/k.gz") && msg.contains("gzip"), "{msg}");
    }
}
