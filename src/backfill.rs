//! What backfills on many machines need besides `convert`: the flags that pick a run's share of
//! the units (`--shard K/N`, `--shard-from-env`, `--units-file`, `--unit`), `s3logs plan` (the
//! units of a source with their objects and bytes, for Step Functions' Distributed Map or a
//! size-balanced assignment), and `s3logs state migrate` (a DEST's ledger from before per-unit
//! state, moved into its units' ledgers).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::commit::destination::Destination;
use crate::commit::lease::{self, LeaseOptions};
use crate::commit::ledger::{CommitRecord, Ledger, ObjectEntry, now_rfc3339};
use crate::commit::protocol::{missing_files, recover};
use crate::error::Error;
use crate::source::KeyDates;
use crate::source::listing::{Listing, Scope};
use crate::source::unit::{Selection, parse_shard, read_units_file, shard_of, unit_of};
use crate::store::StoreOptions;

/// The array index variables of the schedulers `--shard-from-env` knows, in the order tried.
pub const INDEX_VARIABLES: [&str; 2] = ["AWS_BATCH_JOB_ARRAY_INDEX", "JOB_COMPLETION_INDEX"];

/// Which units a run converts.
#[derive(Debug, Default, clap::Args)]
pub struct ShardArgs {
    /// Convert only shard K of N (numbered from 0): the units (a source's key-day) whose id hashes
    /// to K. Shards decide only who works: two runs that take the same unit convert it once.
    #[arg(long, value_name = "K/N", value_parser = parse_shard, conflicts_with = "shard_from_env")]
    shard: Option<(u64, u64)>,
    /// Take K from AWS_BATCH_JOB_ARRAY_INDEX (AWS Batch array jobs) or JOB_COMPLETION_INDEX
    /// (Kubernetes Indexed Jobs), and N from --shards or S3LOGS_SHARDS.
    #[arg(long)]
    shard_from_env: bool,
    /// N for --shard-from-env.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    shards: Option<u64>,
    /// Convert exactly the units listed in FILE: one id per line, or `s3logs plan --json` output.
    #[arg(long, value_name = "FILE")]
    units_file: Option<std::path::PathBuf>,
    /// Convert this unit (repeatable), e.g. one item of a Step Functions Distributed Map.
    #[arg(long = "unit", value_name = "ID")]
    units: Vec<String>,
}

impl ShardArgs {
    /// The selection these flags make, reading the environment for `--shard-from-env`.
    pub fn selection(&self, env: impl Fn(&str) -> Option<String>) -> Result<Selection, Error> {
        let mut selection = Selection { shard: self.shard, units: None };
        if self.shard_from_env {
            let (var, k) = INDEX_VARIABLES.iter().find_map(|v| Some((*v, env(v)?))).ok_or_else(|| {
                Error::Usage(format!("--shard-from-env: neither {} is set", INDEX_VARIABLES.join(" nor ")))
            })?;
            let n = match self.shards {
                Some(n) => n.to_string(),
                None => env("S3LOGS_SHARDS")
                    .ok_or_else(|| Error::Usage("--shard-from-env needs --shards N or S3LOGS_SHARDS".into()))?,
            };
            let shard = parse_shard(&format!("{}/{}", k.trim(), n.trim()))
                .map_err(|e| Error::Usage(format!("--shard-from-env ({var}, shards): {e}")))?;
            selection.shard = Some(shard);
        } else if self.shards.is_some() {
            return Err(Error::Usage("--shards goes with --shard-from-env (or write --shard K/N)".into()));
        }
        let mut units: Option<std::collections::BTreeSet<String>> = None;
        if let Some(path) = &self.units_file {
            let text = std::fs::read_to_string(path).map_err(|e| Error::read(path, e))?;
            let listed =
                read_units_file(&text).map_err(|e| Error::Usage(format!("--units-file {}: {e}", path.display())))?;
            units = Some(listed);
        }
        if !self.units.is_empty() {
            units.get_or_insert_with(Default::default).extend(self.units.iter().cloned());
        }
        selection.units = units;
        Ok(selection)
    }
}

/// The key dates that hold exactly `units` when no `--since/--until` was given: from the first
/// unit's day to the last's plus the lookback (a partitioned key's folder is its event day, its
/// file name may be the next). `None` when a unit has no day.
pub fn dates_of_units(selection: &Selection, lookback_days: u32) -> Option<KeyDates> {
    let days: Option<Vec<i32>> = selection.units.as_ref()?.iter().map(|u| crate::source::unit::day_of(u)).collect();
    let days = days?;
    Some(KeyDates { first: *days.iter().min()?, last: days.iter().max()? + lookback_days as i32 })
}

/// One unit of a plan.
#[derive(Debug, Serialize)]
pub struct PlannedUnit {
    pub unit: String,
    /// Its day (`YYYY-MM-DD`), absent for `undated`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    /// Its source prefix: the folder of its objects (above `YYYY/MM/DD` for partitioned keys).
    pub prefix: String,
    pub objects: u64,
    pub bytes: u64,
    /// The shard of `--shards N` that converts it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<u64>,
}

