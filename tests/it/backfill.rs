//! Backfills on many machines: shards (`--shard K/N`) run at once give the table of one run, the
//! same shard twice converts once, N can change between runs, a run reads the state of the units
//! it lists only, and a DEST written before per-unit state keeps working and migrates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

use s3logs_testkit::corpus::{CorpusSpec, Expected, object};
use s3logs_testkit::helpers as common;
use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_s3logs"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A corpus over `days` days in two sources under `root`: simple keys in `simple/` and
/// partitioned keys in `part/111122223333/us-east-1/app/YYYY/MM/DD/` (every other object), 1% of
/// the lines malformed. Returns each object's path (canonical: its `source_object`) and bytes,
/// and what the generator says a conversion must find.
pub fn two_source_corpus(root: &Path, objects: usize, days: u32, seed: u64) -> (Vec<(String, Vec<u8>)>, Expected) {
    let spec = CorpusSpec {
        seed,
        total_bytes: objects as u64 * 3000,
        objects,
        malformed_ratio: 0.01,
        days,
        ..CorpusSpec::default()
    };
    let mut expected = Expected::default();
    let mut out = Vec::new();
    for i in 0..objects {
        let (name, body, exp) = object(&spec, i);
        let dir = if i % 2 == 0 {
            root.join("simple")
        } else {
            root.join(format!("part/111122223333/us-east-1/app/{}/{}/{}", &name[..4], &name[5..7], &name[8..10]))
        };
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(&name);
        std::fs::write(&path, &body).unwrap();
        expected.add(&exp);
        out.push((std::fs::canonicalize(&path).unwrap().display().to_string(), body));
    }
    (out, expected)
}

fn convert(src: &Path, dest: &Path, extra: &[&str]) -> Command {
    let mut c = bin();
    c.args(["convert", src.to_str().unwrap(), "--output", dest.to_str().unwrap(), "--quiet"]);
    c.args(extra);
    c
}

pub type Rows = Vec<serde_json::Map<String, Value>>;

/// Data rows and rejects of a table, each sorted by `(source_object, source_line)`.
pub fn table(dest: &Path) -> (Rows, Rows) {
    let read = |dir: &Path| {
        let mut rows: Rows = common::walkdir_files(dir).iter().flat_map(|f| common::file_rows(f)).collect();
        let key = |r: &serde_json::Map<String, Value>| (r["source_object"].to_string(), r["source_line"].as_i64());
        rows.sort_by_key(key);
        rows
    };
    (read(&dest.join("data")), read(&dest.join("rejects")))
}

/// Every commit record of every unit, as `(unit, record)`.
fn commit_records(dest: &Path) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for unit in std::fs::read_dir(dest.join("_state/units")).unwrap().flatten() {
        let records = common::walkdir_files(&unit.path().join("commits"));
        for rec in records.into_iter().filter(|p| p.extension().is_some_and(|e| e == "json")) {
            let v: Value = serde_json::from_slice(&std::fs::read(&rec).unwrap()).unwrap();
            out.push((unit.file_name().to_string_lossy().into_owned(), v));
        }
    }
    out
}

