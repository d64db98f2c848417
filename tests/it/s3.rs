//! `s3://` sources against a real S3 API: moto's server, started on a free loopback port by this
//! harness and stopped when the test ends. Credentials are fake and always set, so nothing falls
//! back to an instance metadata endpoint.

use s3logs_testkit::helpers as common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

/// A server process a test started (moto, a fake portal, a proxy), killed and reaped when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A moto server on loopback, killed on drop.
struct Moto {
    _server: Server,
    endpoint: String,
}

/// A loopback port nobody listens on yet, for a server a test starts.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until a server listens on loopback `port`, at most `within`; `what` names it if not.
fn wait_for_port(port: u16, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Moto {
    fn start() -> Moto {
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            // S3LOGS_TEST_MOTO_LOG=FILE appends moto's request log there (to count requests).
            .stderr(match std::env::var("S3LOGS_TEST_MOTO_LOG") {
                Ok(f) => Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(f).unwrap()),
                Err(_) => Stdio::null(),
            })
            .spawn()
            .expect("python3 -m moto.server (pip install 'moto[server]')");
        wait_for_port(port, Duration::from_secs(30), "moto");
        Moto { _server: Server(child), endpoint: format!("http://127.0.0.1:{port}") }
    }

    /// A client for `bucket` on this server (object_store, the crate s3logs reads S3 with), and
    /// a runtime to drive it: no Python process per call.
    fn client(&self, bucket: &str) -> (tokio::runtime::Runtime, object_store::aws::AmazonS3) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        s3logs::install_tls();
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(bucket)
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap();
        (rt, store)
    }

    /// The keys under `s3://bucket/prefix` (a key prefix, not only a folder), sorted.
    fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        use futures::TryStreamExt;
        use object_store::ObjectStore;
        let (rt, store) = self.client(bucket);
        let folder = prefix.rsplit_once('/').map(|(folder, _)| object_store::path::Path::from(folder));
        let metas: Vec<object_store::ObjectMeta> = rt.block_on(store.list(folder.as_ref()).try_collect()).unwrap();
        let mut keys: Vec<String> =
            metas.into_iter().map(|m| m.location.to_string()).filter(|k| k.starts_with(prefix)).collect();
        keys.sort();
        keys
    }

    /// The object `key` of `bucket`.
    fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        read(&self.client(bucket), key)
    }

    /// Downloads every object under `s3://bucket/prefix/` into `dir`, keeping relative paths.
    fn download(&self, bucket: &str, prefix: &str, dir: &Path) {
        let client = self.client(bucket);
        for key in self.keys(bucket, &format!("{prefix}/")) {
            let to = dir.join(&key[prefix.len() + 1..]);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::write(to, read(&client, &key)).unwrap();
        }
    }

    /// Runs a boto3 `script` (with a client `s3` for this server) and returns its output lines.
    fn python(&self, script: &str) -> Vec<String> {
        let script = format!(
            "import boto3\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='test', aws_secret_access_key='test')\n{script}",
            self.endpoint
        );
        let out = Command::new("python3").args(["-c", &script]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    }

    /// The keys of the multipart uploads in `bucket` that are neither completed nor aborted
    /// (boto3: object_store cannot list them).
    fn multipart_uploads(&self, bucket: &str) -> Vec<String> {
        self.python(&format!(
            "for u in s3.list_multipart_uploads(Bucket='{bucket}').get('Uploads', []):\n    print(u['Key'])\n"
        ))
    }

    /// Deletes every object under `s3://bucket/prefix`, and says how many there were.
    fn delete_prefix(&self, bucket: &str, prefix: &str) -> usize {
        use object_store::ObjectStoreExt;
        let keys = self.keys(bucket, prefix);
        let (rt, store) = self.client(bucket);
        for key in &keys {
            rt.block_on(store.delete(&key.as_str().into())).unwrap();
        }
        keys.len()
    }

    /// Creates `bucket` (an unsigned `PUT /bucket`, which moto takes) and uploads `files` as
    /// `(key, local path)`.
    fn upload(&self, bucket: &str, files: &[(String, PathBuf)]) {
        use std::io::{Read, Write};
        let mut http = TcpStream::connect(self.endpoint.trim_start_matches("http://")).unwrap();
        write!(http, "PUT /{bucket} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        http.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "creating bucket {bucket}: {answer}");
        use object_store::ObjectStoreExt;
        let (rt, store) = self.client(bucket);
        for (key, path) in files {
            let body = std::fs::read(path).unwrap();
            // The key as S3 names it (`%` and all), as s3logs' own store paths do.
            let key = object_store::path::Path::parse(key).unwrap();
            rt.block_on(store.put(&key, body.into())).unwrap();
        }
    }
}

/// The object `key` through `client` (see [`Moto::client`]).
fn read((rt, store): &(tokio::runtime::Runtime, object_store::aws::AmazonS3), key: &str) -> Vec<u8> {
    use object_store::ObjectStoreExt;
    rt.block_on(async { store.get(&key.into()).await.unwrap().bytes().await.unwrap() }).to_vec()
}

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/logs")
}

/// The sample objects as `(key under logs/, local path)`, in key order.
fn sample_keys() -> Vec<(String, PathBuf)> {
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(testdata())
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (format!("logs/{}", p.file_name().unwrap().to_str().unwrap()), p))
        .collect();
    files.sort();
    files
}

/// Store options that reach `moto` with fake keys, quick retries, and an optional fault layer.
fn moto_store(moto: &Moto, layer: Option<s3logs::StoreLayer>) -> s3logs::StoreOptions {
    use s3logs::RetryPolicy;
    use s3logs::StoreOptions;
    StoreOptions {
        endpoint_url: Some(moto.endpoint.clone()),
        region: Some("us-east-1".into()),
        static_credentials: Some(("test".into(), "test".into())),
        retry: RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(1),
            timeout: Duration::from_millis(500),
            ..Default::default()
        },
        layer,
        profile: None,
        ..Default::default()
    }
}

/// The binary with `args`, reaching moto at `endpoint` with fake keys (never instance metadata).
fn s3logs_command<S: AsRef<std::ffi::OsStr>>(args: &[S], endpoint: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_s3logs"));
    c.args(args)
        .args(["--endpoint-url", endpoint])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL");
    c
}

fn s3logs(args: &[&str], endpoint: &str) -> Output {
    s3logs_command(args, endpoint).output().unwrap()
}

fn rows(dir: &Path) -> Vec<Map<String, Value>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.extend(common::file_rows(&p));
            }
        }
    }
    out.sort_by_key(|r| (r["source_object"].as_str().unwrap().to_string(), r["source_line"].as_i64().unwrap()));
    out
}

fn object_name(r: &Map<String, Value>) -> String {
    r["source_object"].as_str().unwrap().rsplit('/').next().unwrap().to_string()
}

#[test]
fn s3_sources_give_the_same_rows_as_local_files() {
    let moto = Moto::start();
    let mut files = sample_keys();
    // A neighbour that shares the prefix's first characters but not the prefix.
    files.push(("logs-old/2024-03-15-00-00-00-AAAAAAAAAAAAAAAA".into(), testdata().join(&files[0].1)));
    moto.upload("logs-bucket", &files);

    let tmp = tempfile::tempdir().unwrap();
    let (local, remote) = (tmp.path().join("local"), tmp.path().join("remote"));
    let out = Command::new(env!("CARGO_BIN_EXE_s3logs"))
        .args(["convert", testdata().to_str().unwrap(), "--output", local.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    // The report goes to S3 too: a bucket that does not exist is refused before any work.
    let args = ["convert", "s3://logs-bucket/logs/", "--output", remote.to_str().unwrap(), "--report"];
    let out = s3logs(&[&args[..], &["s3://no-such-reports/r.json"]].concat(), &moto.endpoint);
    assert_eq!(out.status.code(), Some(74), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was done"));
    assert!(!remote.exists());
    let out = s3logs(&[&args[..], &["s3://logs-bucket/"]].concat(), &moto.endpoint);
    assert_eq!(out.status.code(), Some(2), "a report names an object: {}", String::from_utf8_lossy(&out.stderr));
    let out = s3logs(&[&args[..], &["s3://logs-bucket/reports/run.json"]].concat(), &moto.endpoint);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&moto.get("logs-bucket", "reports/run.json")).unwrap();
    assert_eq!((&report["rows_written"], &report["committed"]), (&Value::from(23), &Value::from(true)));

    // A local download of the bucket converted into the DEST that holds the bucket's objects:
    // the same deliveries (file name and size), not converted twice.
    let out = Command::new(env!("CARGO_BIN_EXE_s3logs"))
        .args(["convert", testdata().to_str().unwrap(), "--output", remote.to_str().unwrap(), "--report", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["nothing_new"], true, "{report}");
    let elsewhere = report["objects_elsewhere"].as_array().unwrap();
    assert_eq!(elsewhere.len(), 3, "{report}");
    assert!(elsewhere.iter().all(|e| e["converted_as"].as_str().unwrap().starts_with("s3://logs-bucket/logs/")));

    for folder in ["data", "rejects"] {
        let (l, r) = (rows(&local.join(folder)), rows(&remote.join(folder)));
        assert_eq!(l.len(), r.len(), "{folder}");
        for (a, b) in l.iter().zip(&r) {
            assert_eq!(object_name(a), object_name(b));
            assert!(b["source_object"].as_str().unwrap().starts_with("s3://logs-bucket/logs/"), "{b:?}");
            for (k, v) in a {
                if k != "source_object" {
                    assert_eq!(&b[k], v, "{folder} column {k}");
                }
            }
        }
    }
    assert_eq!(rows(&remote.join("data")).len(), 23);

    // s3 -> s3: the same rows again, downloaded from the output bucket; nothing but data Parquet
    // under data/, and no staging left in the bucket.
    moto.upload("analytics", &[]);
    let out = s3logs(&["convert", "s3://logs-bucket/logs/", "--output", "s3://analytics/s3logs/"], &moto.endpoint);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let fetched = tmp.path().join("fetched");
    moto.download("analytics", "s3logs", &fetched);
    let mut keys: Vec<String> = Vec::new();
    let mut stack = vec![fetched.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { stack.push(p) } else { keys.push(p.strip_prefix(&fetched).unwrap().display().to_string()) }
        }
    }
    keys.sort();
    // The state is beside the table: one commit, the released lease, the commit's published mark;
    // no staging left.
    let unit =
        format!("_state/units/{}/", s3logs::unit_of("s3://logs-bucket/logs/2024-03-15-00-10-11-4C3B2A1908F7E6D5"));
    let state: Vec<&String> = keys.iter().filter(|k| k.starts_with("_state/")).collect();
    assert_eq!(state.len(), 3, "{keys:?}");
    assert!(state.iter().all(|k| k.starts_with(&unit)), "the sample's one unit: {keys:?}");
    assert!(state[0].starts_with(&format!("{unit}commits/")) && state[1].starts_with(&format!("{unit}lease/")));
    assert_eq!(state[2], &format!("{unit}published/00000000000000000001.json"), "{keys:?}");
    keys.retain(|k| !k.starts_with("_state/"));
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(
        keys[0].starts_with("data/dt=2024-03-14/part-") && keys[1].starts_with("data/dt=2024-03-15/part-"),
        "{keys:?}"
    );
    assert!(keys[2].starts_with("rejects/part-"), "{keys:?}");
    for folder in ["data", "rejects"] {
        let (a, b) = (rows(&remote.join(folder)), rows(&fetched.join(folder)));
        assert_eq!(a, b, "{folder}: s3 -> s3 differs from s3 -> local");
    }

    // `ddl` on an S3 DEST reads the layout and the first day from it, as on a local one; with
    // `bucket,dt` the projection enumerates the source buckets found (records of 2024-03-14 sit
    // in a day before the first delivery's).
    let ddl = |dest: &str| String::from_utf8_lossy(&s3logs(&["ddl", dest], &moto.endpoint).stdout).into_owned();
    let athena = ddl("s3://analytics/s3logs/");
    assert!(athena.contains("PARTITIONED BY (`dt` string)"), "{athena}");
    assert!(athena.contains("'projection.dt.range' = '2024-03-14,NOW'"), "{athena}");
    let args =
        ["convert", "s3://logs-bucket/logs/", "--output", "s3://analytics/by-bucket", "--partition-by", "bucket,dt"];
    assert!(s3logs(&args, &moto.endpoint).status.success());
    let athena = ddl("s3://analytics/by-bucket");
    assert!(athena.contains("PARTITIONED BY (`source_bucket` string, `dt` string)"), "{athena}");
    assert!(
        athena.contains("'projection.source_bucket.values' = 'example-app-assets,example-app-uploads'"),
        "{athena}"
    );
    assert!(athena.contains("'projection.dt.range' = '2024-03-14,NOW'"), "{athena}");
    let out = s3logs(&["ddl", "s3://analytics/empty"], &moto.endpoint);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));

    // A key prefix that is not a whole folder: `logs/2024-03-15-0` takes the two objects delivered
    // before 10:00, not the one delivered at 13:00 nor anything under `logs-old/`.
    let partial = tmp.path().join("partial");
    let out = s3logs(
        &["convert", "s3://logs-bucket/logs/2024-03-15-0", "--output", partial.to_str().unwrap()],
        &moto.endpoint,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: std::collections::BTreeSet<String> = rows(&partial.join("data")).iter().map(object_name).collect();
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        ["2024-03-15-00-10-11-4C3B2A1908F7E6D5", "2024-03-15-02-20-45-9E8D7C6B5A493827"]
    );

    // A bucket that does not exist: one line naming it, the I/O exit code, nothing written.
    let missing = tmp.path().join("missing");
    let out = s3logs(&["convert", "s3://no-such-bucket/logs/", "--output", missing.to_str().unwrap()], &moto.endpoint);
    assert_eq!(out.status.code(), Some(74));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("s3://no-such-bucket/logs/") && err.lines().count() == 1, "{err}");
    assert!(!missing.join("data").exists());
}