/// The units of `sources` (in `dates`), sorted by id, with their objects and stored bytes; each
/// with its shard of `shards` when given. A source that lists nothing is an error (exit 66).
pub fn plan(
    sources: &[String],
    store: &StoreOptions,
    dates: Option<KeyDates>,
    shards: Option<u64>,
) -> Result<Vec<PlannedUnit>, Error> {
    let remote = sources.iter().any(|s| s.starts_with("s3://"));
    let rt = remote.then(crate::store::runtime).transpose()?;
    let mut store = store.clone();
    if let Some(rt) = &rt {
        crate::store::resolve_region(&mut store, rt);
    }
    let scope = Scope { dates, ..Scope::default() };
    let mut listing = Listing::start(sources, None, &store, rt.as_ref(), scope);
    let mut units: BTreeMap<String, PlannedUnit> = BTreeMap::new();
    while let Some(o) = listing.next_object()? {
        let unit = unit_of(&o.name);
        let entry = units.entry(unit.clone()).or_insert_with(|| PlannedUnit {
            day: crate::source::unit::day_of(&unit).map(crate::access_log::time::format_day),
            prefix: crate::source::unit::prefix_of(&o.name).unwrap_or_default().to_string(),
            shard: shards.map(|n| shard_of(&unit, n)),
            unit,
            objects: 0,
            bytes: 0,
        });
        entry.objects += 1;
        entry.bytes += o.size;
    }
    Ok(units.into_values().collect())
}

/// A plan as text: one unit per line (id, day, objects, bytes, shard, prefix).
pub fn render_plan(units: &[PlannedUnit]) -> String {
    let mut t = String::new();
    for u in units {
        let shard = u.shard.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
        let day = u.day.as_deref().unwrap_or("-");
        t.push_str(&format!("{}\t{day}\t{}\t{}\t{shard}\t{}\n", u.unit, u.objects, u.bytes, u.prefix));
    }
    let (objects, bytes) = units.iter().fold((0, 0), |(o, b), u| (o + u.objects, b + u.bytes));
    t.push_str(&format!("# {} units, {objects} objects, {bytes} bytes\n", units.len()));
    t
}

/// What `state migrate` did.
#[derive(Debug, Default, Serialize)]
pub struct Migrated {
    pub objects: u64,
    pub units: u64,
    /// Objects some unit's ledger already held (a migration cut short and run again).
    pub already: u64,
}

/// Moves DEST's legacy ledger into its units' ledgers: under the legacy lease (so no older s3logs
/// writes meanwhile), an interrupted legacy run is finished, each unit gets one commit record
/// holding its objects (created only if absent, under the unit's lease; objects it holds already
/// are left out, so a migration cut short is finished by running it again), and only then are
/// the legacy records removed. Nothing is converted again and no data file moves.
pub fn migrate(dest: &Destination, lease_opts: LeaseOptions) -> Result<Migrated, Error> {
    let legacy_view = dest.legacy();
    // Nothing to migrate: nothing is written, not even a lease.
    if Ledger::load(&legacy_view)?.last_seq == 0 && legacy_view.staged_batches()?.is_empty() {
        return Ok(Migrated::default());
    }
    let stop = crate::stop::StopFlag::default();
    let legacy_lease = lease::acquire(&legacy_view, lease_opts, &stop)?;
    let mut legacy = Ledger::load(&legacy_view)?;
    recover(&legacy_view, &mut legacy)?;
    for rec in legacy.unverified() {
        let missing = missing_files(&legacy_view, rec)?;
        if !missing.is_empty() {
            return Err(Error::State {
                path: format!("{}/{}", dest.display(), legacy_view.state_dir("commits")),
                cause: format!(
                    "commit {} lacks {} of its files in the table ({}); run `convert` with the s3logs that wrote \
                     it once to repair it, then migrate",
                    rec.seq,
                    missing.len(),
                    missing[0]
                ),
            });
        }
    }
    let mut by_unit: BTreeMap<String, Vec<ObjectEntry>> = BTreeMap::new();
    for o in legacy.objects.values() {
        by_unit.entry(unit_of(&o.name)).or_default().push(o.clone());
    }
    let mut done = Migrated::default();
    for (unit, mut objects) in by_unit {
        let view = dest.for_unit(&unit);
        let unit_lease = lease::acquire(&view, lease_opts, &stop)?;
        let mut ledger = Ledger::load(&view)?;
        let before = objects.len();
        objects.retain(|o| !ledger.objects.contains_key(&o.name));
        done.already += (before - objects.len()) as u64;
        if !objects.is_empty() {
            objects.sort_by(|a, b| a.name.cmp(&b.name));
            let seq = ledger.last_seq + 1;
            for o in &mut objects {
                o.commit = seq;
            }
            done.objects += objects.len() as u64;
            let rec = CommitRecord {
                seq,
                batch: format!("migrated-{seq}"),
                committed_at: now_rfc3339(),
                owner: unit_lease.owner().to_string(),
                objects,
                files: Vec::new(),
            };
            if !ledger.commit(&view, rec)? {
                return Err(Error::LeaseLost { dest: view.display() });
            }
            ledger.mark_published(&view, seq)?;
            done.units += 1;
        }
        unit_lease.release();
    }
    for dir in ["published", "commits", "checkpoints"] {
        for rel in legacy_view.list(&legacy_view.state_dir(dir), None)? {
            legacy_view.delete(&rel)?;
        }
    }
    legacy_lease.release();
    Ok(done)
}