/// The table's invariants after any number of runs: each object in exactly one unit ledger (its
/// own unit's), the staging area gone, and each file under `data/` and `rejects/` named by
/// exactly one commit record.
pub fn assert_state_consistent(dest: &Path, objects: &[(String, Vec<u8>)]) {
    let records = commit_records(dest);
    let mut in_ledgers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut named: BTreeMap<String, usize> = BTreeMap::new();
    for (unit, rec) in &records {
        for o in rec["objects"].as_array().unwrap() {
            in_ledgers.entry(o["name"].as_str().unwrap().to_string()).or_default().push(unit.clone());
        }
        for f in rec["files"].as_array().unwrap() {
            *named.entry(f["path"].as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    for (name, _) in objects {
        let units = in_ledgers.get(name).cloned().unwrap_or_default();
        assert_eq!(units, [s3logs::unit_of(name)], "{name} in the ledgers of {units:?}");
    }
    assert_eq!(in_ledgers.len(), objects.len(), "objects in the ledgers that were not listed");
    assert!(!dest.join("_staging").exists(), "staging left behind");
    let files: BTreeSet<String> = ["data", "rejects"]
        .iter()
        .flat_map(|d| common::walkdir_files(&dest.join(d)))
        .map(|p| p.strip_prefix(dest).unwrap().display().to_string())
        .collect();
    assert_eq!(files, named.keys().cloned().collect(), "files in the table and files the records name");
    assert!(named.values().all(|&n| n == 1), "a file named by two commit records");
}

/// Acceptance 1 (local DEST): 8 shards run at once over 120 key-days (simple and partitioned
/// keys, 1% malformed lines) make exactly the rows and rejects of one `--shard 0/1` run and of the
/// generator's totals.
#[test]
fn eight_shards_at_once_make_the_table_of_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("logs");
    let (objects, expected) = two_source_corpus(&src, 300, 60, 5);
    let units: BTreeSet<String> = objects.iter().map(|(n, _)| s3logs::unit_of(n)).collect();
    assert!(units.len() >= 120, "{} key-days", units.len());

    let one = tmp.path().join("one");
    let out = convert(&src, &one, &["--shard", "0/1"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let dest = tmp.path().join("sharded");
    let runs: Vec<_> = (0..8)
        .map(|k| convert(&src, &dest, &["--shard", &format!("{k}/8"), "--report", "-"]).output_spawned())
        .collect();
    let mut taken = 0;
    for run in runs {
        let out = run.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        taken += r["objects_read"].as_u64().unwrap();
    }
    assert_eq!(taken, objects.len() as u64, "each object read by one shard");

    let (rows, rejects) = table(&dest);
    assert_eq!((rows.len() as u64, rejects.len() as u64), (expected.records, expected.malformed));
    assert!(table(&one) == (rows, rejects), "the shards' table is the one run's, row for row");
    assert_state_consistent(&dest, &objects);
    assert_state_consistent(&one, &objects);
    let status = bin().args(["status", dest.to_str().unwrap(), "--json"]).output().unwrap();
    let s: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!((s["objects"].as_u64(), s["units"].as_u64()), (Some(objects.len() as u64), Some(units.len() as u64)));
}

trait SpawnOutput {
    fn output_spawned(&mut self) -> std::process::Child;
}

impl SpawnOutput for Command {
    /// Spawns with stdout and stderr captured, for `wait_with_output`.
    fn output_spawned(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
    }
}

/// Acceptance 2: the same shard launched twice at once converts its units once, and a third run
/// of it makes no write request at all.
#[test]
fn the_same_shard_twice_converts_once_and_a_third_run_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("logs");
    let (objects, _) = two_source_corpus(&src, 80, 20, 6);
    let dest = tmp.path().join("table");
    let shard = ["--shard", "3/4", "--lease-wait", "120", "--report", "-"];
    let twice: Vec<_> = (0..2).map(|_| convert(&src, &dest, &shard).output_spawned()).collect();
    let mut read = 0;
    for run in twice {
        let out = run.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        read += serde_json::from_slice::<Value>(&out.stdout).unwrap()["objects_read"].as_u64().unwrap();
    }
    let mine: Vec<(String, Vec<u8>)> = objects.iter().filter(|(n, _)| shard_of(n) == 3).cloned().collect();
    assert!(!mine.is_empty());
    assert_eq!(read, mine.len() as u64, "each object of the shard read once over both runs");
    let mut ids = common::line_ids(&dest.join("data"));
    ids.extend(common::line_ids(&dest.join("rejects")));
    ids.sort();
    assert_eq!(ids, common::expected_ids(&mine), "no line missing or repeated");

    let out = convert(&src, &dest, &shard).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["nothing_new"], true, "{r}");
    assert_eq!(r["dest_requests"]["writes"], 0, "{r}");
    assert!(r["dest_requests"]["gets"].as_u64() > Some(0), "the counts count: {r}");
}

/// The shard of 4 that takes the unit of object `name`.
fn shard_of(name: &str) -> u64 {
    s3logs::shard_of(&s3logs::unit_of(name), 4)
}

/// Acceptance 4: an 8-shard backfill killed halfway, resumed with 3 shards, late objects added to
/// old days and to days inside the lookback, and finished by one process: every object converted
/// exactly once.
#[test]
fn changing_the_number_of_shards_between_runs_converts_everything_once() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("logs");
    let (mut objects, _) = two_source_corpus(&src, 160, 40, 7);
    let dest = tmp.path().join("table");
    let mut rng = common::Rng(17);
    // Eight shards, each killed (SIGKILL) after a seeded moment.
    let runs: Vec<_> = (0..8)
        .map(|k| convert(&src, &dest, &["--shard", &format!("{k}/8"), "--batch-size", "16KiB"]).output_spawned())
        .collect();
    for mut run in runs {
        std::thread::sleep(std::time::Duration::from_millis(50 + rng.below(300)));
        let _ = run.kill();
        run.wait().unwrap();
    }
    // Three shards, to the end.
    let runs: Vec<_> = (0..3)
        .map(|k| convert(&src, &dest, &["--shard", &format!("{k}/3"), "--lease-wait", "120"]).output_spawned())
        .collect();
    for run in runs {
        let out = run.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // Late deliveries: into the first day's folders (an old day) and the last day's (inside the
    // lookback of an hourly job), simple and partitioned.
    let first = &objects[0].0.clone();
    let last = &objects[objects.len() - 1].0.clone();
    for (i, like) in [first, last, &objects[1].0.clone(), &objects[objects.len() - 2].0.clone()].into_iter().enumerate()
    {
        let path = Path::new(like);
        let name = path.file_name().unwrap().to_string_lossy();
        let late = path.with_file_name(format!("{}-23-59-5{i}-LATE00000000000{i}", &name[..10]));
        let body = objects[i].1.clone();
        std::fs::write(&late, &body).unwrap();
        objects.push((std::fs::canonicalize(&late).unwrap().display().to_string(), body));
    }
    let out = convert(&src, &dest, &["--shard", "0/1", "--report", "-"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["objects_read"], 4, "only the late objects: {r}");
    let mut ids = common::line_ids(&dest.join("data"));
    ids.extend(common::line_ids(&dest.join("rejects")));
    ids.sort();
    assert_eq!(ids, common::expected_ids(&objects), "every line once");
    assert_state_consistent(&dest, &objects);
}

/// Acceptance 6: with 1,826 units of 500 recorded objects each in DEST (five years of one
/// source), a `--since` run over 4 days reads the state of at most 5 units: its bytes read are
/// bounded by the few units listed, not by the history.
#[test]
fn a_run_reads_the_state_of_the_units_it_lists_only() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("logs");
    let dest = tmp.path().join("table");
    std::fs::create_dir_all(&src).unwrap();
    let src_name = std::fs::canonicalize(&src).unwrap().display().to_string();
    // The history: a checkpoint of 500 objects in each of 1,826 units of this source.
    let first_day = s3logs::parser::parse_day("2020-01-01").unwrap();
    let mut one_checkpoint = 0;
    for d in 0..1826 {
        let day = s3logs_testkit::corpus::format_day(first_day + d);
        let unit = s3logs::unit_of(&format!("{src_name}/{day}-00-00-00-X"));
        let dir = dest.join("_state/units").join(&unit).join("checkpoints");
        std::fs::create_dir_all(&dir).unwrap();
        let mut text =
            String::from(r#"{"seq":1,"written_at":"2025-01-01T00:00:00.000Z","last_commit":null,"objects":["#);
        for i in 0..500 {
            let sep = if i == 0 { "\n" } else { ",\n" };
            text.push_str(&format!(
                r#"{sep}{{"name":"{src_name}/{day}-{:02}-{:02}-00-HIST{i:012}","size":1000,"lines":2,"rows":2,"rejects":0,"commit":1}}"#,
                i / 60 % 24,
                i % 60
            ));
        }
        text.push_str("\n]}\n");
        one_checkpoint = text.len();
        std::fs::write(dir.join(format!("{:020}.json", 1)), text).unwrap();
    }
    // New objects in the last 4 days.
    let sample =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/logs/2024-03-15-00-10-11-4C3B2A1908F7E6D5"))
            .unwrap();
    let last = first_day + 1825;
    for d in last - 3..=last {
        let day = s3logs_testkit::corpus::format_day(d);
        std::fs::write(src.join(format!("{day}-12-00-00-NEW0000000000000")), &sample).unwrap();
    }
    let since = s3logs_testkit::corpus::format_day(last - 3);
    let until = s3logs_testkit::corpus::format_day(last);
    let out = convert(&src, &dest, &["--since", &since, "--until", &until, "--report", "-", "--key-date-slack", "off"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["objects_read"], 4, "{r}");
    let read = r["dest_requests"]["get_bytes"].as_u64().unwrap();
    assert!(read <= 5 * one_checkpoint as u64, "{read} bytes of state read, {one_checkpoint} a unit: {r}");
    assert!(read >= 4 * one_checkpoint as u64, "the 4 units listed are read: {read}");
    let lists = r["dest_requests"]["lists"].as_u64().unwrap();
    assert!(lists < 100, "{lists} listings of DEST for 4 units");
}

/// A DEST written before per-unit state (its ledger in `_state/commits`, `_state/checkpoints`):
/// runs read it when deciding what is new, so nothing is converted twice across the change;
/// `s3logs state migrate` moves its objects into their units' ledgers and removes it.
#[test]
fn a_legacy_dest_keeps_working_and_migrates() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dest) = (tmp.path().join("logs"), tmp.path().join("table"));
    std::fs::create_dir_all(&src).unwrap();
    let src_name = std::fs::canonicalize(&src).unwrap().display().to_string();
    // The fixture written by s3logs as of 2026-12-07, its object names moved to this test's folder,
    // and files of the recorded names and sizes there.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dest-2026-12-07/_state");
    let mut recorded: Vec<(String, u64)> = Vec::new();
    for f in common::walkdir_files(&fixture) {
        let text = std::fs::read_to_string(&f).unwrap().replace("/tmp/fx/c/logs", &src_name);
        let to = dest.join("_state").join(f.strip_prefix(&fixture).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(&to, &text).unwrap();
        if f.parent().unwrap().ends_with("checkpoints") {
            for line in text.lines().filter(|l| l.starts_with("{\"name\"")) {
                let o: Value = serde_json::from_str(line.trim_end_matches(',')).unwrap();
                recorded.push((o["name"].as_str().unwrap().to_string(), o["size"].as_u64().unwrap()));
            }
        }
    }
    assert_eq!(recorded.len(), 20);
    for (name, size) in &recorded {
        std::fs::write(name, vec![b'\n'; *size as usize]).unwrap();
    }
    let (new, _) = two_source_corpus(&tmp.path().join("gen"), 1, 1, 8);
    let new_path = src.join(Path::new(&new[0].0).file_name().unwrap());
    std::fs::write(&new_path, &new[0].1).unwrap();

    let out = convert(&src, &dest, &["--report", "-"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("state migrate"), "the legacy ledger is pointed out: {}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((r["objects_read"].as_u64(), r["objects_skipped"].as_u64()), (Some(1), Some(20)), "{r}");
    let status = |dest: &Path| -> Value {
        let out = bin().args(["status", dest.to_str().unwrap(), "--json"]).output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let s = status(&dest);
    assert_eq!((s["objects"].as_u64(), s["legacy_objects"].as_u64()), (Some(21), Some(20)), "{s}");

    let out = bin().args(["state", "migrate", dest.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("20 objects moved"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for gone in ["commits", "checkpoints", "published"] {
        assert!(common::walkdir_files(&dest.join("_state").join(gone)).is_empty(), "{gone} left");
    }
    let s = status(&dest);
    assert_eq!((s["objects"].as_u64(), s["legacy_objects"].as_u64()), (Some(21), Some(0)), "{s}");
    let new_lines = new[0].1.iter().filter(|&&b| b == b'\n').count() as u64;
    assert_eq!(s["lines"].as_u64(), Some(395 + new_lines), "the legacy objects' counts came along: {s}");

    // After the migration: still nothing converted twice, and nothing left to migrate.
    let out = convert(&src, &dest, &["--report", "-"]).output().unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((r["nothing_new"].as_bool(), r["objects_skipped"].as_u64()), (Some(true), Some(21)), "{r}");
    let state = common::walkdir_files(&dest.join("_state"));
    let out = bin().args(["state", "migrate", dest.to_str().unwrap()]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(": 0 objects moved"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(common::walkdir_files(&dest.join("_state")), state, "nothing to migrate writes nothing");
    // A DEST that does not exist is one clear error, and is not made.
    let missing = tmp.path().join("no-such-dest");
    let out = bin().args(["state", "migrate", missing.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(74), "{}", stderr(&out));
    assert!(stderr(&out).contains("no such folder") && !missing.exists(), "{}", stderr(&out));
}

/// `s3logs plan` lists a source's units with their objects and bytes, and the shard of each;
/// `--units-file` with its JSON converts exactly those units.
#[test]
fn plan_lists_units_and_a_units_file_converts_exactly_them() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("logs");
    let (objects, _) = two_source_corpus(&src, 24, 6, 9);
    let out = bin().args(["plan", src.to_str().unwrap(), "--json", "--shards", "3"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut want: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (name, body) in &objects {
        let e = want.entry(s3logs::unit_of(name)).or_default();
        (e.0, e.1) = (e.0 + 1, e.1 + body.len() as u64);
    }
    let got: BTreeMap<String, (u64, u64)> = plan
        .iter()
        .map(|u| {
            (u["unit"].as_str().unwrap().to_string(), (u["objects"].as_u64().unwrap(), u["bytes"].as_u64().unwrap()))
        })
        .collect();
    assert_eq!(got, want);
    assert!(plan.iter().all(|u| u["shard"].as_u64() < Some(3) && u["day"].is_string() && u["prefix"].is_string()));
    let text = bin().args(["plan", src.to_str().unwrap()]).output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains(&format!(
        "# {} units, {} objects",
        want.len(),
        objects.len()
    )));

    // Two units of the plan, as a Distributed Map item or a size-balanced list would give them.
    let picked: Vec<Value> = plan.iter().step_by(3).take(2).cloned().collect();
    let file = tmp.path().join("units.json");
    std::fs::write(&file, serde_json::to_vec(&picked).unwrap()).unwrap();
    let dest = tmp.path().join("table");
    let out = convert(&src, &dest, &["--units-file", file.to_str().unwrap(), "--report", "-"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let units: BTreeSet<&str> = picked.iter().map(|u| u["unit"].as_str().unwrap()).collect();
    let mine: Vec<(String, Vec<u8>)> =
        objects.iter().filter(|(n, _)| units.contains(s3logs::unit_of(n).as_str())).cloned().collect();
    let mut ids = common::line_ids(&dest.join("data"));
    ids.extend(common::line_ids(&dest.join("rejects")));
    ids.sort();
    assert_eq!(ids, common::expected_ids(&mine));
    // One unit by name: nothing new in it now.
    let one = picked[0]["unit"].as_str().unwrap();
    let out = convert(&src, &dest, &["--unit", one, "--report", "-"]).output().unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["nothing_new"], true, "{r}");
    // Flags a scheduler gets wrong are refused before any work.
    for bad in [&["--shard", "8/8"][..], &["--shard-from-env"][..], &["--shards", "4"][..]] {
        let out = convert(&src, &tmp.path().join("never"), bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
    }
}

/// Runs `cmd(k)` for shards `0..n` at once, each again (without the crash point) until it exits
/// 0; returns how many runs crashed or were refused before that.
/// How many of `shards` shards have at least `nth` units among `objects` (canonical paths or
/// URLs): those reach their `nth` batch (a batch never spans units), so a crash point set there
/// stops them.
pub fn shards_reaching(objects: &[String], shards: u64, nth: usize) -> usize {
    let mut units: std::collections::BTreeMap<u64, std::collections::BTreeSet<String>> = Default::default();
    for o in objects {
        let unit = s3logs::unit_of(o);
        units.entry(s3logs::shard_of(&unit, shards)).or_default().insert(unit);
    }
    units.values().filter(|u| u.len() >= nth).count()
}

pub fn shards_until_done(n: u64, cmd: impl Fn(u64) -> Command + Sync) -> usize {
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..n)
            .map(|k| {
                let cmd = &cmd;
                s.spawn(move || {
                    // Each attempt before the one that exits 0 failed.
                    for attempt in 0.. {
                        let mut c = cmd(k);
                        if attempt > 0 {
                            c.env_remove("S3LOGS_CRASH_AT");
                        }
                        let out = c.output().unwrap();
                        if out.status.success() {
                            return attempt;
                        }
                        // A crash (no code), or 73 while another shard's crashed lease expires.
                        assert!(matches!(out.status.code(), None | Some(73)), "shard {k}: {}", stderr(&out));
                        assert!(attempt < 20, "shard {k} never finished: {}", stderr(&out));
                    }
                    unreachable!()
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).sum()
    })
}

/// Acceptance 3: 8 shards at once, each aborted at every step of the commit protocol (`staged`,
/// `committed`, `publishing`, `published`) in its 1st and its 3rd batch, then killed at seeded
/// random moments, and restarted until they exit 0: the table is the one a single run makes.
#[test]
fn eight_shards_crashed_at_every_step_and_killed_at_random_make_the_table_of_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let all = tmp.path().join("all");
    let (objects, _) = two_source_corpus(&all, 270, 30, 10);
    let src = tmp.path().join("logs");
    let dest = tmp.path().join("table");
    let combos: Vec<(&str, &str)> =
        ["staged", "committed", "publishing", "published"].into_iter().flat_map(|p| [(p, "1"), (p, "3")]).collect();
    // Each round brings a ninth of the objects (in their folders), then crashes every shard.
    let per_round = objects.len() / (combos.len() + 1);
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
    let shard = |k: u64| {
        let mut c = convert(&src, &dest, &["--shard", &format!("{k}/8"), "--batch-size", "4KiB", "--lease-ttl", "2"]);
        c.args(["--lease-wait", "5"]);
        c
    };
    // Which shards reach the crash point depends on where the units hash (their ids hold the
    // temporary folder's path): each round expects exactly the shards with enough units in it.
    let (mut crashed, mut expected) = (0, 0);
    for (round, (point, n)) in combos.iter().enumerate() {
        let written = bring(round * per_round, (round + 1) * per_round);
        let want = shards_reaching(&written, 8, n.parse().unwrap());
        let got = shards_until_done(8, |k| {
            let mut c = shard(k);
            c.env("S3LOGS_CRASH_AT", format!("{point}:{n}"));
            c
        });
        assert!(got >= want, "{point}:{n}: {got} runs failed, {want} shards reach batch {n}");
        (crashed, expected) = (crashed + got, expected + want);
    }
    // Every round of a 1st-batch crash point stops at least one shard.
    assert!(expected >= 4 && crashed >= expected, "{crashed} runs failed; {expected} reached a crash point");
    // The rest, with every shard killed at seeded moments before it is let finish.
    bring(combos.len() * per_round, objects.len());
    let mut rng = common::Rng(0x5eed_0003);
    let seeds: Vec<u64> = (0..8).map(|_| rng.below(u64::MAX)).collect();
    std::thread::scope(|s| {
        for (k, seed) in seeds.iter().enumerate() {
            let shard = &shard;
            s.spawn(move || {
                let mut rng = common::Rng(*seed);
                common::run_with_kills(|| shard(k as u64), 3, std::time::Duration::from_millis(400), &mut rng, || {});
            });
        }
    });
    let renamed: Vec<(String, Vec<u8>)> = objects
        .iter()
        .map(|(n, b)| {
            let rel = Path::new(n).strip_prefix(std::fs::canonicalize(&all).unwrap()).unwrap().to_path_buf();
            (std::fs::canonicalize(src.join(rel)).unwrap().display().to_string(), b.clone())
        })
        .collect();
    let one = tmp.path().join("one");
    let out = convert(&src, &one, &[]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(table(&dest) == table(&one), "the crashed shards' table is the one run's, row for row");
    let (rows, rejects) = table(&dest);
    let mut ids: Vec<(String, i64)> = rows
        .iter()
        .chain(&rejects)
        .map(|r| (r["source_object"].as_str().unwrap().to_string(), r["source_line"].as_i64().unwrap()))
        .collect();
    ids.sort();
    assert_eq!(ids, common::expected_ids(&renamed));
    assert_state_consistent(&dest, &renamed);
}

/// The scheduler manifests in `deploy/` parse, use only flags `convert` has, and map exit codes
/// as the README says: 73 and 75 retried, 65 and 74 failing at once.
#[test]
fn deploy_manifests_use_real_flags_and_map_exit_codes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let help = String::from_utf8(bin().args(["convert", "--help"]).output().unwrap().stdout).unwrap();
    let flags_of = |text: &str| -> BTreeSet<String> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(str::to_string)
            .collect()
    };
    let known = flags_of(&help);
    for file in [
        "kubernetes/indexed-job.yaml",
        "aws-batch/job-definition.json",
        "aws-batch/submit-backfill.sh",
        "step-functions/backfill.asl.json",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let used = flags_of(&text);
        assert!(used.contains("--log-format"), "{file}");
        let unknown: Vec<&String> = used
            .iter()
            .filter(|f| {
                !known.contains(*f)
                    && !f.starts_with("--job")
                    && !["--array-properties", "--container-overrides", "--cli-input-json"].contains(&f.as_str())
            })
            .collect();
        assert!(unknown.is_empty(), "{file} uses flags convert does not have: {unknown:?}");
    }

    let batch: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("aws-batch/job-definition.json")).unwrap()).unwrap();
    let rules = batch["retryStrategy"]["evaluateOnExit"].as_array().unwrap();
    assert!(rules.len() <= 5, "AWS Batch takes at most 5 evaluateOnExit rules");
    let action = |code: &str| -> &str {
        let hit = rules.iter().find(|r| {
            r.get("onExitCode")
                .and_then(Value::as_str)
                .is_some_and(|p| p == code || p.strip_suffix('*').is_some_and(|s| code.starts_with(s)))
                || r.get("onReason").is_some_and(|p| p == "*")
        });
        hit.and_then(|r| r["action"].as_str()).unwrap_or("EXIT")
    };
    for (code, want) in
        [("73", "RETRY"), ("75", "RETRY"), ("143", "RETRY"), ("65", "EXIT"), ("74", "EXIT"), ("66", "EXIT")]
    {
        assert_eq!(action(code), want, "exit {code}");
    }
    let env = batch["containerProperties"]["environment"].as_array().unwrap();
    assert!(env.iter().any(|e| e["name"] == "S3LOGS_SHARDS"));

    let k8s = std::fs::read_to_string(root.join("kubernetes/indexed-job.yaml")).unwrap();
    let rule = |action: &str| -> String {
        let at =
            k8s.find(&format!("action: {action}\n        onExitCodes")).unwrap_or_else(|| panic!("no {action} rule"));
        k8s[at..].lines().find(|l| l.trim_start().starts_with("values:")).unwrap().to_string()
    };
    for code in ["65", "74", "66", "2"] {
        assert!(rule("FailIndex").contains(code), "FailIndex misses {code}");
    }
    for code in ["73", "75", "76", "143"] {
        assert!(rule("Count").contains(code), "Count (retry) misses {code}");
    }
    assert!(k8s.contains("completionMode: Indexed") && k8s.contains("--shard-from-env"));
    let completions = k8s.lines().find_map(|l| l.trim().strip_prefix("completions: ")).unwrap();
    assert!(k8s.contains(&format!("value: \"{completions}\"")), "S3LOGS_SHARDS is the number of completions");

    let sfn: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("step-functions/backfill.asl.json")).unwrap()).unwrap();
    let map = &sfn["States"]["Units"];
    assert_eq!(map["ItemProcessor"]["ProcessorConfig"]["Mode"], "DISTRIBUTED");
    assert_eq!(map["ItemSelector"]["unit.$"], "$$.Map.Item.Value.unit", "the items are `plan --json`'s units");
    let task = &map["ItemProcessor"]["States"]["Convert unit"];
    assert_eq!(task["Resource"], "arn:aws:states:::batch:submitJob.sync");
    assert!(task["Parameters"]["ContainerOverrides"]["Command.$"].as_str().unwrap().contains("'--unit', $.unit"));
}
