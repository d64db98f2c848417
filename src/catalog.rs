//! Keeps a Glue Data Catalog table in step with DEST (`convert --glue-table DB.TABLE`).
//!
//! The database and table are created when absent (the table from the same `TableInput`
//! `ddl --dialect glue-json` prints), and a table created here gets a partition for every
//! partition folder already in DEST. After that each run registers the partitions its commits
//! published (`BatchCreatePartition`; one that exists is fine). Before each commit the run
//! records the partitions it is about to publish in a create-only marker
//! `_state/catalog/pending/<run>-<n>.json`; once they are registered it deletes its markers.
//! A run killed, or refused by the catalog, between a commit and the registration leaves markers
//! that the next run registers first: the catalog is repaired, the table never converted again.
//! Glue's JSON API is called directly, signed with SigV4 (`aws-sigv4`), with the credentials
//! s3logs uses for S3.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use object_store::CredentialProvider;
use serde_json::{Value, json};

use crate::commit::destination::Destination;
use crate::error::Error;
use crate::parquet_sink::WrittenFile;
use crate::store::credentials::SdkCredentials;

/// Where the markers of partitions about to be published live, under DEST.
const PENDING: &str = "_state/catalog/pending";
/// Partitions per `BatchCreatePartition` request (Glue's limit).
const BATCH: usize = 100;

/// `--glue-table DB.TABLE` and how to reach Glue.
#[derive(Debug, Clone, Default)]
pub struct CatalogOptions {
    pub database: String,
    pub table: String,
    /// Glue's endpoint; otherwise `AWS_ENDPOINT_URL_GLUE`, `AWS_ENDPOINT_URL`, else AWS's.
    pub endpoint_url: Option<String>,
}

impl CatalogOptions {
    /// `DB.TABLE`, each letters, digits and underscores (what Glue allows), lower-cased.
    pub fn parse(v: &str) -> Result<CatalogOptions, String> {
        let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match v.split_once('.') {
            Some((db, t)) if ok(db) && ok(t) => Ok(CatalogOptions {
                database: db.to_ascii_lowercase(),
                table: t.to_ascii_lowercase(),
                endpoint_url: None,
            }),
            _ => Err(format!("{v:?}: give DATABASE.TABLE, each of letters, digits and underscores")),
        }
    }
}

/// One run's connection to the catalog table of its DEST.
pub struct Catalog {
    opts: CatalogOptions,
    dest: Destination,
    /// The table's `TableInput` (columns, SerDe, projection parameters for Athena).
    table_input: Value,
    /// The table's `data/` location, ending in `/`.
    data: String,
    endpoint: String,
    region: String,
    credentials: SdkCredentials,
    http: reqwest::Client,
    rt: tokio::runtime::Handle,
    /// The partitions this run published or is about to, and its markers.
    mine: Mutex<(BTreeSet<Vec<String>>, Vec<String>)>,
    markers: AtomicU64,
    owner: String,
}

fn catalog_error(opts: &CatalogOptions, cause: impl std::fmt::Display) -> Error {
    Error::Catalog { table: format!("{}.{}", opts.database, opts.table), cause: cause.to_string() }
}

/// The partition values of a data file's folder: `data/source_bucket=b/dt=2024-01-15/x.parquet`
/// gives `["b", "2024-01-15"]`; a file not under `data/` gives none.
fn partition_of(path: &str) -> Option<Vec<String>> {
    let folder = path.strip_prefix("data/")?.rsplit_once('/')?.0;
    folder.split('/').map(|level| level.split_once('=').map(|(_, v)| v.to_string())).collect()
}