/// Output files larger than a part go up as multipart uploads and read back whole; the uploads of
/// a run killed in the middle of one are aborted by the next run.
#[test]
fn large_output_files_are_uploaded_in_parts() {
    let moto = Moto::start();
    moto.upload("analytics", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let spec = s3logs_testkit::corpus::CorpusSpec { total_bytes: 40 << 20, objects: 4, days: 1, ..Default::default() };
    let logs = tmp.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let mut expected = 0;
    for i in 0..spec.objects {
        let (name, bytes, exp) = s3logs_testkit::corpus::object(&spec, i);
        std::fs::write(logs.join(name), bytes).unwrap();
        expected += exp.records;
    }
    let report_path = tmp.path().join("r.json");
    let args = [
        "convert",
        logs.to_str().unwrap(),
        "--output",
        "s3://analytics/big",
        "--upload-part-size",
        "5MiB",
        "--report",
        report_path.to_str().unwrap(),
    ];
    // Killed once the first part of an upload is stored: the upload stays open in the bucket.
    let killed = s3logs_command(&args, &moto.endpoint).env("S3LOGS_CRASH_AT", "uploading:1").output().unwrap();
    assert_eq!(killed.status.code(), None, "{}", String::from_utf8_lossy(&killed.stderr));
    let open = moto.multipart_uploads("analytics");
    assert!(!open.is_empty() && open.iter().all(|k| k.starts_with("big/_staging/")), "{open:?}");

    let out = s3logs(&args, &moto.endpoint);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(moto.multipart_uploads("analytics"), Vec::<String>::new(), "the killed run's uploads are aborted");
    let mut staged = moto.keys("analytics", "big/_staging/");
    staged.retain(|k| !k.ends_with('/'));
    assert_eq!(staged, Vec::<String>::new());
    let report: Value = serde_json::from_slice(&std::fs::read(tmp.path().join("r.json")).unwrap()).unwrap();
    let files = report["files_written"].as_array().unwrap();
    assert!(files.iter().any(|f| f["bytes"].as_u64().unwrap() > 5 << 20), "a file larger than one part: {files:?}");
    let fetched = tmp.path().join("fetched");
    moto.download("analytics", "big", &fetched);
    for f in files {
        let local = fetched.join(f["path"].as_str().unwrap());
        assert_eq!(std::fs::metadata(&local).unwrap().len(), f["bytes"].as_u64().unwrap(), "{local:?}");
    }
    let got = rows(&fetched.join("data"));
    assert_eq!(got.len() as u64, expected);
}

/// `--since/--until` select objects by the date in their key, in both key formats, the end of the
/// range widened by the lookback; keys without a date are left out.
#[test]
fn since_and_until_select_objects_by_key_date_in_both_formats() {
    let moto = Moto::start();
    let object = testdata().join("2024-03-15-00-10-11-4C3B2A1908F7E6D5");
    let keys = [
        "logs/2024-03-13-10-00-00-AAAAAAAAAAAAAAAA",
        "logs/2024-03-14-10-00-00-BBBBBBBBBBBBBBBB",
        "logs/2024-03-15-10-00-00-CCCCCCCCCCCCCCCC",
        "logs/2024-03-16-10-00-00-DDDDDDDDDDDDDDDD",
        "logs/2024-03-18-10-00-00-EEEEEEEEEEEEEEEE",
        "logs/111122223333/us-east-1/app-a/2024/03/14/2024-03-14-00-00-00-FFFFFFFFFFFFFFFF",
        "logs/111122223333/us-east-1/app-a/2024/03/17/2024-03-17-00-00-00-GGGGGGGGGGGGGGGG",
        "logs/444455556666/eu-west-1/app-b/2024/03/15/2024-03-15-00-00-00-HHHHHHHHHHHHHHHH",
        "logs/readme.txt",
    ];
    let files: Vec<(String, PathBuf)> = keys.iter().map(|k| (k.to_string(), object.clone())).collect();
    moto.upload("dated", &files);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    let args = [
        "convert",
        "s3://dated/logs/",
        "--output",
        dest.to_str().unwrap(),
        "--since",
        "2024-03-14",
        "--until",
        "2024-03-15",
        "--lookback-days",
        "1",
    ];
    let out = s3logs(&args, &moto.endpoint);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: std::collections::BTreeSet<String> =
        rows(&dest.join("data")).iter().map(|r| r["source_object"].as_str().unwrap().to_string()).collect();
    let want: std::collections::BTreeSet<String> =
        [keys[1], keys[2], keys[3], keys[5], keys[7]].iter().map(|k| format!("s3://dated/{k}")).collect();
    assert_eq!(got, want);
    assert_eq!(rows(&dest.join("data")).len(), 5 * 8);

    // A misspelled bucket: S3's error code, in one line.
    let out = s3logs(&["convert", "s3://no-such-bucket/logs/", "--output", "out"], &moto.endpoint);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(74), "{err}");
    assert!(err.contains("s3://no-such-bucket/logs/: NoSuchBucket: The specified bucket does not exist"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // A misspelled prefix lists nothing: exit 66 naming it, not "nothing new" for ever.
    let typo = tmp.path().join("typo");
    let out = s3logs(&["convert", "s3://dated/lgos/", "--output", typo.to_str().unwrap()], &moto.endpoint);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(66), "{err}");
    assert!(err.contains("s3://dated/lgos/ lists no log object:"), "{err}");
    // A day range with no delivery in it says so, with the range.
    let args = ["convert", "s3://dated/logs/", "--output", typo.to_str().unwrap(), "--since", "2024-03-20"];
    let out = s3logs(&[&args[..], &["--until", "2024-03-21", "--lookback-days", "0"]].concat(), &moto.endpoint);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(66), "{err}");
    assert!(err.contains("with a key date from 2024-03-20 to 2024-03-21"), "{err}");
    assert!(!typo.join("data").exists());
}

// ---- Faults: a wrapper around the real (moto) store that fails on purpose. ----

mod faults {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::stream::BoxStream;
    use object_store::path::Path;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
        PutOptions, PutPayload, PutResult, Result,
    };

    /// Fails the first `get_failures` reads (`usize::MAX`: all), hangs the first `hanging_gets`
    /// reads, says `NotFound` for keys ending in `missing`, and answers the first `lying_puts`
    /// writes (puts and copies) with an error after they succeeded. Counts every write request
    /// (put, multipart, copy, delete) in `writes`.
    #[derive(Debug)]
    pub struct Faulty {
        pub inner: Arc<dyn ObjectStore>,
        pub get_failures: AtomicUsize,
        pub hanging_gets: AtomicUsize,
        pub missing: Option<String>,
        pub lying_puts: AtomicUsize,
        /// Every second write (put or copy) answers with an error after it succeeded.
        pub lie_every_other: bool,
        pub writes: Arc<AtomicUsize>,
        /// The first creates of commit records are refused as S3's `409 ConditionalRequestConflict`
        /// reaches object_store's callers ("already exists"), without writing anything.
        pub conflicts: AtomicUsize,
    }

    impl Faulty {
        /// Whether this successful write is to be answered with an error.
        fn lies(&self) -> bool {
            let n = self.writes.load(Ordering::SeqCst);
            take_one(&self.lying_puts) || (self.lie_every_other && n % 2 == 1)
        }
    }

    fn take_one(n: &AtomicUsize) -> bool {
        n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| if v == usize::MAX { Some(v) } else { v.checked_sub(1) })
            .is_ok()
    }

    fn injected(what: &str) -> object_store::Error {
        object_store::Error::Generic { store: "faulty", source: what.to_string().into() }
    }

    impl std::fmt::Display for Faulty {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Faulty({})", self.inner)
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Faulty {
        async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            let create = matches!(opts.mode, object_store::PutMode::Create);
            if create && location.as_ref().contains("/commits/") && take_one(&self.conflicts) {
                let source = "409 ConditionalRequestConflict (injected)".into();
                return Err(object_store::Error::AlreadyExists { path: location.to_string(), source });
            }
            let done = self.inner.put_opts(location, payload, opts).await?;
            if self.lies() {
                return Err(injected("connection reset after the write was stored"));
            }
            Ok(done)
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> Result<Box<dyn MultipartUpload>> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
            if self.missing.as_deref().is_some_and(|m| location.as_ref().ends_with(m)) {
                return Err(object_store::Error::NotFound { path: location.to_string(), source: "deleted".into() });
            }
            if take_one(&self.get_failures) {
                return Err(injected("503 SlowDown (injected)"));
            }
            if take_one(&self.hanging_gets) {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            }
            self.inner.get_opts(location, options).await
        }
        fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.inner.delete_stream(locations)
        }
        fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
            self.inner.list(prefix)
        }
        fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
            self.inner.list_with_offset(prefix, offset)
        }
        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.inner.copy_opts(from, to, options).await?;
            if self.lies() {
                return Err(injected("connection reset after the copy was made"));
            }
            Ok(())
        }
    }
}

