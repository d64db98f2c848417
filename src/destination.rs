//! Where a run's files end up: a local folder, or a prefix in S3.
//!
//! Files are always written and closed in a local staging folder first (outside the table
//! location), then committed: renamed into a local DEST, or uploaded into an S3 DEST, one object
//! per file, as a multipart upload when the file is larger than a part. An S3 object becomes
//! visible only when its upload completes, so, as locally, a reader never sees a partial file.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

use crate::error::Error;
use crate::object_source::{RetryPolicy, StoreOptions, s3_store, split_s3_url, store_error, with_retries};
use crate::parquet_sink::{self, WrittenFile};

/// The output root of a run.
#[derive(Debug, Clone)]
pub enum Destination {
    Local(PathBuf),
    Store { url: String, store: Arc<dyn ObjectStore>, prefix: String },
}

impl Destination {
    /// A local path, or `s3://bucket/prefix`.
    pub fn parse(output: &str, opts: &StoreOptions) -> Result<Self, Error> {
        if output.starts_with("s3://") {
            let url = output.trim_end_matches('/').to_string();
            let (bucket, prefix) =
                split_s3_url(&url).ok_or_else(|| Error::Usage(format!("--output {output}: not s3://bucket/prefix")))?;
            let store = s3_store(bucket, opts).map_err(|cause| Error::Store { url: url.clone(), cause })?;
            let prefix = prefix.to_string();
            return Ok(Destination::Store { url, store, prefix });
        }
        let local = output.strip_prefix("file://").unwrap_or(output);
        if local.contains("://") {
            return Err(Error::Usage(format!("--output {output}: use a local folder, file:// or s3://bucket/prefix")));
        }
        Ok(Destination::Local(PathBuf::from(local)))
    }

    pub fn is_remote(&self) -> bool {
        matches!(self, Destination::Store { .. })
    }

    /// The root as the user named it.
    pub fn display(&self) -> String {
        match self {
            Destination::Local(p) => p.display().to_string(),
            Destination::Store { url, .. } => url.clone(),
        }
    }

    /// A local root that listing must skip (the output folder itself).
    pub fn local_root(&self) -> Option<&Path> {
        match self {
            Destination::Local(p) => Some(p),
            Destination::Store { .. } => None,
        }
    }

    /// The staging folder of run `run`: under DEST for a local DEST, in the system's temporary
    /// folder for an S3 DEST. Never inside the table location.
    pub fn staging(&self, run: &str) -> PathBuf {
        match self {
            Destination::Local(p) => p.join("_staging").join(run),
            Destination::Store { .. } => std::env::temp_dir().join("s3logs-staging").join(run),
        }
    }

    /// Creates what must exist before files are written (a local DEST's `data/`).
    pub fn prepare(&self) -> Result<(), Error> {
        if let Destination::Local(p) = self {
            let data = p.join("data");
            std::fs::create_dir_all(&data).map_err(|e| Error::write(&data, e))?;
        }
        Ok(())
    }

    /// Moves each staged file (paths relative to DEST) into place.
    pub fn commit(
        &self,
        staging: &Path,
        files: &[WrittenFile],
        rt: Option<&tokio::runtime::Runtime>,
        part_size: usize,
        retry: RetryPolicy,
    ) -> Result<(), Error> {
        match self {
            Destination::Local(root) => parquet_sink::commit(staging, root, files),
            Destination::Store { url, store, prefix } => {
                let rt = rt.ok_or_else(|| Error::Usage("an s3:// output needs the async runtime".into()))?;
                for f in files {
                    let key = if prefix.is_empty() { f.path.clone() } else { format!("{prefix}/{}", f.path) };
                    let target = format!("{url}/{}", f.path);
                    let (file, key) = (staging.join(&f.path), StorePath::from(key));
                    // Uploading the same bytes to the same key again is harmless, so a write that
                    // failed (or only seemed to) is simply repeated.
                    rt.block_on(with_retries(retry, || upload(store, &file, &key, part_size)))
                        .map_err(|e| store_error(&target, &e))?;
                }
                Ok(())
            }
        }
    }

    /// Removes the staging folder (and a local DEST's empty `_staging`).
    pub fn remove_staging(&self, staging: &Path) {
        let _ = std::fs::remove_dir_all(staging);
        if let Some(parent) = staging.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// Uploads one local file: a single PUT up to `part_size`, a multipart upload beyond.
async fn upload(
    store: &Arc<dyn ObjectStore>,
    file: &Path,
    key: &StorePath,
    part_size: usize,
) -> object_store::Result<()> {
    let local = |e: std::io::Error| object_store::Error::Generic { store: "local staging", source: Box::new(e) };
    let len = std::fs::metadata(file).map_err(local)?.len();
    if len as usize <= part_size {
        let bytes = std::fs::read(file).map_err(local)?;
        store.put(key, bytes.into()).await?;
        return Ok(());
    }
    let upload = store.put_multipart(key).await?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size);
    let mut reader = std::fs::File::open(file).map_err(local)?;
    let mut buf = vec![0u8; part_size];
    loop {
        let n = reader.read(&mut buf).map_err(local)?;
        if n == 0 {
            break;
        }
        if let Err(e) = writer.wait_for_capacity(4).await {
            let _ = writer.abort().await;
            return Err(e);
        }
        writer.write(&buf[..n]);
    }
    writer.finish().await?;
    Ok(())
}