/// How `plan`, `state` and `ddl` reach S3.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// S3-compatible endpoint [default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile's, else AWS].
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,
    /// AWS region [default: AWS_REGION, AWS_DEFAULT_REGION or the profile's].
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
    /// The AWS profile for credentials and region.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
}

impl StoreArgs {
    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            endpoint_url: self.endpoint_url.clone(),
            region: self.region.clone(),
            profile: self.profile.clone(),
            ..StoreOptions::default()
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Log sources, as `convert` takes them (files, folders, s3://bucket/prefix).
    #[arg(required = true, value_name = "SOURCE")]
    sources: Vec<String>,
    /// Only objects whose key date is on or after this day.
    #[arg(long, value_name = "YYYY-MM-DD")]
    since: Option<String>,
    /// Only objects whose key date is on or before this day, plus the lookback.
    #[arg(long, value_name = "YYYY-MM-DD")]
    until: Option<String>,
    /// Days after --until still selected.
    #[arg(long, default_value_t = 1, value_name = "DAYS")]
    lookback_days: u32,
    /// Also say which shard of N converts each unit (as `convert --shard K/N` would).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    shards: Option<u64>,
    /// Print a JSON array (one object per unit: unit, day, prefix, objects, bytes, shard).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

impl PlanArgs {
    pub fn run(&self) -> Result<String, Error> {
        let dates = KeyDates::from_flags(self.since.as_deref(), self.until.as_deref(), self.lookback_days)?;
        let units = plan(&self.sources, &self.store.options(), dates, self.shards)?;
        Ok(if self.json {
            serde_json::to_string_pretty(&units).expect("a plan serializes") + "\n"
        } else {
            render_plan(&units)
        })
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum StateCommand {
    /// Move the ledger of a DEST written before per-unit state (s3logs of 2026-12-07 and before)
    /// into its units' ledgers, so runs stop reading it whole. Stop older s3logs first.
    Migrate {
        /// The dataset root (a local path or an s3:// URL).
        #[arg(value_name = "DEST")]
        dest: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

impl StateCommand {
    pub fn run(&self) -> Result<String, Error> {
        let StateCommand::Migrate { dest, store } = self;
        let (d, _rt) = Destination::open_existing(dest, &store.options(), "no such folder (is DEST right?)")?;
        let m = migrate(&d, LeaseOptions::default())?;
        Ok(format!(
            "{dest}: {} objects moved into {} unit ledgers ({} were there already); the legacy ledger is gone\n",
            m.objects, m.units, m.already
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scheduler's index variable gives K, `--shards` or S3LOGS_SHARDS gives N.
    #[test]
    fn shards_come_from_the_scheduler_environment() {
        let args = ShardArgs { shard_from_env: true, ..ShardArgs::default() };
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let batch = env(&[("AWS_BATCH_JOB_ARRAY_INDEX", "3"), ("S3LOGS_SHARDS", "8")]);
        assert_eq!(args.selection(batch).unwrap().shard, Some((3, 8)));
        let k8s = env(&[("JOB_COMPLETION_INDEX", "0"), ("S3LOGS_SHARDS", "4")]);
        assert_eq!(args.selection(k8s).unwrap().shard, Some((0, 4)));
        let flag = ShardArgs { shard_from_env: true, shards: Some(2), ..ShardArgs::default() };
        assert_eq!(flag.selection(env(&[("JOB_COMPLETION_INDEX", "1")])).unwrap().shard, Some((1, 2)));
        for bad in [
            env(&[]),
            env(&[("JOB_COMPLETION_INDEX", "1")]),
            env(&[("JOB_COMPLETION_INDEX", "4"), ("S3LOGS_SHARDS", "4")]),
        ] {
            assert!(matches!(args.selection(bad), Err(Error::Usage(_))));
        }
    }

    #[test]
    fn listed_units_bound_the_key_dates() {
        let units = ["2024-01-15-aaaaaaaa", "2024-01-17-bbbbbbbb"].map(String::from).into_iter().collect();
        let selection = Selection { shard: None, units: Some(units) };
        let day = |d| crate::access_log::time::parse_day(d).unwrap();
        assert_eq!(dates_of_units(&selection, 1), Some(KeyDates { first: day("2024-01-15"), last: day("2024-01-18") }));
        let undated = Selection { shard: None, units: Some(["undated".to_string()].into_iter().collect()) };
        assert_eq!(dates_of_units(&undated, 1), None);
    }
}