/// Counts listing requests and slows listings down (every key after a listing's first is held
/// back `delay`), recording when keys are handed over and when reads start.
mod slow {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use futures::StreamExt;
    use futures::stream::BoxStream;
    use object_store::path::Path;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
        PutOptions, PutPayload, PutResult, Result,
    };

    #[derive(Debug, Default)]
    pub struct Events {
        /// Listing calls (`list`, `list_with_offset`) with their folder.
        pub lists: Vec<String>,
        /// The folders of `list_with_delimiter` calls.
        pub delimiter_lists: Vec<String>,
        pub last_key_listed: Option<Instant>,
        pub first_get: Option<Instant>,
    }

    #[derive(Debug)]
    pub struct SlowListing {
        pub inner: Arc<dyn ObjectStore>,
        pub delay: Duration,
        pub events: Arc<Mutex<Events>>,
    }

    impl std::fmt::Display for SlowListing {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SlowListing({})", self.inner)
        }
    }

    impl SlowListing {
        /// Slows the listings of the source folder (`logs`), not those of DEST.
        fn slowed(
            &self,
            prefix: Option<&Path>,
            inner: BoxStream<'static, Result<ObjectMeta>>,
        ) -> BoxStream<'static, Result<ObjectMeta>> {
            if !prefix.is_some_and(|p| p.as_ref().starts_with("logs")) {
                return inner;
            }
            let (events, delay) = (self.events.clone(), self.delay);
            inner
                .enumerate()
                .then(move |(i, m)| {
                    let events = events.clone();
                    async move {
                        if i > 0 {
                            tokio::time::sleep(delay).await;
                        }
                        events.lock().unwrap().last_key_listed = Some(Instant::now());
                        m
                    }
                })
                .boxed()
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for SlowListing {
        async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
            if location.as_ref().starts_with("logs/") {
                self.events.lock().unwrap().first_get.get_or_insert_with(Instant::now);
            }
            self.inner.get_opts(location, options).await
        }
        fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
            self.inner.delete_stream(locations)
        }
        fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
            self.events.lock().unwrap().lists.push(prefix.map_or(String::new(), |p| p.to_string()));
            self.slowed(prefix, self.inner.list(prefix))
        }
        fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
            self.events.lock().unwrap().lists.push(format!("{} after {offset}", prefix.map_or("", |p| p.as_ref())));
            self.slowed(prefix, self.inner.list_with_offset(prefix, offset))
        }
        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
            self.events.lock().unwrap().delimiter_lists.push(prefix.map_or(String::new(), |p| p.to_string()));
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }
}

// ---- Stall: two hosts, one of whose requests stop answering while its commit is in flight. ----

mod stall {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use futures::stream::BoxStream;
    use object_store::path::Path;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMode,
        PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
    };

    /// What the two runs have reached.
    #[derive(Debug, Default)]
    pub struct Steps {
        /// The stalled run's commit request was sent.
        pub stalled: AtomicBool,
        /// The run that took over has discarded the staging and started reading logs.
        pub took_over: AtomicBool,
        /// The stalled commit request reached the server.
        pub landed: AtomicBool,
    }

    /// Waits (without blocking the runtime) until `flag` is set, for at most a minute.
    async fn until(flag: &AtomicBool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !flag.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the stalled-commit case did not progress");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `stalling`: the run whose commit create stalls (it reaches the server only once the other
    /// run has taken over and started reading), and every other write of which (its lease
    /// renewals) waits until then too: the network of a host that stops answering. The other
    /// run's store marks its first read of a log object.
    #[derive(Debug)]
    pub struct Stall {
        pub inner: Arc<dyn ObjectStore>,
        pub stalling: bool,
        pub steps: Arc<Steps>,
    }

    impl std::fmt::Display for Stall {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Stall({})", self.inner)
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Stall {
        async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
            let steps = &self.steps;
            if self.stalling {
                let commit = location.as_ref().contains("/commits/") && matches!(opts.mode, PutMode::Create);
                if commit && !steps.stalled.swap(true, Ordering::SeqCst) {
                    until(&steps.took_over).await;
                    let done = self.inner.put_opts(location, payload, opts).await;
                    steps.landed.store(true, Ordering::SeqCst);
                    return done;
                }
                if steps.stalled.load(Ordering::SeqCst) {
                    until(&steps.landed).await;
                }
            }
            self.inner.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
            if !self.stalling && location.as_ref().starts_with("logs/") {
                self.steps.took_over.store(true, Ordering::SeqCst);
            }
            self.inner.get_opts(location, options).await
        }
        fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
            self.inner.delete_stream(locations)
        }
        fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
            self.inner.list(prefix)
        }
        fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
            self.inner.list_with_offset(prefix, offset)
        }
        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }
}

/// The stalled commit, timed: run A's commit request stalls (with its lease renewals) longer than
/// its lease; run B takes the expired lease, discards A's staged batch as uncommitted and starts
/// converting; only then does A's commit reach the server. A must not say it converted (its files
/// are gone), B must not commit a second copy, and the next run puts the batch's rows in the table
/// exactly once: it converts A's batch again (its files are nowhere) and discards B's.
#[test]
fn a_commit_stalled_past_the_lease_loses_nothing() {
    use s3logs::LeaseOptions;
    use std::sync::atomic::Ordering;
    let moto = Moto::start();
    let tmp = tempfile::tempdir().unwrap();
    let objects = generated(&tmp.path().join("gen"), 4, 128 << 10, 7);
    upload_generated(&moto, &objects[..3]);
    moto.upload("analytics", &[]);
    let steps = Arc::new(stall::Steps::default());
    let options = |stalling: bool| {
        let steps = steps.clone();
        let layer = s3logs::StoreLayer(Arc::new(move |inner| {
            Arc::new(stall::Stall { inner, stalling, steps: steps.clone() }) as Arc<dyn object_store::ObjectStore>
        }));
        let base = moto_store(&moto, None);
        s3logs::ConvertOptions {
            sources: vec!["s3://logs-bucket/logs/".into()],
            output: "s3://analytics/stalled".into(),
            max_reject_ratio: 1.0,
            // A one-minute attempt: the stalled request is waited for, not abandoned and retried.
            store: s3logs::StoreOptions {
                retry: s3logs::RetryPolicy { timeout: Duration::from_secs(60), ..base.retry },
                ..moto_store(&moto, Some(layer))
            },
            // A's lease is short, so B takes over while A's commit is stalled; B's and C's are
            // long enough that a loaded machine cannot make them expire too (B would then drop
            // its own staging before its commit, and C find nothing of B's to discard).
            lease: LeaseOptions {
                ttl: Duration::from_secs(if stalling { 2 } else { 10 }),
                wait: Duration::from_secs(30),
            },
            ..Default::default()
        }
    };
    let (a_opts, b_opts) = (options(true), options(false));
    let a = std::thread::spawn(move || s3logs::run(&a_opts));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !steps.stalled.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline && !a.is_finished(), "run A never sent its commit");
        std::thread::sleep(Duration::from_millis(10));
    }
    // A new object arrives meanwhile, in the unit (the key-day) A is committing: B's batch there
    // is another one than A's.
    let mut objects = objects;
    let day = objects[0].0["logs/".len().."logs/YYYY-MM-DD".len()].to_string();
    objects[3].0 = format!("logs/{day}-23-59-59-LATE000000000000");
    upload_generated(&moto, &objects[3..]);
    let b = s3logs::run(&b_opts);
    let a = a.join().unwrap();
    assert!(steps.landed.load(Ordering::SeqCst));
    let a_err = a.expect_err("run A's staged files were discarded: it must not report success");
    assert_eq!(a_err.exit_code(), 75, "committed but not published: {a_err}");
    let b_err = b.expect_err("run B's commit number was taken by A's stalled commit");
    assert_eq!(b_err.exit_code(), 73, "{b_err}");

    // The next run (no stall) finds A's commit without its files and makes them again.
    let c = s3logs::run(&options(false)).unwrap();
    assert_eq!((c.batches_recreated.len(), c.batches_discarded.len()), (1, 1), "{c:?}");
    let commits = assert_s3_table_exactly_once(&moto, "stalled", &objects, tmp.path());
    // A's batch and then the new object in A's unit, and one commit in each of the two other
    // units: B's commit never landed.
    assert_eq!(commits, 4, "{c:?}");
}

