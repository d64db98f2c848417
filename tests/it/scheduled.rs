//! Scheduled runs on a local DEST: killed at random and restarted, overlapping, late and
//! same-second objects, dry runs and status. Every check compares the table with the input line
//! by line: `(source_object, source_line)` in data plus rejects, each exactly once.
//! (The same promises against moto's S3 server are in tests/s3.rs.)

use s3logs_testkit::helpers as common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{Rng, expected_ids, line_ids, run_with_kills, walkdir_files};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_s3logs"));
    c.env_remove("RUST_LOG");
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `n` generated objects (with about 1% malformed lines) into `dir`; returns them with
/// the names s3logs gives them (absolute paths).
fn corpus(dir: &Path, n: usize, bytes: u64, seed: u64) -> Vec<(String, Vec<u8>)> {
    common::write_corpus(dir, n, bytes, seed)
        .into_iter()
        .map(|(_, path, body)| (std::fs::canonicalize(path).unwrap().display().to_string(), body))
        .collect()
}

/// Data plus rejects, as `(source_object, source_line)`.
fn table_ids(dest: &Path) -> Vec<(String, i64)> {
    let mut ids = line_ids(&dest.join("data"));
    ids.extend(line_ids(&dest.join("rejects")));
    ids.sort();
    ids
}

fn assert_exactly_once(dest: &Path, objects: &[(String, Vec<u8>)]) {
    let (got, want) = (table_ids(dest), expected_ids(objects));
    if got != want {
        let mut dups = got.clone();
        dups.dedup();
        panic!("{} lines in the table, {} expected, {} distinct", got.len(), want.len(), dups.len());
    }
}

fn convert(src: &Path, dest: &Path, extra: &[&str]) -> Command {
    let mut c = bin();
    c.args(["convert", src.to_str().unwrap(), "--output", dest.to_str().unwrap(), "--max-reject-ratio", "0.5"]);
    c.args(extra);
    c
}

/// Promises 1 and 3, as an hourly job on a growing bucket: each round new objects arrive, and
/// runs are killed with SIGKILL at random moments (parsing, staging, committing, publishing) and
/// started again until one succeeds. At every moment between runs each file under data/ is a
/// complete Parquet file, and at the end the table holds every line exactly once: the same table
/// as one clean run over all the objects.
#[test]
fn killed_at_random_and_restarted_loses_nothing_and_repeats_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (all, src, dest) = (tmp.path().join("all"), tmp.path().join("logs"), tmp.path().join("table"));
    let (rounds, per_round) = (4, 24);
    let objects = corpus(&all, rounds * per_round, 12 << 20, 7);
    // Small batches: many commits, so kills land in every step of the protocol.
    let cmd = || convert(&src, &dest, &["--batch-size", "192KiB", "--quiet"]);

    // How long one clean run over everything takes here; a round has a share of that to do.
    let probe = tmp.path().join("probe");
    let started = std::time::Instant::now();
    assert!(convert(&all, &probe, &["--batch-size", "192KiB"]).output().unwrap().status.success());
    let window = started.elapsed() / rounds as u32;

    let seed = std::env::var("S3LOGS_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_1234_u64);
    let mut rng = Rng(seed);
    let mut killed = 0;
    std::fs::create_dir_all(&src).unwrap();
    for round in 0..rounds {
        for (name, _) in &objects[round * per_round..(round + 1) * per_round] {
            let file = Path::new(name).file_name().unwrap();
            std::fs::copy(name, src.join(file)).unwrap();
        }
        killed += run_with_kills(cmd, 6, window, &mut rng, || {
            for f in walkdir_files(&dest.join("data")) {
                let file = std::fs::File::open(&f).unwrap();
                assert!(
                    parquet::file::reader::SerializedFileReader::new(file).is_ok(),
                    "{} is not a complete Parquet file (seed {seed})",
                    f.display()
                );
            }
        });
    }
    assert!(killed >= rounds, "only {killed} runs were killed before they finished (seed {seed})");
    let renamed: Vec<(String, Vec<u8>)> = objects
        .iter()
        .map(|(n, b)| (src.join(Path::new(n).file_name().unwrap()).display().to_string(), b.clone()))
        .collect();
    let canonical = |ids: Vec<(String, i64)>| -> Vec<(String, i64)> {
        ids.into_iter().map(|(n, l)| (Path::new(&n).file_name().unwrap().to_string_lossy().into_owned(), l)).collect()
    };
    assert_exactly_once(&dest, &renamed);
    assert_eq!(canonical(table_ids(&dest)), canonical(table_ids(&probe)), "the same table as one clean run");

    // And once more: nothing new, nothing written, nothing left staged.
    let out = cmd().arg("--report").arg(tmp.path().join("r.json")).output().unwrap();
    assert!(out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(tmp.path().join("r.json")).unwrap()).unwrap();
    assert_eq!((r["nothing_new"].as_bool(), r["objects_skipped"].as_u64()), (Some(true), Some(96)));
    assert!(!dest.join("_staging").exists());
    eprintln!("{killed} runs killed (seed {seed})");
}