impl Catalog {
    /// Connects to the catalog and makes sure the database and table exist; a table created here
    /// gets the partitions of every folder already in DEST.
    pub fn open(
        opts: &CatalogOptions,
        dest: &Destination,
        output: &str,
        table_input: Value,
        store: &crate::store::StoreOptions,
        rt: &tokio::runtime::Runtime,
        owner: String,
    ) -> Result<Catalog, Error> {
        let region = store.region.clone().unwrap_or_else(|| "us-east-1".into());
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let endpoint = opts
            .endpoint_url
            .clone()
            .or_else(|| env("AWS_ENDPOINT_URL_GLUE"))
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| format!("https://glue.{region}.amazonaws.com"));
        crate::store::install_tls();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| catalog_error(opts, format!("cannot make an HTTP client: {e}")))?;
        let data = crate::ddl::location(output, "data")?;
        let catalog = Catalog {
            opts: opts.clone(),
            dest: dest.clone(),
            table_input,
            data,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            region,
            credentials: SdkCredentials::for_profile(store.profile.clone()),
            http,
            rt: rt.handle().clone(),
            mine: Mutex::new(Default::default()),
            markers: AtomicU64::new(0),
            owner: owner.replace([':', '/'], "-"),
        };
        catalog.ensure_table()?;
        Ok(catalog)
    }

    fn ensure_table(&self) -> Result<(), Error> {
        let db = &self.opts.database;
        let created = json!({"DatabaseInput": {"Name": db, "Description": "S3 server access logs (s3logs)"}});
        self.call("CreateDatabase", created, &["AlreadyExistsException"])?;
        let get = json!({"DatabaseName": db, "Name": self.opts.table});
        if self.call("GetTable", get, &["EntityNotFoundException"])?.is_some() {
            return Ok(());
        }
        let mut input = self.table_input.clone();
        input["Name"] = Value::from(self.opts.table.clone());
        self.call("CreateTable", json!({"DatabaseName": db, "TableInput": input}), &["AlreadyExistsException"])?;
        // A table new to the catalog: the partitions DEST already holds.
        let by_bucket = self.table_input["PartitionKeys"].as_array().is_some_and(|k| k.len() == 2);
        let found = crate::ddl::found_in(&self.dest, Some(by_bucket), true)?;
        self.register(&found.partitions.into_iter().collect())
    }

    /// Records, before a commit, the partitions its files will publish (a create-only marker).
    pub fn intend(&self, files: &[WrittenFile]) -> Result<(), Error> {
        let parts: BTreeSet<Vec<String>> = files.iter().filter_map(|f| partition_of(&f.path)).collect();
        let mut mine = self.mine.lock().expect("not poisoned");
        if parts.is_subset(&mine.0) {
            return Ok(());
        }
        mine.0.extend(parts.iter().cloned());
        let body = serde_json::to_vec(&parts).expect("partition values serialize");
        // A fresh name each time (the run's random token and a count): never another's marker.
        loop {
            let n = self.markers.fetch_add(1, Ordering::Relaxed);
            let name = format!("{PENDING}/{}-{n:05}.json", self.owner);
            if self.dest.create(&name, &body)? {
                mine.1.push(name);
                return Ok(());
            }
        }
    }

    /// Registers the partitions of earlier runs' markers (runs killed or refused by the catalog
    /// after a commit), then deletes those markers.
    pub fn repair(&self) -> Result<usize, Error> {
        let markers = self.dest.list(PENDING, None)?;
        let mut parts = BTreeSet::new();
        for m in &markers {
            if let Some(bytes) = self.dest.read(m)? {
                let v: BTreeSet<Vec<String>> = serde_json::from_slice(&bytes)
                    .map_err(|e| Error::State { path: m.clone(), cause: e.to_string() })?;
                parts.extend(v);
            }
        }
        self.register(&parts)?;
        for m in &markers {
            self.dest.delete(m)?;
        }
        Ok(parts.len())
    }

    /// Registers this run's partitions and deletes its markers.
    pub fn finish(&self) -> Result<usize, Error> {
        let (parts, markers) = std::mem::take(&mut *self.mine.lock().expect("not poisoned"));
        self.register(&parts)?;
        for m in &markers {
            self.dest.delete(m)?;
        }
        Ok(parts.len())
    }

    fn register(&self, parts: &BTreeSet<Vec<String>>) -> Result<(), Error> {
        let sd = &self.table_input["StorageDescriptor"];
        let keys: Vec<String> = self.table_input["PartitionKeys"]
            .as_array()
            .map(|k| k.iter().filter_map(|c| c["Name"].as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let inputs: Vec<Value> = parts
            .iter()
            .filter(|values| values.len() == keys.len())
            .map(|values| {
                let folder: Vec<String> = keys.iter().zip(values).map(|(k, v)| format!("{k}={v}/")).collect();
                let mut sd = sd.clone();
                sd["Location"] = Value::from(format!("{}{}", self.data, folder.concat()));
                json!({"Values": values, "StorageDescriptor": sd})
            })
            .collect();
        for chunk in inputs.chunks(BATCH) {
            let body =
                json!({"DatabaseName": self.opts.database, "TableName": self.opts.table, "PartitionInputList": chunk});
            let answer = self.call("BatchCreatePartition", body, &[])?.unwrap_or_default();
            let refused: Vec<String> = answer["Errors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["ErrorDetail"]["ErrorCode"].as_str() != Some("AlreadyExistsException"))
                .map(|e| format!("{}: {}", e["PartitionValues"], e["ErrorDetail"]["ErrorMessage"]))
                .collect();
            if let Some(first) = refused.first() {
                return Err(catalog_error(&self.opts, format!("{} partitions refused, e.g. {first}", refused.len())));
            }
        }
        Ok(())
    }

    /// One Glue API call, tried again on throttling and server errors. `None` when Glue answers
    /// with one of the `expected` error types (such as "already exists").
    fn call(&self, action: &str, body: Value, expected: &[&str]) -> Result<Option<Value>, Error> {
        let body = serde_json::to_vec(&body).expect("a request serializes");
        let mut attempt = 0u32;
        loop {
            let outcome = self.rt.block_on(self.send(action, &body));
            let retry = match &outcome {
                Ok((status, _)) => status.is_server_error() || status.as_u16() == 429,
                Err(_) => true,
            };
            if retry && attempt < 4 {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(200 << attempt));
                continue;
            }
            let (status, text) = outcome.map_err(|e| catalog_error(&self.opts, format!("{action}: {e}")))?;
            let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if status.is_success() {
                return Ok(Some(answer));
            }
            let kind = answer["__type"].as_str().unwrap_or("").rsplit('#').next().unwrap_or("").to_string();
            if expected.contains(&kind.as_str()) {
                return Ok(None);
            }
            let message = answer["message"].as_str().or(answer["Message"].as_str()).unwrap_or(&text);
            let cause = format!("{action}: {kind}: {message} (HTTP {status})");
            return Err(catalog_error(&self.opts, crate::store::redact::redact(&cause)));
        }
    }

    async fn send(&self, action: &str, body: &[u8]) -> Result<(reqwest::StatusCode, String), String> {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
        let c = self.credentials.get_credential().await.map_err(|e| crate::store::describe(&e))?;
        let identity = aws_credential_types::Credentials::new(
            c.key_id.clone(),
            c.secret_key.clone(),
            c.token.clone(),
            None,
            "s3logs",
        )
        .into();
        let url = format!("{}/", self.endpoint);
        let target = format!("AWSGlue.{action}");
        let headers = [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target.as_str())];
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("glue")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let signable = SignableRequest::new("POST", url.as_str(), headers.iter().copied(), SignableBody::Bytes(body))
            .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(signable, &params).map_err(|e| e.to_string())?.into_parts();
        let mut request = self.http.post(&url).body(body.to_vec());
        for (k, v) in headers {
            request = request.header(k, v);
        }
        for (k, v) in instructions.headers() {
            request = request.header(k, v);
        }
        let response = request.send().await.map_err(|e| format!("cannot reach {}: {e}", self.endpoint))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        Ok((status, text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_come_from_data_folders() {
        assert_eq!(partition_of("data/dt=2024-01-15/part-1.parquet"), Some(vec!["2024-01-15".to_string()]));
        assert_eq!(
            partition_of("data/source_bucket=b.x/dt=2024-01-15/part-1.parquet"),
            Some(vec!["b.x".to_string(), "2024-01-15".to_string()])
        );
        assert_eq!(partition_of("rejects/part-1.parquet"), None);
        assert_eq!(partition_of("data/part-1.parquet"), None);
    }

    #[test]
    fn table_names_are_checked() {
        let o = CatalogOptions::parse("Logs.S3_Access").unwrap();
        assert_eq!((o.database.as_str(), o.table.as_str()), ("logs", "s3_access"));
        for bad in ["logs", "logs.", ".t", "a-b.t", "a.b.c"] {
            assert!(CatalogOptions::parse(bad).is_err(), "{bad}");
        }
    }
}