/// A commit record's conditional create refused as `409 ConditionalRequestConflict` (S3's answer
/// to conditional writes racing on one key), with the key left absent, is tried again: the run
/// commits, rather than taking the refusal for another run's commit (exit 73).
#[test]
fn a_conflicting_commit_create_is_tried_again() {
    let moto = Moto::start();
    moto.upload("analytics", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let objects = generated(&tmp.path().join("gen"), 2, 64 << 10, 41);
    upload_generated(&moto, &objects);
    let report = convert_with(&moto, "s3://analytics/conflicts", |inner| faults::Faulty {
        conflicts: AtomicUsize::new(2),
        ..faulty(inner, 0, None, 0)
    })
    .unwrap();
    assert!(report.retries >= 2, "{report:?}");
    assert!(report.commits.iter().all(|&c| c == 1) && !report.commits.is_empty(), "{report:?}");
    assert_s3_table_exactly_once(&moto, "conflicts", &objects, tmp.path());
}

/// `--since/--until` list only the key ranges of those days (one listing request per day, counted
/// by a store wrapper, however many days the folder holds), and objects are fetched while the
/// listing is still going on: with a listing slowed to 400 ms per key, the first object is read
/// before the last key is listed.
#[test]
fn listing_reads_only_the_needed_key_ranges_and_overlaps_fetching() {
    use std::sync::Mutex;
    let moto = Moto::start();
    let body = testdata().join("2024-03-15-00-10-11-4C3B2A1908F7E6D5");
    // Thirty days of objects, two a day.
    let keys: Vec<(String, PathBuf)> = (1..=30)
        .flat_map(|d| [0, 12].map(|h| (format!("logs/2024-03-{d:02}-{h:02}-00-00-ABCDEF0123456789"), body.clone())))
        .collect();
    moto.upload("logs-bucket", &keys);
    moto.upload("analytics", &[]);
    let run = |output: &str, dates: Option<s3logs::KeyDates>, delay: Duration| {
        let events = Arc::new(Mutex::new(slow::Events::default()));
        let e = events.clone();
        let layer = s3logs::StoreLayer(Arc::new(move |inner| {
            Arc::new(slow::SlowListing { inner, delay, events: e.clone() }) as Arc<dyn object_store::ObjectStore>
        }));
        let opts = s3logs::ConvertOptions {
            sources: vec!["s3://logs-bucket/logs/".into()],
            output: output.into(),
            key_dates: dates,
            // Each object a window of its own: the first can be read while the rest are listed.
            window_bytes: 1024,
            store: s3logs::StoreOptions {
                retry: s3logs::RetryPolicy { timeout: Duration::from_secs(10), ..moto_store(&moto, None).retry },
                ..moto_store(&moto, Some(layer))
            },
            ..Default::default()
        };
        let report = s3logs::run(&opts).unwrap();
        let events = std::mem::take(&mut *events.lock().unwrap());
        (report, events)
    };

    // One day out of thirty: the source listing is that day's range only.
    let day = s3logs::parser::parse_day("2024-03-17").unwrap();
    let (report, events) =
        run("s3://analytics/oneday", Some(s3logs::KeyDates { first: day, last: day }), Duration::ZERO);
    assert_eq!(report.objects_read, 2);
    let source_lists: Vec<&String> = events.lists.iter().filter(|l| l.starts_with("logs ")).collect();
    // It starts just before the day (StartAfter `2024-03-16z`), not at the month.
    assert_eq!(source_lists, ["logs after logs/2024-03-16z"], "{:?}", events.lists);
    // One look for partitioned-key folders in the source (and one for a legacy ledger in DEST).
    assert_eq!(events.delimiter_lists, ["oneday/_state", "logs"]);

    // Slow listing of four objects: reading starts before the listing ends.
    let four = s3logs::KeyDates { first: day, last: day + 1 };
    let (report, events) = run("s3://analytics/overlap", Some(four), Duration::from_millis(400));
    assert_eq!(report.objects_read, 4);
    let (first_get, last_listed) = (events.first_get.unwrap(), events.last_key_listed.unwrap());
    assert!(first_get < last_listed, "the first object was read {:?} after the listing ended", first_get - last_listed);
}

/// Runs the library's conversion of `s3://logs-bucket/logs/` with a fault layer.
fn convert_with(
    moto: &Moto,
    output: &str,
    faulty: impl Fn(Arc<dyn object_store::ObjectStore>) -> faults::Faulty + Send + Sync + 'static,
) -> Result<s3logs::report::Report, s3logs::error::Error> {
    convert_with_options(moto, output, faulty, |_| {})
}

/// [`convert_with`], with options changed by `edit` first.
fn convert_with_options(
    moto: &Moto,
    output: &str,
    faulty: impl Fn(Arc<dyn object_store::ObjectStore>) -> faults::Faulty + Send + Sync + 'static,
    edit: impl FnOnce(&mut s3logs::ConvertOptions),
) -> Result<s3logs::report::Report, s3logs::error::Error> {
    use s3logs::StoreLayer;
    let mut opts = s3logs::ConvertOptions {
        sources: vec!["s3://logs-bucket/logs/".into()],
        output: output.into(),
        // These cases are about losing nothing; the sample's one reject is a larger share of
        // what is left when an object vanishes.
        max_reject_ratio: 1.0,
        store: moto_store(
            moto,
            Some(StoreLayer(Arc::new(move |inner| Arc::new(faulty(inner)) as Arc<dyn object_store::ObjectStore>))),
        ),
        ..Default::default()
    };
    edit(&mut opts);
    s3logs::run(&opts)
}

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

fn faulty(
    inner: Arc<dyn object_store::ObjectStore>,
    get_failures: usize,
    missing: Option<&str>,
    lying_puts: usize,
) -> faults::Faulty {
    faults::Faulty {
        inner,
        get_failures: AtomicUsize::new(get_failures),
        hanging_gets: AtomicUsize::new(0),
        missing: missing.map(str::to_string),
        lying_puts: AtomicUsize::new(lying_puts),
        lie_every_other: false,
        writes: Arc::default(),
        conflicts: AtomicUsize::new(0),
    }
}

#[test]
fn transient_faults_are_retried_and_lose_nothing() {
    let moto = Moto::start();
    let files = sample_keys();
    moto.upload("logs-bucket", &files);
    moto.upload("analytics", &[]);
    let tmp = tempfile::tempdir().unwrap();

    // Two failed reads, then success: every row, nothing twice.
    let out = tmp.path().join("retried");
    let report = convert_with(&moto, out.to_str().unwrap(), |inner| faulty(inner, 2, None, 0)).unwrap();
    assert_eq!((report.lines_read, report.rows_written, report.lines_rejected), (24, 23, 1));
    let got = rows(&out.join("data"));
    assert_eq!(got.len(), 23);
    let mut seen: Vec<(String, i64)> = got
        .iter()
        .map(|r| (r["source_object"].as_str().unwrap().to_string(), r["source_line"].as_i64().unwrap()))
        .collect();
    seen.dedup();
    assert_eq!(seen.len(), 23, "no row twice");

    // Two reads that hang: each attempt times out and is tried again; nothing lost.
    let out = tmp.path().join("hanging");
    let report = convert_with(&moto, out.to_str().unwrap(), |inner| {
        let f = faulty(inner, 0, None, 0);
        f.hanging_gets.store(2, std::sync::atomic::Ordering::SeqCst);
        f
    })
    .unwrap();
    assert_eq!(report.rows_written, 23);
    assert!(report.retries >= 2, "{}", report.retries);

    // Reads that never succeed: exit code 75 ("retry later"), naming the object, nothing written.
    let out = tmp.path().join("failing");
    let err = convert_with(&moto, out.to_str().unwrap(), |inner| faulty(inner, usize::MAX, None, 0)).unwrap_err();
    assert_eq!(err.exit_code(), 75, "{err}");
    assert!(err.to_string().contains("s3://logs-bucket/logs/2024-03-15-"), "{err}");
    assert!(!out.join("data").exists() || std::fs::read_dir(out.join("data")).unwrap().next().is_none());

    // An object deleted between listing and fetching is reported, not fatal.
    let out = tmp.path().join("vanished");
    let report =
        convert_with(&moto, out.to_str().unwrap(), |inner| faulty(inner, 0, Some("9E8D7C6B5A493827"), 0)).unwrap();
    assert_eq!(report.objects_missing, ["s3://logs-bucket/logs/2024-03-15-02-20-45-9E8D7C6B5A493827"]);
    assert_eq!(report.rows_written, 23 - 9);
    assert_eq!(rows(&out.join("data")).len(), 23 - 9);

    // Writes that succeeded but answered with an error are repeated onto the same keys: the output
    // holds each file once, with every row once.
    let report = convert_with(&moto, "s3://analytics/lying", |inner| faulty(inner, 0, None, 2)).unwrap();
    assert_eq!(report.rows_written, 23);
    let fetched = tmp.path().join("lying");
    moto.download("analytics", "lying", &fetched);
    assert_eq!(rows(&fetched.join("data")).len(), 23);
    assert_eq!(rows(&fetched.join("rejects")).len(), 1);
}

/// A stand-in for the AWS SSO portal's GetRoleCredentials on a free loopback port (python3's
/// http.server), answering with moto's fake keys; counts the requests that carried the token.
struct SsoPortal {
    _server: Server,
    endpoint: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl SsoPortal {
    fn start() -> SsoPortal {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests");
        let port = free_port();
        let script = format!(
            "import http.server, json, time\n\
             class H(http.server.BaseHTTPRequestHandler):\n\
             \x20   def do_GET(self):\n\
             \x20       ok = self.path.startswith('/federation/credentials') and \
             self.headers.get('x-amz-sso_bearer_token') == 'sso-token-do-not-print'\n\
             \x20       if ok: open('{}', 'a').write(self.path + '\\n')\n\
             \x20       body = json.dumps({{'roleCredentials': {{'accessKeyId': 'test', 'secretAccessKey': 'test', \
             'sessionToken': 'sso-session', 'expiration': int(time.time() + 3600) * 1000}}}}).encode()\n\
             \x20       self.send_response(200 if ok else 403)\n\
             \x20       self.send_header('Content-Type', 'application/json')\n\
             \x20       self.send_header('Content-Length', str(len(body)))\n\
             \x20       self.end_headers()\n\
             \x20       self.wfile.write(body)\n\
             http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n",
            log.display()
        );
        let child =
            Command::new("python3").args(["-c", &script]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        wait_for_port(port, Duration::from_secs(10), "the SSO stand-in");
        SsoPortal { _server: Server(child), endpoint: format!("http://127.0.0.1:{port}"), log, _dir: dir }
    }

    fn requests(&self) -> usize {
        std::fs::read_to_string(&self.log).map_or(0, |s| s.lines().count())
    }
}

/// Credentials from `AWS_PROFILE` and the shared credentials file, and from an SSO profile, as
/// the AWS CLI finds them, with the profile's region; a profile that does not exist is one clear error that shows no secret. Instance metadata is off,
/// so nothing is asked of any address but moto's.
#[test]
fn credentials_come_from_a_named_profile() {
    let moto = Moto::start();
    let object = testdata().join("2024-03-15-00-10-11-4C3B2A1908F7E6D5");
    moto.upload("logs-bucket", &[("logs/2024-03-15-00-10-11-4C3B2A1908F7E6D5".into(), object)]);
    let tmp = tempfile::tempdir().unwrap();
    let credentials = tmp.path().join("credentials");
    std::fs::write(
        &credentials,
        "[s3logs-test]\naws_access_key_id = AKIAPROFILEEXAMPLE\naws_secret_access_key = profile-secret-do-not-print\n",
    )
    .unwrap();
    // An SSO profile: its token is in the SSO cache (under HOME), and the role credentials come
    // from a stand-in for the SSO portal on loopback (AWS_ENDPOINT_URL_SSO).
    let sso = SsoPortal::start();
    let start_url = "https://s3logs-test.awsapps.com/start";
    let cache = tmp.path().join(".aws/sso/cache");
    std::fs::create_dir_all(&cache).unwrap();
    let key: String = {
        use sha1::Digest;
        sha1::Sha1::digest(start_url.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    };
    std::fs::write(
        cache.join(format!("{key}.json")),
        format!(
            r#"{{"accessToken":"sso-token-do-not-print","expiresAt":"2099-01-01T00:00:00Z","region":"us-east-1","startUrl":"{start_url}"}}"#
        ),
    )
    .unwrap();
    let config = tmp.path().join("config");
    std::fs::write(
        &config,
        format!(
            "[profile s3logs-test]\nregion = eu-west-1\n\n[profile s3logs-sso]\nsso_start_url = {start_url}\n\
             sso_region = us-east-1\nsso_account_id = 111122223333\nsso_role_name = LogReader\nregion = us-east-1\n"
        ),
    )
    .unwrap();
    let run = |profile: &str, dest: &Path| {
        Command::new(env!("CARGO_BIN_EXE_s3logs"))
            .args(["convert", "s3://logs-bucket/logs/", "--output", dest.to_str().unwrap()])
            .args(["--endpoint-url", &moto.endpoint, "--retries", "0"])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
            .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
            .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
            .env("AWS_CONFIG_FILE", &config)
            .env("AWS_ENDPOINT_URL_SSO", &sso.endpoint)
            .env("HOME", tmp.path())
            .env("RUST_LOG", if profile == "s3logs-test" { "s3logs=info" } else { "warn" })
            .env("AWS_PROFILE", profile)
            .output()
            .unwrap()
    };
    // The SSO profile: credentials from the portal, used against moto.
    let out = run("s3logs-sso", &tmp.path().join("sso"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(rows(&tmp.path().join("sso/data")).len(), 8);
    assert!(sso.requests() >= 1, "the SSO portal was not asked");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("sso-token-do-not-print"));

    let out = run("s3logs-test", &tmp.path().join("ok"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // No --region and no AWS_REGION: the profile's region is used, as the AWS CLI does.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("region from the AWS profile") && err.contains("eu-west-1"), "{err}");
    assert_eq!(rows(&tmp.path().join("ok/data")).len(), 8);

    let out = run("no-such-profile", &tmp.path().join("missing"));
    assert_eq!(out.status.code(), Some(74));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no AWS credentials") && err.lines().count() == 1, "{err}");
    assert!(!err.contains("profile-secret-do-not-print") && !err.contains("AKIAPROFILEEXAMPLE"), "{err}");

    // --profile names the profile ahead of AWS_PROFILE (here one that does not exist) and of keys
    // in the environment, as the AWS CLI's does: credentials (here the SSO profile's, so the
    // portal is asked although keys are in the environment) and region (the other profile's).
    let asked = sso.requests();
    let out = Command::new(env!("CARGO_BIN_EXE_s3logs"))
        .args(["convert", "s3://logs-bucket/logs/", "--output", tmp.path().join("flag-sso").to_str().unwrap()])
        .args(["--endpoint-url", &moto.endpoint, "--retries", "0", "--profile", "s3logs-sso"])
        .env("AWS_PROFILE", "no-such-profile")
        .env("AWS_ACCESS_KEY_ID", "AKIAWRONGKEYEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "wrong-secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_ENDPOINT_URL_SSO", &sso.endpoint)
        .env("HOME", tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(sso.requests() > asked, "the named profile's credentials were not used");
    let out = Command::new(env!("CARGO_BIN_EXE_s3logs"))
        .args(["convert", "s3://logs-bucket/logs/", "--output", tmp.path().join("flag").to_str().unwrap()])
        .args(["--endpoint-url", &moto.endpoint, "--retries", "0", "--profile", "s3logs-test"])
        .env("AWS_PROFILE", "no-such-profile")
        .env("AWS_ACCESS_KEY_ID", "AKIAWRONGKEYEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "wrong-secret")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
        .env("AWS_CONFIG_FILE", &config)
        .env("HOME", tmp.path())
        .env("RUST_LOG", "s3logs=info")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("region from the AWS profile") && err.contains("eu-west-1"), "{err}");
    assert_eq!(rows(&tmp.path().join("flag/data")).len(), 8);
}

/// Prefixes with characters S3 allows in keys but object_store would percent-encode (`%`, `#`,
/// `[`, `{`, a space): each lists exactly its own objects.
#[test]
fn prefixes_with_any_characters_s3_allows() {
    let moto = Moto::start();
    let object = testdata().join("2024-03-15-00-10-11-4C3B2A1908F7E6D5");
    let prefixes = ["logs%2024/", "we#ird [x]/", "{a} b^c/"];
    let files: Vec<(String, PathBuf)> =
        prefixes.iter().map(|p| (format!("{p}2024-03-15-00-10-11-4C3B2A1908F7E6D5"), object.clone())).collect();
    moto.upload("odd-names", &files);
    let tmp = tempfile::tempdir().unwrap();
    for (i, p) in prefixes.iter().enumerate() {
        let dest = tmp.path().join(format!("out{i}"));
        let out =
            s3logs(&["convert", &format!("s3://odd-names/{p}"), "--output", dest.to_str().unwrap()], &moto.endpoint);
        assert!(out.status.success(), "{p}: {}", String::from_utf8_lossy(&out.stderr));
        let got = rows(&dest.join("data"));
        assert_eq!(got.len(), 8, "{p}");
        assert!(got.iter().all(|r| r["source_object"].as_str().unwrap().starts_with(&format!("s3://odd-names/{p}"))));
    }
}

/// Logs in one place, the table in another: the sources' endpoint (and region) can differ from
/// DEST's. Here two S3 servers: the logs on one, DEST on the other; and AWS_ENDPOINT_URL_S3 (the
/// AWS CLI's service-specific variable) reaches a server without --endpoint-url.
#[test]
fn sources_and_dest_on_different_endpoints() {
    let (logs, table) = (Moto::start(), Moto::start());
    logs.upload("logs-bucket", &sample_keys());
    table.upload("analytics", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let args = ["convert", "s3://logs-bucket/logs/", "--output", "s3://analytics/t", "--source-endpoint-url"];
    let out = s3logs(&[&args[..], &[logs.endpoint.as_str()]].concat(), &table.endpoint);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    table.download("analytics", "t", &tmp.path().join("t"));
    assert_eq!(rows(&tmp.path().join("t/data")).len(), 23);
    assert_eq!(logs.keys("logs-bucket", "").len(), sample_keys().len(), "nothing written beside the logs");

    let out = Command::new(env!("CARGO_BIN_EXE_s3logs"))
        .args(["convert", "s3://logs-bucket/logs/", "--output", tmp.path().join("local").to_str().unwrap()])
        .env("AWS_ENDPOINT_URL_S3", &logs.endpoint)
        .env_remove("AWS_ENDPOINT_URL")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(rows(&tmp.path().join("local/data")).len(), 23);

    // The endpoint from the AWS config file: a profile's `endpoint_url`, and a `services`
    // section's `s3` endpoint, which wins over the profile's own (the AWS CLI's order).
    let config = tmp.path().join("config");
    std::fs::write(
        &config,
        format!(
            "[profile plain]\nendpoint_url = {}\naws_access_key_id = test\naws_secret_access_key = test\n\n\
             [profile by-service]\nendpoint_url = http://127.0.0.1:9\nservices = moto\n\
             aws_access_key_id = test\naws_secret_access_key = test\n\n[services moto]\ns3 =\n  endpoint_url = {}\n",
            logs.endpoint, logs.endpoint
        ),
    )
    .unwrap();
    for profile in ["plain", "by-service"] {
        let dest = tmp.path().join(profile);
        let out = Command::new(env!("CARGO_BIN_EXE_s3logs"))
            .args(["convert", "s3://logs-bucket/logs/", "--output", dest.to_str().unwrap(), "--profile", profile])
            .args(["--retries", "0"])
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_S3")
            .env("AWS_CONFIG_FILE", &config)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("HOME", tmp.path())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap();
        assert!(out.status.success(), "{profile}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(rows(&dest.join("data")).len(), 23, "{profile}");
    }
}

/// Objects larger than a window are streamed from their GET response instead of held whole.
#[test]
fn large_s3_objects_are_streamed() {
    let moto = Moto::start();
    let files = sample_keys();
    moto.upload("logs-bucket", &files);
    let tmp = tempfile::tempdir().unwrap();
    let opts = s3logs::ConvertOptions {
        sources: vec!["s3://logs-bucket/logs/".into()],
        output: tmp.path().join("streamed"),
        // Every sample object is larger than this, so every one is streamed in small blocks.
        window_bytes: 512,
        max_line_bytes: 200,
        max_reject_ratio: 1.0,
        store: moto_store(&moto, None),
        ..Default::default()
    };
    let report = s3logs::run(&opts).unwrap();
    assert_eq!(report.objects_read, 3);
    assert_eq!(report.lines_read, 24);
    let local = tmp.path().join("local");
    let out = Command::new(env!("CARGO_BIN_EXE_s3logs"))
        .args(["convert", testdata().to_str().unwrap(), "--output", local.to_str().unwrap(), "--max-line-bytes", "200"])
        .args(["--max-reject-ratio", "1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    for folder in ["data", "rejects"] {
        let (a, b) = (rows(&local.join(folder)), rows(&tmp.path().join("streamed").join(folder)));
        assert_eq!(a.len(), b.len(), "{folder}");
        for (x, y) in a.iter().zip(&b) {
            for (k, v) in x {
                if k != "source_object" {
                    assert_eq!(&y[k], v, "{folder} {k}");
                }
            }
        }
    }
}

// ---- Scheduled runs against S3: the same promises as tests/scheduled.rs, on moto. ----

/// Generates `n` objects (1% malformed lines) into `dir`; returns `(key under logs/, path, bytes)`.
fn generated(dir: &Path, n: usize, bytes: u64, seed: u64) -> Vec<(String, PathBuf, Vec<u8>)> {
    common::write_corpus(dir, n, bytes, seed)
        .into_iter()
        .map(|(name, path, body)| (format!("logs/{name}"), path, body))
        .collect()
}

fn upload_generated(moto: &Moto, objects: &[(String, PathBuf, Vec<u8>)]) {
    let files: Vec<(String, PathBuf)> = objects.iter().map(|(k, p, _)| (k.clone(), p.clone())).collect();
    moto.upload("logs-bucket", &files);
}

/// Downloads `s3://analytics/<prefix>/` and checks data plus rejects hold every line of
/// `objects` exactly once and nothing is left staged; returns the keys under `_state/commits/`.
fn assert_s3_table_exactly_once(
    moto: &Moto,
    prefix: &str,
    objects: &[(String, PathBuf, Vec<u8>)],
    tmp: &Path,
) -> usize {
    let local = tmp.join(format!("download-{prefix}"));
    let _ = std::fs::remove_dir_all(&local);
    moto.download("analytics", prefix, &local);
    assert!(!local.join("_staging").exists(), "{prefix}: staging left behind");
    let mut got = common::line_ids(&local.join("data"));
    got.extend(common::line_ids(&local.join("rejects")));
    got.sort();
    let named: Vec<(String, Vec<u8>)> =
        objects.iter().map(|(k, _, b)| (format!("s3://logs-bucket/{k}"), b.clone())).collect();
    let want = common::expected_ids(&named);
    assert_eq!(got.len(), want.len(), "{prefix}: lines in the table");
    assert!(got == want, "{prefix}: a line is missing or repeated");
    common::walkdir_files(&local.join("_state/units"))
        .iter()
        .filter(|p| p.parent().is_some_and(|d| d.ends_with("commits")))
        .count()
}

/// Promise 1 on S3: an s3 -> s3 job on a growing bucket, killed at random moments and at each
/// step of the commit protocol, restarted each time, ends with every line exactly once.
#[test]
fn scheduled_s3_runs_killed_and_restarted_lose_nothing() {
    let moto = Moto::start();
    moto.upload("analytics", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let objects = generated(&tmp.path().join("gen"), 29, 2 << 20, 21);
    let cmd = |dest: &str| {
        let args = [
            "convert",
            "s3://logs-bucket/logs/",
            "--output",
            dest,
            "--batch-size",
            "192KiB",
            "--max-reject-ratio",
            "0.5",
        ];
        let mut c = s3logs_command(&args, &moto.endpoint);
        // The local staging of killed runs stays behind (a killed process cannot clean up): in
        // the test's folder, not the system's temporary folder.
        c.arg("--quiet").env("TMPDIR", tmp.path());
        c
    };

    // Round one: 12 objects; a clean run into another prefix measures how long a run takes.
    upload_generated(&moto, &objects[..12]);
    let started = Instant::now();
    assert!(cmd("s3://analytics/probe").output().unwrap().status.success());
    let window = started.elapsed() / 2;
    let mut rng = common::Rng(0x0005_3000_5eed);
    let mut killed = common::run_with_kills(|| cmd("s3://analytics/table"), 5, window, &mut rng, || {});
    // Round two: 12 more.
    upload_generated(&moto, &objects[12..24]);
    killed += common::run_with_kills(|| cmd("s3://analytics/table"), 5, window, &mut rng, || {});
    assert!(killed >= 2, "only {killed} runs were killed");
    assert_s3_table_exactly_once(&moto, "table", &objects[..24], tmp.path());

    // Then one new object per crash point: each run dies there, the next one finishes the job.
    for (i, point) in ["staged", "committed", "publishing", "published"].iter().enumerate() {
        upload_generated(&moto, &objects[24 + i..25 + i]);
        let crashed = cmd("s3://analytics/table").env("S3LOGS_CRASH_AT", format!("{point}:1")).output().unwrap();
        assert_eq!(crashed.status.code(), None, "{point}: {}", String::from_utf8_lossy(&crashed.stderr));
        let out = cmd("s3://analytics/table").output().unwrap();
        assert!(out.status.success(), "{point}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert_s3_table_exactly_once(&moto, "table", &objects[..28], tmp.path());

    // A crash at the commit point, then the staging area gone: the next run converts the
    // committed batch's objects again rather than saying there is nothing new.
    upload_generated(&moto, &objects[28..]);
    let crashed = cmd("s3://analytics/table").env("S3LOGS_CRASH_AT", "committed:1").output().unwrap();
    assert_eq!(crashed.status.code(), None, "{}", String::from_utf8_lossy(&crashed.stderr));
    assert!(moto.delete_prefix("analytics", "table/_staging/") > 0, "the crashed run staged nothing");
    let out = cmd("s3://analytics/table").args(["--report", "/dev/stdout"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["batches_recreated"].as_array().map(Vec::len), Some(1), "{r}");
    assert_s3_table_exactly_once(&moto, "table", &objects, tmp.path());
    // The local folders of the killed runs were removed by the runs after them.
    let left: Vec<_> =
        std::fs::read_dir(tmp.path().join("s3logs-staging")).map_or(Vec::new(), |d| d.flatten().collect());
    assert!(
        left.is_empty(),
        "local staging of killed runs left: {:?}",
        left.iter().map(|e| e.path()).collect::<Vec<_>>()
    );
    eprintln!("{killed} runs killed at random");
}

/// Promise 2 on S3: a run with nothing new makes no write request at all (counted by a store
/// wrapper), nor does a dry run; ambiguous writes (the request succeeded, the answer was an
/// error) are resolved without duplicates; a held lease makes the binary exit 73.
#[test]
fn scheduled_s3_noop_dry_run_ambiguous_writes_and_lease() {
    use std::sync::atomic::Ordering;
    let moto = Moto::start();
    moto.upload("analytics", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let objects = generated(&tmp.path().join("gen"), 6, 256 << 10, 31);
    upload_generated(&moto, &objects[..5]);

    // Every second write answers with an error after it succeeded: lease, staging uploads, the
    // commit record and the copies into data/. All are resolved; each line lands once, in one
    // commit.
    let report = convert_with(&moto, "s3://analytics/lying", |inner| faults::Faulty {
        lie_every_other: true,
        ..faulty(inner, 0, None, 0)
    })
    .unwrap();
    assert!(report.retries >= 3, "{}", report.retries);
    // One commit in each unit (a key-day: the corpus spreads over days).
    let units = |objects: &[(String, PathBuf, Vec<u8>)]| -> std::collections::BTreeSet<String> {
        objects.iter().map(|(k, _, _)| s3logs::unit_of(&format!("s3://logs-bucket/{k}"))).collect()
    };
    let first_units = units(&objects[..5]);
    assert!(first_units.len() > 1);
    assert_eq!(report.commits, vec![1; first_units.len()]);
    assert_eq!(assert_s3_table_exactly_once(&moto, "lying", &objects[..5], tmp.path()), first_units.len());

    // Nothing new: zero write requests. A dry run with one new object: zero as well.
    let writes = Arc::new(AtomicUsize::new(0));
    let counted = |w: &Arc<AtomicUsize>| {
        let w = w.clone();
        move |inner| faults::Faulty { writes: w.clone(), ..faulty(inner, 0, None, 0) }
    };
    let report = convert_with(&moto, "s3://analytics/lying", counted(&writes)).unwrap();
    assert!(report.nothing_new && report.objects_skipped == 5, "{report:?}");
    assert_eq!(writes.load(Ordering::SeqCst), 0, "a run with nothing new wrote");
    upload_generated(&moto, &objects[5..]);
    let report = convert_with_options(&moto, "s3://analytics/lying", counted(&writes), |o| o.dry_run = true).unwrap();
    assert_eq!(report.would_convert.len(), 1);
    assert_eq!(writes.load(Ordering::SeqCst), 0, "a dry run wrote");
    // Converted for real: only the new object is read.
    let report = convert_with(&moto, "s3://analytics/lying", counted(&writes)).unwrap();
    let seq = if first_units.contains(&units(&objects[5..]).pop_first().unwrap()) { 2 } else { 1 };
    assert_eq!((report.objects_read, report.objects_skipped, report.commits.clone()), (1, 5, vec![seq]));
    assert_eq!(assert_s3_table_exactly_once(&moto, "lying", &objects, tmp.path()), first_units.len() + 1);

    // A held unit lease on an S3 DEST: the binary converts the other units, leaves that one, and
    // exits 73; released, it converts it. The holder: a run converting standard input that has
    // not ended yet, in the `undated` unit, as an object with no date in its name is.
    let undated = tmp.path().join("access.log");
    std::fs::write(&undated, &objects[0].2).unwrap();
    moto.upload("logs-bucket", &[("undated/access.log".to_string(), undated)]);
    let mut held = s3logs_command(&["convert", "-", "--output", "s3://analytics/busy"], &moto.endpoint)
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = s3logs(&["status", "s3://analytics/busy", "--json"], &moto.endpoint);
        let s: Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
        if s["lease"].as_str().is_some_and(|l| l != "free") {
            break;
        }
        assert!(Instant::now() < deadline, "the holder never took the lease: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let run = || {
        s3logs(
            &[
                "convert",
                "s3://logs-bucket/logs/",
                "s3://logs-bucket/undated/",
                "--output",
                "s3://analytics/busy",
                "--max-reject-ratio",
                "0.5",
            ],
            &moto.endpoint,
        )
    };
    let out = run();
    assert_eq!(out.status.code(), Some(73), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("(e.g. undated)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = s3logs(&["status", "s3://analytics/busy", "--json"], &moto.endpoint);
    let s: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(s["objects"].as_u64(), Some(6), "every dated object, not the held unit's: {s}");
    // The holder ends (killed: its lease names a process of this host that is gone).
    held.kill().unwrap();
    held.wait().unwrap();
    let out = run();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = s3logs(&["status", "s3://analytics/busy", "--json"], &moto.endpoint);
    let s: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        (s["objects"].as_u64(), s["commits"].as_u64(), s["lease"].as_str()),
        (Some(7), Some(units(&objects).len() as u64 + 1), Some("free")),
        "{s}"
    );
}

/// Acceptance 5 of sharded backfills: with `--since/--until`, shards list only the key ranges of
/// their own units (simple keys' days, partitioned keys' bucket-days): together no more source
/// listings than one run's, plus each shard's walk of the partitioned-key folders; together they
/// read every object once and make the same rows.
#[test]
fn shards_list_only_their_own_key_ranges() {
    use std::sync::Mutex;
    let moto = Moto::start();
    let body = testdata().join("2024-03-15-00-10-11-4C3B2A1908F7E6D5");
    let mut keys: Vec<(String, PathBuf)> = Vec::new();
    for d in 1..=12 {
        keys.push((format!("logs/2024-03-{d:02}-00-00-00-ABCDEF0123456789"), body.clone()));
        keys.push((format!("logs/2024-03-{d:02}-12-00-00-ABCDEF0123456789"), body.clone()));
        // Each delivery's unique part is its own (two buckets' with one name would be one delivery).
        for (bucket, unique) in [("app", "0123456789ABCDEF"), ("web", "FEDCBA9876543210")] {
            let key = format!("logs/111122223333/us-east-1/{bucket}/2024/03/{d:02}/2024-03-{d:02}-06-00-00-{unique}");
            keys.push((key, body.clone()));
        }
    }
    moto.upload("logs-bucket", &keys);
    moto.upload("analytics", &[]);
    let day = |d: &str| s3logs::parser::parse_day(d).unwrap();
    let dates = s3logs::KeyDates { first: day("2024-03-01"), last: day("2024-03-12") };
    let run = |output: &str, shard: Option<(u64, u64)>| {
        let events = Arc::new(Mutex::new(slow::Events::default()));
        let e = events.clone();
        let layer = s3logs::StoreLayer(Arc::new(move |inner| {
            Arc::new(slow::SlowListing { inner, delay: Duration::ZERO, events: e.clone() })
                as Arc<dyn object_store::ObjectStore>
        }));
        let opts = s3logs::ConvertOptions {
            sources: vec!["s3://logs-bucket/logs/".into()],
            output: output.into(),
            key_dates: Some(dates),
            selection: s3logs::Selection { shard, units: None },
            key_date_slack: None,
            store: moto_store(&moto, Some(layer)),
            ..Default::default()
        };
        let report = s3logs::run(&opts).unwrap();
        let events = std::mem::take(&mut *events.lock().unwrap());
        (report, events)
    };
    // The unit a source listing was for: `logs after logs/<the day, lowered>z` for a simple-key day,
    // the day folder itself for a partitioned bucket-day.
    let unit_listed = |l: &str| -> String {
        match l.strip_prefix("logs after logs/") {
            // The listing starts just before the day: its last character one lower, then `z`.
            Some(before) => {
                let mut day: Vec<u8> = before.strip_suffix('z').unwrap().as_bytes().to_vec();
                *day.last_mut().unwrap() += 1;
                s3logs::unit_of(&format!("s3://logs-bucket/logs/{}-00-00-00-X", String::from_utf8(day).unwrap()))
            }
            None => s3logs::unit_of(&format!("s3://logs-bucket/{l}/x")),
        }
    };
    let source_lists =
        |e: &slow::Events| -> Vec<String> { e.lists.iter().filter(|l| l.starts_with("logs")).cloned().collect() };

    let (single, events) = run("s3://analytics/single", None);
    assert_eq!(single.objects_read, keys.len() as u64);
    let single_lists = source_lists(&events);
    assert_eq!(single_lists.len(), 36, "a listing per day and per bucket-day: {single_lists:?}");
    let (mut read, mut lists, mut rows) = (0, Vec::new(), 0);
    for k in 0..4 {
        let (report, events) = run("s3://analytics/sharded", Some((k, 4)));
        for l in source_lists(&events) {
            assert_eq!(s3logs::shard_of(&unit_listed(&l), 4), k, "shard {k} listed {l}, another shard's");
            lists.push(l);
        }
        let walk: Vec<&String> = events.delimiter_lists.iter().filter(|l| l.starts_with("logs")).collect();
        assert_eq!(walk.len(), 3, "the folder walk: logs/, the account, the region: {walk:?}");
        read += report.objects_read;
        rows += report.rows_written;
    }
    lists.sort();
    let mut want = single_lists.clone();
    want.sort();
    assert_eq!(lists, want, "every key range listed once, by its unit's shard");
    assert_eq!((read, rows), (single.objects_read, single.rows_written));
}

/// Acceptance 1 of sharded backfills on an S3 DEST: 8 shards at once over 120 key-days (simple and
/// partitioned keys, 1% malformed lines) make the table of one local run, with consistent state.
#[test]
fn eight_shards_into_an_s3_dest_make_the_table_of_one_run() {
    let moto = Moto::start();
    moto.upload("analytics", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("logs");
    // One object a key-day: moto serves one request at a time, and 8 processes queue on it.
    let (objects, expected) = crate::backfill::two_source_corpus(&src, 120, 60, 5);
    let units: std::collections::BTreeSet<String> = objects.iter().map(|(n, _)| s3logs::unit_of(n)).collect();
    assert_eq!(units.len(), 120);
    let runs: Vec<_> = (0..8)
        .map(|k| {
            let shard = format!("{k}/8");
            let args = ["convert", src.to_str().unwrap(), "--output", "s3://analytics/sharded", "--shard", &shard];
            s3logs_command(&args, &moto.endpoint).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for run in runs {
        let out = run.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let one = tmp.path().join("one");
    let out = Command::new(env!("CARGO_BIN_EXE_s3logs"))
        .args(["convert", src.to_str().unwrap(), "--output", one.to_str().unwrap(), "--shard", "0/1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let local = tmp.path().join("download");
    moto.download("analytics", "sharded", &local);
    let (rows, rejects) = crate::backfill::table(&local);
    assert_eq!((rows.len() as u64, rejects.len() as u64), (expected.records, expected.malformed));
    assert!(crate::backfill::table(&one) == (rows, rejects), "the shards' table is the one run's, row for row");
    crate::backfill::assert_state_consistent(&local, &objects);
}

/// Acceptance 2 of sharded backfills on an S3 DEST: the same shard launched twice at once
/// converts its units once, and a third run of it makes no write request (the report's count of
/// DEST requests, made where s3logs sends them).
#[test]
fn the_same_shard_twice_into_an_s3_dest_converts_once() {
    let moto = Moto::start();
    moto.upload("analytics", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("logs");
    let (objects, _) = crate::backfill::two_source_corpus(&src, 40, 10, 12);
    let args = [
        "convert",
        src.to_str().unwrap(),
        "--output",
        "s3://analytics/twice",
        "--shard",
        "1/2",
        "--lease-wait",
        "120",
        "--report",
        "-",
    ];
    let twice: Vec<_> = (0..2)
        .map(|_| s3logs_command(&args, &moto.endpoint).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    let mut read = 0;
    for run in twice {
        let out = run.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        read += serde_json::from_slice::<Value>(&out.stdout).unwrap()["objects_read"].as_u64().unwrap();
    }
    let mine: Vec<(String, Vec<u8>)> =
        objects.iter().filter(|(n, _)| s3logs::shard_of(&s3logs::unit_of(n), 2) == 1).cloned().collect();
    assert!(!mine.is_empty());
    assert_eq!(read, mine.len() as u64, "each object of the shard read once over both runs");
    let local = tmp.path().join("download");
    moto.download("analytics", "twice", &local);
    let mut ids = common::line_ids(&local.join("data"));
    ids.extend(common::line_ids(&local.join("rejects")));
    ids.sort();
    assert_eq!(ids, common::expected_ids(&mine), "no line missing or repeated");

    let out = s3logs(&args, &moto.endpoint);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["nothing_new"], true, "{r}");
    assert_eq!(r["dest_requests"]["writes"], 0, "{r}");
}

/// Acceptances 3 and 4 of sharded backfills on a moto DEST: 8 shards at once, aborted at every
/// step of the commit protocol in their 1st and 3rd batch and restarted until done; then killed
/// at seeded moments with N = 8, resumed with N = 3, late objects added to old days, and finished
/// with N = 1: every line once, the state consistent, the table one local run's.
#[test]
fn shards_into_an_s3_dest_crashed_and_resharded_convert_everything_once() {
    let moto = Moto::start();
    moto.upload("analytics", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let all = tmp.path().join("all");
    let (objects, _) = crate::backfill::two_source_corpus(&all, 216, 12, 14);
    let src = tmp.path().join("logs");
    let bring = |from: usize, to: usize| -> Vec<String> {
        let mut written = Vec::new();
        for (name, body) in &objects[from..to] {
            let to = src.join(Path::new(name).strip_prefix(std::fs::canonicalize(&all).unwrap()).unwrap());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::write(&to, body).unwrap();
            written.push(std::fs::canonicalize(&to).unwrap().to_string_lossy().into_owned());
        }
        written
    };
    let shard = |k: u64, n: u64| {
        let s = format!("{k}/{n}");
        let args = ["convert", src.to_str().unwrap(), "--output", "s3://analytics/crashed", "--shard", &s];
        let mut c = s3logs_command(&args, &moto.endpoint);
        c.args(["--batch-size", "4KiB", "--lease-wait", "30", "--max-reject-ratio", "0.5"]);
        c
    };
    let combos: Vec<(&str, &str)> =
        ["staged", "committed", "publishing", "published"].into_iter().flat_map(|p| [(p, "1"), (p, "3")]).collect();
    let per_round = objects.len() / (combos.len() + 1);
    for (round, (point, n)) in combos.iter().enumerate() {
        let written = bring(round * per_round, (round + 1) * per_round);
        // Only the shards with n units in the round reach batch n (their ids hash the folder's path).
        let want = crate::backfill::shards_reaching(&written, 8, n.parse().unwrap());
        let crashed = crate::backfill::shards_until_done(8, |k| {
            let mut c = shard(k, 8);
            c.env("S3LOGS_CRASH_AT", format!("{point}:{n}"));
            c
        });
        assert!(crashed >= want.max(1), "{point}:{n}: {crashed} runs failed, {want} shards reach batch {n}");
    }
    // The rest: N = 8 killed at seeded moments, N = 3 to the end, then late objects and N = 1.
    bring(combos.len() * per_round, objects.len());
    let mut rng = common::Rng(0x5eed_0004);
    let runs: Vec<_> =
        (0..8).map(|k| shard(k, 8).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()).collect();
    for mut run in runs {
        std::thread::sleep(Duration::from_millis(50 + rng.below(400)));
        let _ = run.kill();
        run.wait().unwrap();
    }
    assert_eq!(crate::backfill::shards_until_done(3, |k| shard(k, 3)), 0, "N = 3 runs to the end");
    let mut objects: Vec<(String, Vec<u8>)> = objects
        .iter()
        .map(|(n, b)| {
            let rel = Path::new(n).strip_prefix(std::fs::canonicalize(&all).unwrap()).unwrap().to_path_buf();
            (std::fs::canonicalize(src.join(rel)).unwrap().display().to_string(), b.clone())
        })
        .collect();
    for i in [0, 1] {
        let like = Path::new(&objects[i].0).to_path_buf();
        let name = like.file_name().unwrap().to_string_lossy().into_owned();
        let late = like.with_file_name(format!("{}-23-59-5{i}-LATE00000000000{i}", &name[..10]));
        std::fs::write(&late, &objects[i].1).unwrap();
        objects.push((std::fs::canonicalize(&late).unwrap().display().to_string(), objects[i].1.clone()));
    }
    let out = shard(0, 1).args(["--report", "-"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap()["objects_read"], 2, "only the late objects");

    let local = tmp.path().join("download");
    moto.download("analytics", "crashed", &local);
    let mut ids = common::line_ids(&local.join("data"));
    ids.extend(common::line_ids(&local.join("rejects")));
    ids.sort();
    assert_eq!(ids, common::expected_ids(&objects), "every line once");
    crate::backfill::assert_state_consistent(&local, &objects);
    let one = tmp.path().join("one");
    let out = Command::new(env!("CARGO_BIN_EXE_s3logs"))
        .args(["convert", src.to_str().unwrap(), "--output", one.to_str().unwrap(), "--max-reject-ratio", "0.5"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(crate::backfill::table(&local) == crate::backfill::table(&one), "the table of one run, row for row");
}

/// An HTTPS endpoint whose certificate the machine does not trust (self-signed, made here with
/// Python's `cryptography`, which moto brings): TLS gets as far as checking it (so the crypto
/// provider works), and the run stops at the first refusal with exit 74 and the reason, instead of
/// retrying a certificate that will not change.
#[test]
fn an_untrusted_certificate_is_one_clear_error_not_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = r#"
import datetime, ssl, sys, http.server
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256()))
open("cert.pem", "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open("key.pem", "wb").write(key.private_bytes(serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("cert.pem", "key.pem")
httpd = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), http.server.BaseHTTPRequestHandler)
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
httpd.timeout = 60
while True:
    try:
        httpd.handle_request()
    except Exception:
        pass
"#;
    let server = Command::new("python3")
        .args(["-c", server, &port.to_string()])
        .current_dir(tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Server)
        .unwrap();
    wait_for_port(port, Duration::from_secs(30), "the HTTPS server");
    let out_dir = tmp.path().join("out");
    let out = s3logs(
        &["convert", "s3://logs-bucket/logs/", "--output", out_dir.to_str().unwrap()],
        &format!("https://localhost:{port}"),
    );
    drop(server);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(74), "{stderr}");
    assert!(stderr.contains("invalid peer certificate"), "{stderr}");
    assert!(stderr.contains(&format!("https://localhost:{port}")), "{stderr}");
    assert!(!stderr.contains("retrying"), "a certificate error is not tried again:\n{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line:\n{stderr}");
    assert!(!out_dir.join("data").exists(), "nothing written");
}

/// What a user sees when S3 says no (stdout, stderr, exit code), snapshotted: a misspelled
/// bucket, a misspelled prefix, no credentials, and an endpoint nobody answers on.
#[test]
fn s3_errors_as_users_see_them() {
    let moto = Moto::start();
    moto.upload("logs-bucket", &sample_keys());
    let tmp = tempfile::tempdir().unwrap();
    let port = moto.endpoint.rsplit(':').next().unwrap().to_string();
    let filters = vec![(port.as_str(), "[PORT]"), (r"\d+\.\d+s\b", "[SECONDS]")];
    let snap = |name: &str, mut c: Command| {
        c.current_dir(tmp.path());
        insta::with_settings!({ filters => filters.clone(), prepend_module_to_snapshot => false }, {
            insta_cmd::assert_cmd_snapshot!(name, c);
        });
    };
    let convert = |source: &str, endpoint: &str| s3logs_command(&["convert", source, "--output", "out"], endpoint);
    snap("s3_error_no_such_bucket", convert("s3://no-such-bucket/logs/", &moto.endpoint));
    snap("s3_error_prefix_lists_nothing", convert("s3://logs-bucket/lgos/", &moto.endpoint));
    let mut c = convert("s3://logs-bucket/logs/", &moto.endpoint);
    c.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_CONFIG_FILE", tmp.path().join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", tmp.path().join("no-credentials"));
    snap("s3_error_no_credentials", c);
    // A port with nothing listening (moto's, once it is stopped).
    let closed = moto.endpoint.clone();
    drop(moto);
    let mut c = convert("s3://logs-bucket/logs/", &closed);
    c.args(["--retries", "0"]);
    snap("s3_error_endpoint_refused", c);
    assert!(!tmp.path().join("out/data").exists(), "no failed run leaves table files");
}

/// `convert --glue-table` against moto's Glue: the table is created once (32 columns, Parquet
/// SerDe, classification), each `dt` folder is exactly one partition, a run after a new day adds
/// only that one, and a run killed between its commit and the catalog update leaves a marker the
/// next run registers (and removes) without converting anything again.
#[test]
fn a_glue_table_follows_the_converted_days() {
    let moto = Moto::start();
    moto.upload("logs-bucket", &sample_keys());
    moto.upload("analytics", &[]);
    let glue = |script: &str| {
        moto.python(&format!(
            "g = boto3.client('glue', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='test', \
             aws_secret_access_key='test')\n{script}",
            moto.endpoint
        ))
    };
    let partitions = || {
        let mut p = glue(
            "for p in g.get_partitions(DatabaseName='logs', TableName='s3_access')['Partitions']:\n    \
             print(p['Values'][0], p['StorageDescriptor']['Location'])\n",
        );
        p.sort();
        p
    };
    let convert = |extra: &[&str]| {
        let args =
            ["convert", "s3://logs-bucket/logs/", "--output", "s3://analytics/glued", "--glue-table", "logs.s3_access"];
        let mut c = s3logs_command(&args, &moto.endpoint);
        c.args(["--glue-endpoint-url", &moto.endpoint]).args(extra);
        c.output().unwrap()
    };
    for _ in 0..2 {
        let out = convert(&[]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let table = glue(
        "t = g.get_table(DatabaseName='logs', Name='s3_access')['Table']\n\
         print(len(t['StorageDescriptor']['Columns']), t['Parameters']['classification'], \
         t['StorageDescriptor']['SerdeInfo']['SerializationLibrary'], [k['Name'] for k in t['PartitionKeys']])\n\
         print(len(g.get_tables(DatabaseName='logs')['TableList']))\n",
    );
    assert_eq!(
        table,
        ["32 parquet org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe ['dt']".to_string(), "1".to_string()]
    );
    let dt_folders: std::collections::BTreeSet<String> = moto
        .keys("analytics", "glued/data/")
        .iter()
        .map(|k| k.split('/').nth(2).unwrap().trim_start_matches("dt=").to_string())
        .collect();
    assert_eq!(
        partitions(),
        dt_folders.iter().map(|d| format!("{d} s3://analytics/glued/data/dt={d}/")).collect::<Vec<_>>()
    );
    assert_eq!(dt_folders.len(), 2, "{dt_folders:?}");

    // A new day, delivered by a run killed right after its commit: the next run converts nothing
    // and registers that day from the marker the killed run left.
    let tmp = tempfile::tempdir().unwrap();
    let day = tmp.path().join("2024-03-18-00-10-11-0123456789ABCDEF");
    let sample = std::fs::read_to_string(testdata().join("2024-03-15-00-10-11-4C3B2A1908F7E6D5")).unwrap();
    let line = sample.lines().next().unwrap().replace("14/Mar/2024:23:41:02", "17/Mar/2024:23:41:02");
    std::fs::write(&day, format!("{line}\n")).unwrap();
    moto.upload("logs-bucket", &[("logs/2024-03-18-00-10-11-0123456789ABCDEF".into(), day)]);
    let mut killed = {
        let args =
            ["convert", "s3://logs-bucket/logs/", "--output", "s3://analytics/glued", "--glue-table", "logs.s3_access"];
        let mut c = s3logs_command(&args, &moto.endpoint);
        c.args(["--glue-endpoint-url", &moto.endpoint]).env("S3LOGS_CRASH_AT", "published:1");
        c
    };
    assert_eq!(killed.output().unwrap().status.code(), None, "the crash point stops the run");
    assert_eq!(partitions().len(), 2, "the killed run registered nothing");
    assert_eq!(moto.keys("analytics", "glued/_state/catalog/pending/").len(), 1);
    let out = convert(&["--report", "-"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["rows_written"], 0, "nothing converted again: {r}");
    assert_eq!(partitions().len(), 3, "{:?}", partitions());
    assert!(partitions()[2].starts_with("2024-03-17 "), "{:?}", partitions());
    assert!(moto.keys("analytics", "glued/_state/catalog/pending/").is_empty());

    // A catalog nobody answers on: nothing is converted, the run says which table and exits 76.
    let args =
        ["convert", "s3://logs-bucket/logs/", "--output", "s3://analytics/glued", "--glue-table", "logs.s3_access"];
    let mut c = s3logs_command(&args, &moto.endpoint);
    let out = c.args(["--glue-endpoint-url", "http://127.0.0.1:9"]).output().unwrap();
    assert_eq!(out.status.code(), Some(76), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the Glue table logs.s3_access was not brought up to date"));

    // A table new to the catalog over a DEST converted before: one partition per folder there.
    let args = ["convert", "s3://logs-bucket/logs/", "--output", "s3://analytics/glued", "--glue-table", "logs.older"];
    let mut c = s3logs_command(&args, &moto.endpoint);
    assert!(c.args(["--glue-endpoint-url", &moto.endpoint]).output().unwrap().status.success());
    let older = glue("print(len(g.get_partitions(DatabaseName='logs', TableName='older')['Partitions']))\n");
    assert_eq!(older, ["3"]);
}

/// Fetching under S3's latency (the test kit's model of S3 over local files: 20 ms a request):
/// many small objects get many requests in flight at once, never more than `--concurrency`; a
/// large object is read as 4 MiB ranged GETs; every line ends as one row or one reject. The next
/// unit's first objects, downloaded while a unit finishes, are not asked for twice (also where
/// they come in later listing pages than the unit's first); a run with
/// nothing new asks for none, and an hourly run asks for its new objects only, not for the
/// converted ones of the next unit.
#[test]
fn fetching_keeps_many_small_requests_in_flight_within_the_cap() {
    use s3logs_testkit::s3_model::{S3Model, Timing};
    use std::sync::atomic::Ordering;
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("corpus/logs");
    let mut objects: Vec<(String, Vec<u8>)> = common::write_corpus(&logs, 300, 3 << 20, 7)
        .into_iter()
        .map(|(name, _, body)| (format!("s3://bench/logs/{name}"), body))
        .collect();
    // One object of just over 16 MiB: five parts.
    let spec = s3logs_testkit::corpus::CorpusSpec { total_bytes: 16 << 20 | 1, objects: 1, ..Default::default() };
    let (name, body, _) = s3logs_testkit::corpus::object(&spec, 0);
    std::fs::write(logs.join(&name), &body).unwrap();
    objects.push((format!("s3://bench/logs/{name}"), body));

    let paged = |cap: usize, out: &str, objects: &[(String, Vec<u8>)], page_keys: usize| {
        let timing = Timing { latency: Duration::from_millis(20), bandwidth: 100e6 };
        let model = Arc::new(S3Model { page_keys, ..S3Model::over_folder(&tmp.path().join("corpus"), timing) });
        let counts = model.counts.clone();
        let layer = s3logs::StoreLayer(Arc::new(move |_| model.clone() as Arc<dyn object_store::ObjectStore>));
        let opts = s3logs::ConvertOptions {
            sources: vec!["s3://bench/logs/".into()],
            output: tmp.path().join(out),
            max_reject_ratio: 1.0,
            concurrency: cap,
            store: s3logs::StoreOptions {
                region: Some("us-east-1".into()),
                static_credentials: Some(("unused".into(), "unused".into())),
                layer: Some(layer),
                ..Default::default()
            },
            ..Default::default()
        };
        let report = s3logs::run(&opts).unwrap();
        let mut ids = common::line_ids(&tmp.path().join(out).join("data"));
        ids.extend(common::line_ids(&tmp.path().join(out).join("rejects")));
        ids.sort();
        assert_eq!(ids, common::expected_ids(objects), "every line once");
        (report.objects_read, counts.max_in_flight.load(Ordering::Relaxed), counts.gets.load(Ordering::Relaxed))
    };
    let run = |cap: usize, out: &str, objects: &[(String, Vec<u8>)]| paged(cap, out, objects, 1000);
    // Pages of 40 keys: each unit's objects go on past the page the listing handed over with its
    // first ones, so the next unit's downloads are started again as more pages are taken in.
    let (read, _, gets) = paged(512, "pages", &objects, 40);
    assert_eq!((read, gets), (301, 305), "each object asked for once, in pages of 40 keys too");
    let (read, in_flight, gets) = run(512, "wide", &objects);
    assert_eq!(read, 301);
    // A day's 75 objects of 10 KB (a unit, fetched as one batch) are less than the bytes fetched
    // ahead: all may be in flight (a fixed 16 a window, two windows, allowed 32).
    assert!(in_flight > 50, "{in_flight} requests in flight at most");
    assert_eq!(gets, 300 + 5, "one GET per small object over four units, five 4 MiB parts for the large one");
    let (read, _, gets) = run(512, "wide", &objects);
    assert_eq!((read, gets), (0, 0), "nothing new: no object asked for");
    // Three late objects of the first day, listed before the second day's converted ones.
    let mut names: Vec<&String> = objects.iter().map(|(n, _)| n).collect();
    names.sort();
    let day = names[0].trim_start_matches("s3://bench/logs/")[..10].to_string();
    let late: Vec<(String, Vec<u8>)> =
        (0..3).map(|i| (format!("{day}-23-59-5{i}-LATE0000000000{i}"), objects[i].1.clone())).collect();
    for (name, body) in &late {
        std::fs::write(logs.join(name), body).unwrap();
        objects.push((format!("s3://bench/logs/{name}"), body.clone()));
    }
    let (read, _, gets) = run(512, "wide", &objects);
    assert_eq!((read, gets), (3, 3), "only the new objects asked for");
    let (_, in_flight, _) = run(8, "narrow", &objects);
    assert!(in_flight <= 8 + 1, "{in_flight} requests in flight with --concurrency 8 (and the listing)");
}

/// `tests/fixtures/slowdown_proxy.py` in front of a moto server: answers `503 SlowDown` to a
/// request that arrives while `limit` others are being served. Killed on drop.
struct SlowDownProxy {
    _server: Server,
    endpoint: String,
    log: PathBuf,
}

impl SlowDownProxy {
    fn start(moto: &Moto, limit: usize, log: PathBuf) -> SlowDownProxy {
        let port = free_port();
        let upstream = moto.endpoint.rsplit(':').next().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/slowdown_proxy.py");
        let child = Command::new("python3")
            .arg(script)
            .args([&port.to_string(), upstream, &limit.to_string(), "20"])
            .arg(&log)
            .spawn()
            .unwrap();
        wait_for_port(port, Duration::from_secs(30), "the SlowDown proxy");
        SlowDownProxy { _server: Server(child), endpoint: format!("http://127.0.0.1:{port}"), log }
    }

    /// Requests answered `503 SlowDown`, and requests served.
    fn answers(&self) -> (usize, usize) {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let slowed = log.lines().filter(|l| *l == "503").count();
        (slowed, log.lines().count() - slowed)
    }
}

/// S3 answering `503 SlowDown` past its request rate (a proxy in front of moto that serves four
/// requests at once): the run cuts the requests it sends at once to what the store takes,
/// instead of each request retrying on its own schedule at the same rate, and reports it; every
/// line still ends once, in an S3 DEST written through the same proxy.
#[test]
fn a_run_slows_down_when_s3_asks_it_to() {
    let moto = Moto::start();
    moto.upload("analytics", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let objects = generated(&tmp.path().join("gen"), 240, 2 << 20, 31);
    upload_generated(&moto, &objects);
    let proxy = SlowDownProxy::start(&moto, 4, tmp.path().join("proxy.log"));
    let args = ["convert", "s3://logs-bucket/logs/", "--output", "s3://analytics/slow", "--concurrency", "64"];
    let out = s3logs_command(&args, &proxy.endpoint).args(["--quiet", "--report", "/dev/stdout"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (slowed, served) = proxy.answers();
    assert!(slowed > 0, "the proxy never had to say SlowDown ({served} served)");
    // Every SlowDown was seen by the gate, object_store's own retries included.
    assert_eq!(report["throttled"].as_u64(), Some(slowed as u64), "{report}");
    let lowest = report["request_limit_lowest"].as_u64().unwrap();
    assert!(lowest <= 4, "the gate went no lower than {lowest} requests at once");
    // With each request retrying on its own schedule (the limit never cut), 64 requests contend
    // for 4 places the whole run: 494 SlowDowns for these 240 objects. Cut to what the store
    // takes: a burst at the start, then one now and then as the limit grows back (82-86).
    assert!(slowed < objects.len(), "{slowed} SlowDowns for {} objects ({served} served)", objects.len());
    assert_s3_table_exactly_once(&moto, "slow", &objects, tmp.path());
    eprintln!("{slowed} SlowDowns, {served} requests served, the gate down to {lowest} at once");
}