/// Promise 5: a run that finds a unit's lease held leaves that unit to its holder, converts the
/// others, and exits 73 with a clear message; with --lease-wait it waits for the lease, then
/// converts only what is still new.
#[test]
fn a_second_run_waits_or_exits_with_its_own_code() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("logs");
    let dest = tmp.path().join("table");
    let mut objects = corpus(&src, 6, 256 << 10, 3);
    // A log object with no date in its name: in the `undated` unit, as standard input is.
    let undated = src.join("access.log");
    std::fs::write(&undated, &objects[0].1).unwrap();
    let undated = (std::fs::canonicalize(&undated).unwrap().display().to_string(), objects[0].1.clone());
    // Another run holds the `undated` unit's lease: one converting standard input that has not ended yet.
    let mut held = Command::new(env!("CARGO_BIN_EXE_s3logs"))
        .args(["convert", "-", "--output"])
        .arg(&dest)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let stdin_state = crate::unit_state(&dest, "stdin");
    let lease = stdin_state.join("lease");
    crate::wait_for_lease(&stdin_state);

    // Once it waits for input, the holder changes nothing more.
    let mut before = common::walkdir_files(&dest);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = common::walkdir_files(&dest);
        if now == before && dest.join("_staging").exists() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the holder never settled");
        before = now;
    }
    let out = convert(&src, &dest, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(73), "{}", stderr(&out));
    assert!(stderr(&out).contains("other runs hold 1 of the units listed (e.g. undated)"), "{}", stderr(&out));
    // Every other unit was converted; the held one was left alone.
    assert_exactly_once(&dest, &objects);
    let undated_state = common::walkdir_files(&crate::unit_state(&dest, "stdin"));
    assert!(undated_state.iter().all(|p| p.starts_with(&lease)), "{undated_state:?}");

    // Waiting: the holder lets go after a moment, and the waiting run converts what is left.
    let waiting = convert(&src, &dest, &["--lease-wait", "60"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    // The holder ends (killed: its lease names a process of this host that is gone).
    held.kill().unwrap();
    held.wait().unwrap();
    assert!(waiting.wait_with_output().unwrap().status.success());
    objects.push(undated);
    assert_exactly_once(&dest, &objects);
}

/// Promise 5 with real processes: three runs started together on one DEST, all waiting for the
/// lease; whatever order they get it in, the table holds every line once.
#[test]
fn runs_started_together_convert_each_object_once() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("logs");
    let dest = tmp.path().join("table");
    let objects = corpus(&src, 24, 2 << 20, 11);
    let children: Vec<_> = (0..3)
        .map(|_| convert(&src, &dest, &["--lease-wait", "120", "--batch-size", "256KiB"]).spawn().unwrap())
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_exactly_once(&dest, &objects);
    let commits: Vec<PathBuf> = walkdir_files(&dest.join("_state/units"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/commits/"))
        .collect();
    assert!(commits.len() >= 2, "{commits:?}");
}

fn partitioned(root: &Path, day: &str, time: &str, unique: &str) -> PathBuf {
    let (y, m, d) = (&day[..4], &day[5..7], &day[8..10]);
    let dir = root.join(format!("111122223333/us-east-1/app/{y}/{m}/{d}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{day}-{time}-{unique}"))
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/logs").join(name)).unwrap()
}

/// Promises 2 and 4: objects that arrive late into an old key range, and one whose key shares
/// the second of one already converted, are converted by the next run, alone; their records go
/// to their own days as additional files, and the files already there are not touched.
#[test]
fn late_and_same_second_objects_are_found_and_land_in_their_day() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("logs");
    let dest = tmp.path().join("table");
    let first = sample("2024-03-15-00-10-11-4C3B2A1908F7E6D5");
    let a = partitioned(&src, "2024-03-15", "00-10-11", "4C3B2A1908F7E6D5");
    std::fs::write(&a, &first).unwrap();
    let b = partitioned(&src, "2024-03-15", "02-20-45", "9E8D7C6B5A493827");
    std::fs::write(&b, sample("2024-03-15-02-20-45-9E8D7C6B5A493827")).unwrap();
    let range = ["--since", "2024-03-14", "--until", "2024-03-15"];
    assert!(convert(&src, &dest, &range).output().unwrap().status.success());
    let before: Vec<(PathBuf, Vec<u8>, std::time::SystemTime)> = walkdir_files(&dest.join("data"))
        .into_iter()
        .map(|p| {
            let (bytes, mtime) = (std::fs::read(&p).unwrap(), std::fs::metadata(&p).unwrap().modified().unwrap());
            (p, bytes, mtime)
        })
        .collect();

    // A late object in the previous day's folder, and one with the same second as `a`.
    let late = partitioned(&src, "2024-03-14", "23-59-59", "LATE000000000000");
    std::fs::write(&late, &first).unwrap();
    let twin = partitioned(&src, "2024-03-15", "00-10-11", "0000SAMESECOND00");
    std::fs::write(&twin, &first).unwrap();
    let report = tmp.path().join("r.json");
    let out = convert(&src, &dest, &[&range[..], &["--report", report.to_str().unwrap()]].concat()).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!((r["objects_read"].as_u64(), r["objects_skipped"].as_u64()), (Some(2), Some(2)), "{r}");
    // One commit per unit: the late object's day (its first), and `a`'s day (its second).
    assert_eq!(r["commits"], serde_json::json!([1, 2]));

    // The old files are untouched; the new records are additional files in their days.
    for (p, bytes, mtime) in &before {
        assert_eq!(&std::fs::read(p).unwrap(), bytes);
        assert_eq!(&std::fs::metadata(p).unwrap().modified().unwrap(), mtime);
    }
    let added: Vec<String> = r["files_written"].as_array().unwrap().iter().map(|f| f["path"].to_string()).collect();
    // Each unit's batch writes its own file in each day its records fall on.
    assert_eq!(added.len(), 4, "{added:?}");
    let days = ["data/dt=2024-03-14/", "data/dt=2024-03-15/"];
    assert!(added.iter().enumerate().all(|(i, f)| f.contains(days[i % 2])), "{added:?}");
    let name = |p: &Path| std::fs::canonicalize(p).unwrap().display().to_string();
    let objects: Vec<(String, Vec<u8>)> =
        [&a, &b, &late, &twin].iter().map(|p| (name(p), std::fs::read(p).unwrap())).collect();
    assert_exactly_once(&dest, &objects);
}

/// `--dry-run` lists what would be converted and writes nothing; `status` reports what the
/// ledger holds; the report says what was skipped.
#[test]
fn dry_run_and_status() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("logs");
    let dest = tmp.path().join("table");
    let objects = corpus(&src, 5, 64 << 10, 5);

    let out = convert(&src, &dest, &["--dry-run"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Vec<String> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split('\t').next().unwrap().to_string()).collect();
    assert_eq!(listed, objects.iter().map(|o| o.0.clone()).collect::<Vec<_>>());
    assert!(stderr(&out).contains("dry run: would convert 5 objects"), "{}", stderr(&out));
    assert!(!dest.exists(), "a dry run writes nothing");

    let out = bin().args(["status", dest.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(74), "no DEST yet: {}", stderr(&out));

    assert!(convert(&src, &dest, &[]).output().unwrap().status.success());
    // One more object, then a dry run: only it would be converted.
    let extra = corpus(&tmp.path().join("more"), 6, 64 << 10, 5).pop().unwrap();
    let extra_path = src.join("2099-01-01-00-00-00-EXTRA");
    std::fs::write(&extra_path, &extra.1).unwrap();
    let out = convert(&src, &dest, &["--dry-run"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    assert!(stderr(&out).contains("5 already converted"), "{}", stderr(&out));

    let out = bin().args(["status", dest.to_str().unwrap(), "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids = table_ids(&dest);
    let rejects = line_ids(&dest.join("rejects")).len() as u64;
    assert_eq!(s["objects"].as_u64(), Some(5));
    assert_eq!(s["lines"].as_u64(), Some(ids.len() as u64));
    assert_eq!(s["rows"].as_u64(), Some(ids.len() as u64 - rejects));
    assert_eq!(s["rejects"].as_u64(), Some(rejects));
    // One commit in each unit (the corpus spreads over days: a unit is a day of a source).
    assert!(s["units"].as_u64() > Some(1), "{s}");
    assert_eq!(s["commits"], s["units"]);
    assert_eq!(s["lease"], "free");
    let text = bin().args(["status", dest.to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("converted: 5 objects") && text.contains("last commit: #1"), "{text}");
}

/// Promise 1 at every step of the commit protocol, deterministically: the process aborts (no
/// cleanup, like kill -9) at each crash point, at the first and at a later batch; the next run
/// finishes or discards what it left, and the table holds every line once.
#[test]
fn a_crash_at_each_step_of_the_commit_protocol_is_finished_or_discarded() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("logs");
    let objects = corpus(&src, 12, 1 << 20, 13);
    for point in ["staged", "committed", "publishing", "published"] {
        for n in ["1", "3"] {
            let dest = tmp.path().join(format!("{point}-{n}"));
            let crashed = convert(&src, &dest, &["--batch-size", "128KiB"])
                .env("S3LOGS_CRASH_AT", format!("{point}:{n}"))
                .output()
                .unwrap();
            assert_eq!(crashed.status.code(), None, "{point}:{n} did not crash: {}", stderr(&crashed));
            assert!(dest.join("_staging").exists(), "{point}:{n} left nothing staged");
            let status = bin().args(["status", dest.to_str().unwrap(), "--json"]).output().unwrap();
            let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
            let committed = s["staged_committed"].as_array().unwrap().len();
            assert_eq!(committed, usize::from(point != "staged"), "{point}:{n}: {s}");
            assert_eq!(s["lease"], "expired", "a dead process's lease is free to take: {s}");

            let out = convert(&src, &dest, &["--batch-size", "128KiB", "--report", "/dev/stdout"]).output().unwrap();
            assert!(out.status.success(), "{point}:{n}: {}", stderr(&out));
            let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let (finished, discarded) =
                (r["batches_finished"].as_array().unwrap(), r["batches_discarded"].as_array().unwrap());
            assert_eq!(
                (finished.len(), discarded.len()),
                if point == "staged" { (0, 1) } else { (1, 0) },
                "{point}:{n}"
            );
            assert_exactly_once(&dest, &objects);
            assert!(!dest.join("_staging").exists());
        }
    }
}

/// Every commit record in `dest`, with its unit's state folder, in unit and commit order.
fn commit_records(dest: &Path) -> Vec<(PathBuf, serde_json::Value)> {
    let mut records: Vec<PathBuf> = walkdir_files(&dest.join("_state/units"))
        .into_iter()
        // Not the temporary files a record is written in before it is linked into place.
        .filter(|p| p.parent().is_some_and(|d| d.ends_with("commits")) && p.extension().is_some_and(|e| e == "json"))
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    records.sort();
    records
        .into_iter()
        .map(|p| {
            let unit = p.parent().unwrap().parent().unwrap().to_path_buf();
            (unit, serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap())
        })
        .collect()
}

/// The batches left in `dest`'s staging area, as `unit/batch`.
fn staged(dest: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for unit in std::fs::read_dir(dest.join("_staging")).into_iter().flatten().flatten() {
        for batch in std::fs::read_dir(unit.path()).unwrap().flatten() {
            out.push(format!("{}/{}", unit.file_name().to_string_lossy(), batch.file_name().to_string_lossy()));
        }
    }
    out
}

fn report_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(out)))
}

/// A crash at the commit point, then the staging area gone (removed by hand, or discarded by a
/// run that took over while this one's commit request was stalled, before the request landed):
/// the commit record names files that are nowhere. The next run must not say "nothing new": it
/// converts the batch's recorded objects again into the same files and publishes them.
#[test]
fn committed_batches_whose_staging_was_lost_are_converted_again() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("logs");
    let objects = corpus(&src, 8, 1 << 20, 21);
    for n in ["1", "3"] {
        let dest = tmp.path().join(format!("committed-{n}"));
        let crashed = convert(&src, &dest, &["--batch-size", "128KiB"])
            .env("S3LOGS_CRASH_AT", format!("committed:{n}"))
            .output()
            .unwrap();
        assert_eq!(crashed.status.code(), None, "committed:{n} did not crash: {}", stderr(&crashed));
        let left = staged(&dest);
        assert_eq!(left.len(), 1, "{left:?}");
        let lost = left[0].split('/').nth(1).unwrap().to_string();
        std::fs::remove_dir_all(dest.join("_staging")).unwrap();

        let out = convert(&src, &dest, &["--batch-size", "128KiB", "--report", "/dev/stdout"]).output().unwrap();
        assert!(out.status.success(), "{n}: {}", stderr(&out));
        let r = report_of(&out);
        assert_eq!(r["batches_recreated"], serde_json::json!([lost]), "{n}");
        assert_exactly_once(&dest, &objects);
        assert!(!dest.join("_staging").exists());
        let again = convert(&src, &dest, &["--report", "/dev/stdout"]).output().unwrap();
        assert!(again.status.success() && report_of(&again)["nothing_new"] == true, "{}", stderr(&again));
    }
}

/// Files of a published commit deleted from the table (and its published mark with them): even a
/// run with nothing new puts them back, byte for byte. With only some of a commit's files gone,
/// converting again would repeat the others' rows, so every run stops (exit 74) naming them.
#[test]
fn a_run_with_nothing_new_still_finds_committed_files_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dest) = (tmp.path().join("logs"), tmp.path().join("table"));
    let objects = corpus(&src, 8, 1 << 20, 22);
    assert!(convert(&src, &dest, &["--batch-size", "256KiB"]).output().unwrap().status.success());
    let records = commit_records(&dest);
    let files = |i: usize| -> Vec<String> {
        let rec = &records[i].1;
        rec["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap().to_string()).collect()
    };
    let published =
        |i: usize| records[i].0.join(format!("published/{:020}.json", records[i].1["seq"].as_u64().unwrap()));
    let first = files(0);
    let before: Vec<Vec<u8>> = first.iter().map(|f| std::fs::read(dest.join(f)).unwrap()).collect();
    for f in &first {
        std::fs::remove_file(dest.join(f)).unwrap();
    }
    std::fs::remove_file(published(0)).unwrap();

    let out = convert(&src, &dest, &["--report", "/dev/stdout"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(report_of(&out)["batches_recreated"], serde_json::json!([records[0].1["batch"]]));
    let after: Vec<Vec<u8>> = first.iter().map(|f| std::fs::read(dest.join(f)).unwrap()).collect();
    assert!(before == after, "the files converted again are the files first written");
    assert_exactly_once(&dest, &objects);

    let second = (1..records.len()).find(|&i| files(i).len() >= 2).expect("a commit with data and rejects files");
    let (files2, seq2) = (files(second), records[second].1["seq"].as_u64().unwrap());
    std::fs::remove_file(dest.join(&files2[0])).unwrap();
    std::fs::remove_file(published(second)).unwrap();
    for _ in 0..2 {
        let out = convert(&src, &dest, &[]).output().unwrap();
        assert_eq!(out.status.code(), Some(74), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(&files2[0]) && err.contains(&format!("commit {seq2}")), "{err}");
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Corrupt objects among good ones (a truncated gzip object read whole, gzip magic followed by
/// garbage, and a truncated gzip object with more content than is held whole, so streamed): each
/// is quarantined with its reason, the rest of its batch and the batches after it commit, and the
/// run exits 69. Later runs skip them; one replaced by a good copy is converted; one still
/// corrupt stays quarantined, also with --retry-quarantined.
#[test]
fn corrupt_objects_are_quarantined_and_the_rest_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dest) = (tmp.path().join("logs"), tmp.path().join("table"));
    let mut good = corpus(&src, 8, 1 << 20, 23);
    let sample = good[0].1.clone();
    let whole = gzip(&sample);
    // Named for the same day as the object whose lines they hold (records must be near their key date).
    let day = Path::new(&good[0].0).file_name().unwrap().to_str().unwrap()[..10].to_string();
    let truncated = src.join(format!("{day}-23-00-00-TRUNCATED.gz"));
    std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    let garbage = src.join(format!("{day}-23-00-01-GARBAGE.gz"));
    std::fs::write(&garbage, [&whole[..10], &[0xAB; 4096][..]].concat()).unwrap();
    let long = gzip(&sample.repeat((40 << 20) / sample.len() + 1));
    let streamed = src.join(format!("{day}-23-00-02-STREAMED.gz"));
    std::fs::write(&streamed, &long[..long.len() - 1000]).unwrap();
    let name = |p: &Path| std::fs::canonicalize(p).unwrap().display().to_string();
    let bad = [name(&truncated), name(&garbage), name(&streamed)];

    let run = |extra: &[&str]| {
        let out = convert(&src, &dest, &[&["--batch-size", "256KiB", "--report", "/dev/stdout"], extra].concat())
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        (out, report)
    };
    let (out, r) = run(&[]);
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    let mut quarantined: Vec<String> =
        r["objects_quarantined"].as_array().unwrap().iter().map(|q| q["name"].as_str().unwrap().to_string()).collect();
    quarantined.sort();
    let mut want = bad.to_vec();
    want.sort();
    assert_eq!(quarantined, want, "{r}");
    assert!(r["objects_quarantined"][0]["reason"].as_str().unwrap().contains(".gz"), "{r}");
    assert!(r["commits"].as_array().unwrap().len() >= 2, "the batches went on: {r}");
    assert_exactly_once(&dest, &good);

    let (out, r) = run(&[]);
    assert!(out.status.success() && r["nothing_new"] == true, "{}: {r}", stderr(&out));

    // The truncated one replaced by a good copy: converted. The others stay quarantined, even
    // when tried again.
    std::fs::write(&truncated, &whole).unwrap();
    let (out, r) = run(&[]);
    assert!(out.status.success(), "{}: {r}", stderr(&out));
    good.push((bad[0].clone(), sample));
    assert_exactly_once(&dest, &good);
    let (out, r) = run(&["--retry-quarantined"]);
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert_eq!(r["objects_quarantined"].as_array().unwrap().len(), 2, "{r}");
    assert_exactly_once(&dest, &good);
    let status = bin().args(["status", dest.to_str().unwrap(), "--json"]).output().unwrap();
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(s["quarantined"].as_array().map(Vec::len), Some(2), "{s}");
}

/// Runs killed while holding the lease left a lease file each, for ever: the next run to take the
/// lease prunes the generations before the last one, and its release the rest.
#[test]
fn lease_files_of_killed_runs_do_not_pile_up() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("logs");
    let objects = corpus(&src, 6, 512 << 10, 24);
    let dest = tmp.path().join("table");
    for _ in 0..4 {
        let crashed =
            convert(&src, &dest, &["--batch-size", "64KiB"]).env("S3LOGS_CRASH_AT", "committed:1").output().unwrap();
        assert_eq!(crashed.status.code(), None, "{}", stderr(&crashed));
    }
    let out = convert(&src, &dest, &["--batch-size", "64KiB"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_exactly_once(&dest, &objects);
    // Each unit keeps one lease record: the last run's, released.
    for unit in std::fs::read_dir(dest.join("_state/units")).unwrap().flatten() {
        let leases = walkdir_files(&unit.path().join("lease"));
        assert_eq!(leases.len(), 1, "{leases:?}");
    }
}

/// The lease records of every unit in `dest`.
fn lease_records(dest: &Path) -> Vec<PathBuf> {
    walkdir_files(&dest.join("_state/units"))
        .into_iter()
        .filter(|p| p.parent().is_some_and(|d| d.ends_with("lease")) && p.extension().is_some_and(|e| e == "json"))
        .collect()
}

/// How Kubernetes, AWS Batch and systemd stop a task: SIGTERM. The run stops at its next safe
/// point with 143, releasing DEST's lease (its record says so: a retry on another host need not
/// wait for it to expire), with nothing half-made left, and the next run finishes the table
/// exactly. A run waiting for the lease stops too (130 for SIGINT), instead of waiting on.
#[test]
fn sigterm_stops_at_a_safe_point_and_releases_the_lease() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dest) = (tmp.path().join("logs"), tmp.path().join("table"));
    let objects = corpus(&src, 64, 96 << 20, 11);
    let signal = |child: &std::process::Child, sig: i32| {
        // SAFETY: sends a signal to a child process this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
    };
    let wait = |mut child: std::process::Child| -> Output {
        // A guard against a run that never stops, not a timing claim.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while child.try_wait().unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "the run did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    };
    let mut run = convert(&src, &dest, &["--batch-size", "8MiB", "--quiet"]);
    let child = run.stderr(std::process::Stdio::piped()).spawn().unwrap();
    // Once it has committed a batch, it is in the middle of the next one.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while commit_records(&dest).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no batch was committed");
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(&child, libc::SIGTERM);
    let out = wait(child);
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert!(stderr(&out).contains("stopped by SIGTERM at a safe point"), "{}", stderr(&out));
    // Every unit's newest lease record says it was released.
    for unit in std::fs::read_dir(dest.join("_state/units")).unwrap().flatten() {
        let latest = walkdir_files(&unit.path().join("lease")).into_iter().max().expect("a lease record");
        let record: serde_json::Value = serde_json::from_slice(&std::fs::read(latest).unwrap()).unwrap();
        assert_eq!(record["released"], true, "{record}");
    }
    assert!(walkdir_files(&dest.join("_staging")).is_empty(), "nothing half-made is left");
    let committed = table_ids(&dest).len();
    assert!(committed > 0 && committed < expected_ids(&objects).len(), "stopped in the middle: {committed}");

    // A retry on another host (another UTS namespace: another host name) starts at once, with
    // --lease-wait 0, and finishes the table. Where namespaces cannot be made (not root), the
    // released records above are what it relies on.
    let other_host = Command::new("unshare").args(["-u", "true"]).status().is_ok_and(|s| s.success());
    if other_host {
        let args = [
            "-u",
            "sh",
            "-c",
            "hostname s3logs-retry-host && exec \"$0\" convert \"$1\" --output \"$2\" --lease-wait 0 --quiet",
        ];
        let out = Command::new("unshare")
            .args(args)
            .args([env!("CARGO_BIN_EXE_s3logs"), src.to_str().unwrap(), dest.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "the retry on another host: {}", stderr(&out));
        assert_exactly_once(&dest, &objects);
        let owners: Vec<serde_json::Value> =
            lease_records(&dest).iter().map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()).collect();
        assert!(owners.iter().any(|r| r["host"] == "s3logs-retry-host"), "{owners:?}");
    } else {
        eprintln!("unshare -u is not available here: the retry on another host was not run");
    }

    // Another run holds a unit's lease (standard input's, `undated`, never ending): a run waiting
    // for it (an undated object) stops on SIGINT instead of waiting on.
    let dest = tmp.path().join("table2");
    let mut holder = bin()
        .args(["convert", "-", "--output", dest.to_str().unwrap(), "--quiet", "--max-reject-ratio", "1"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = holder.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"x\n").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !lease_records(&dest).iter().any(|p| {
        std::fs::read(p)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|r| r["released"] == false && r["pid"] == holder.id())
    }) {
        assert!(std::time::Instant::now() < deadline, "the holder never took the lease");
        std::thread::sleep(Duration::from_millis(10));
    }
    let undated = tmp.path().join("access.log");
    std::fs::write(&undated, &objects[0].1).unwrap();
    let waiter =
        convert(&undated, &dest, &["--lease-wait", "600"]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    signal(&waiter, libc::SIGINT);
    let out = wait(waiter);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("SIGINT"), "{}", stderr(&out));
    drop(stdin);
    let out = holder.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(line_ids(&dest.join("data")), Vec::new(), "the stopped waiter wrote nothing");
}

/// The first windows of the next unit are parsed while a unit commits, guessed from the listing
/// before the next unit's ledger is read. Here the guess is wrong: the next unit's first object
/// was converted by an earlier run, so the batch draws other objects than the ones parsed ahead,
/// and must parse its own. The table holds every line once.
#[test]
fn objects_parsed_ahead_of_their_unit_but_converted_already_are_not_written_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dest) = (tmp.path().join("logs"), tmp.path().join("table"));
    let converted = partitioned(&src, "2024-03-15", "00-10-11", "4C3B2A1908F7E6D5");
    std::fs::write(&converted, sample("2024-03-15-00-10-11-4C3B2A1908F7E6D5")).unwrap();
    assert!(convert(&src, &dest, &[]).output().unwrap().status.success());

    // A new unit before it (all new, so the next one's first objects are parsed ahead), and a new
    // object after it in its own unit.
    let before = partitioned(&src, "2024-03-14", "23-59-59", "0000000000000000");
    std::fs::write(&before, sample("2024-03-15-00-10-11-4C3B2A1908F7E6D5")).unwrap();
    let after = partitioned(&src, "2024-03-15", "02-20-45", "9E8D7C6B5A493827");
    std::fs::write(&after, sample("2024-03-15-02-20-45-9E8D7C6B5A493827")).unwrap();
    let report = tmp.path().join("r.json");
    let out = convert(&src, &dest, &["--report", report.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!((r["objects_read"].as_u64(), r["objects_skipped"].as_u64()), (Some(2), Some(1)), "{r}");
    let name = |p: &Path| std::fs::canonicalize(p).unwrap().display().to_string();
    let objects: Vec<(String, Vec<u8>)> =
        [&converted, &before, &after].iter().map(|p| (name(p), std::fs::read(p).unwrap())).collect();
    assert_exactly_once(&dest, &objects);
}
