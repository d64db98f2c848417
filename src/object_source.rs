//! Finding and reading log objects: files, directories (walked recursively in sorted order) and
//! standard input, with gzip and zstd detected by their magic bytes.
//!
//! Each object gets a stable name (its absolute path, or `stdin`) that becomes `source_object` in
//! every row, and a size that, with the name, identifies the run's input.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Error;

/// Where an object's bytes come from.
#[derive(Debug, Clone)]
enum Location {
    File(PathBuf),
    Memory(Arc<Vec<u8>>),
}

/// One log object to convert.
#[derive(Debug, Clone)]
pub struct SourceObject {
    /// The value of `source_object`: absolute path, or `stdin`.
    pub name: String,
    /// Size in bytes as stored (before decompression).
    pub size: u64,
    location: Location,
}

impl SourceObject {
    /// Reads the object's bytes, decompressed.
    pub fn read(&self) -> Result<(u64, Vec<u8>), Error> {
        let raw = match &self.location {
            Location::File(p) => std::fs::read(p).map_err(|e| Error::read(p, e))?,
            Location::Memory(b) => b.as_ref().clone(),
        };
        let stored = raw.len() as u64;
        Ok((stored, decode(&self.name, raw)?))
    }
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Decompresses gzip (all members) or zstd content; anything else is returned as it is.
pub fn decode(name: &str, raw: Vec<u8>) -> Result<Vec<u8>, Error> {
    let fail = |format, cause| Error::Decompress { path: name.to_string(), format, cause };
    if raw.starts_with(GZIP_MAGIC) {
        let mut out = Vec::with_capacity(raw.len() * 8);
        flate2::read::MultiGzDecoder::new(raw.as_slice()).read_to_end(&mut out).map_err(|e| fail("gzip", e))?;
        Ok(out)
    } else if raw.starts_with(ZSTD_MAGIC) {
        zstd::stream::decode_all(raw.as_slice()).map_err(|e| fail("zstd", e))
    } else {
        Ok(raw)
    }
}

fn absolute(p: &Path) -> Result<PathBuf, Error> {
    std::fs::canonicalize(p).map_err(|e| Error::read(p, e))
}

/// Lists the objects named by `sources`, in the order given, each directory walked recursively in
/// sorted order. Files under `exclude` (the output folder) are skipped.
pub fn list(sources: &[String], exclude: Option<&Path>) -> Result<Vec<SourceObject>, Error> {
    let exclude = exclude.and_then(|p| std::fs::canonicalize(p).ok());
    let mut out = Vec::new();
    let mut stdin_used = false;
    for s in sources {
        if s == "-" {
            if stdin_used {
                return Err(Error::Usage("standard input (-) can be named only once".into()));
            }
            stdin_used = true;
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).map_err(|e| Error::read("stdin", e))?;
            out.push(SourceObject {
                name: "stdin".into(),
                size: buf.len() as u64,
                location: Location::Memory(Arc::new(buf)),
            });
            continue;
        }
        let path = absolute(Path::new(s))?;
        let meta = std::fs::metadata(&path).map_err(|e| Error::read(&path, e))?;
        if !meta.is_dir() {
            out.push(file_object(path, meta.len()));
            continue;
        }
        for entry in walkdir::WalkDir::new(&path).follow_links(true).sort_by_file_name() {
            let entry = entry.map_err(|e| {
                let p = e.path().unwrap_or(&path).to_path_buf();
                Error::read(p, e.into_io_error().unwrap_or_else(|| std::io::Error::other("file system loop")))
            })?;
            if !entry.file_type().is_file() || exclude.as_ref().is_some_and(|x| entry.path().starts_with(x)) {
                continue;
            }
            let size = entry.metadata().map_err(|e| Error::read(entry.path(), e.into()))?.len();
            out.push(file_object(entry.into_path(), size));
        }
    }
    Ok(out)
}

fn file_object(path: PathBuf, size: u64) -> SourceObject {
    SourceObject { name: path.display().to_string(), size, location: Location::File(path) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_and_zstd_are_detected_by_magic() {
        let text = b"line one\nline two\n".to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&text).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(decode("a", gz).unwrap(), text);
        let zs = zstd::stream::encode_all(text.as_slice(), 1).unwrap();
        assert_eq!(decode("b", zs).unwrap(), text);
        assert_eq!(decode("c", text.clone()).unwrap(), text);
    }

    #[test]
    fn corrupt_gzip_is_an_error_naming_the_object() {
        let err = decode("s3://b/k.gz", vec![0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("s3://b/k.gz") && msg.contains("gzip"), "{msg}");
    }
}
