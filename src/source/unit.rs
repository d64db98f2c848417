//! Units of work: one log source's key-day. Every object belongs to exactly one unit, found from
//! its name alone, so any run (any shard, any `N`) puts it in the same one; each unit has its own
//! ledger, lease and staging in DEST, and a run reads the state of the units it lists only.
//!
//! A unit id is the day and a short stable hash of the source prefix: `2024-01-15-3f9a0c1e`.
//! The prefix is the object's folder for simple keys (`s3://logs/app/2024-01-15-...` has
//! `s3://logs/app`), and the folder above `YYYY/MM/DD` for partitioned keys
//! (`.../123456789012/us-east-1/app/2024/01/15/...`: one unit per source bucket and day). Objects
//! with no date in their file name (and standard input) make up the one `undated` unit.

use sha2::{Digest, Sha256};

use crate::source::key_day;

/// The unit of objects whose names carry no date.
pub const UNDATED: &str = "undated";

/// The unit of the object named `name` (an `s3://` URL or a local path).
pub fn unit_of(name: &str) -> String {
    match dated(name) {
        Some((prefix, day)) => format!("{}-{}", crate::access_log::time::format_day(day), hash(prefix)),
        None => UNDATED.to_string(),
    }
}

/// The source prefix of a dated name (the folder of its objects, above `YYYY/MM/DD` for
/// partitioned keys).
pub fn prefix_of(name: &str) -> Option<&str> {
    dated(name).map(|(prefix, _)| prefix)
}

/// The source prefix and day of a dated name.
fn dated(name: &str) -> Option<(&str, i32)> {
    let (folder, _) = name.rsplit_once('/')?;
    // Partitioned keys: the folder ends with `/YYYY/MM/DD`, the event (or delivery) day.
    if let Some(at) = folder.len().checked_sub(11)
        && let Some(tail) = folder.get(at..)
    {
        let b = tail.as_bytes();
        let shape = b[0] == b'/'
            && b[5] == b'/'
            && b[8] == b'/'
            && [1, 2, 3, 4, 6, 7, 9, 10].iter().all(|&i| b[i].is_ascii_digit());
        if shape && let Some(day) = crate::access_log::time::parse_day(&tail[1..].replace('/', "-")) {
            return Some((&folder[..at], day));
        }
    }
    Some((folder, key_day(name)?))
}

/// The unit of every object under the key range `range` of a dated listing (`<prefix>YYYY-MM-DD`
/// or `.../YYYY/MM/DD/`, with `url` the bucket's `s3://bucket/`), when the range tells.
pub fn unit_of_range(url: &str, range: &str) -> Option<String> {
    let probe = if range.ends_with('/') { format!("{url}{range}x") } else { format!("{url}{range}-00-00-00-x") };
    let unit = unit_of(&probe);
    (unit != UNDATED).then_some(unit)
}

/// The day of a unit id (`None` for `undated`).
pub fn day_of(unit: &str) -> Option<i32> {
    crate::access_log::time::parse_day(unit.get(..10)?)
}

/// Eight hex digits of the SHA-256 of `s`: stable across builds and machines.
fn hash(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// Which units a run converts: a shard's (`--shard K/N`) and/or a list (`--units-file`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// `(k, n)`: this run takes the units whose hash falls to shard `k` of `n`.
    pub shard: Option<(u64, u64)>,
    /// Exactly these units.
    pub units: Option<std::collections::BTreeSet<String>>,
}

impl Selection {
    /// Whether this run converts `unit`.
    pub fn takes(&self, unit: &str) -> bool {
        let in_shard = self.shard.is_none_or(|(k, n)| shard_of(unit, n) == k);
        in_shard && self.units.as_ref().is_none_or(|u| u.contains(unit))
    }

    /// Whether every unit is taken.
    pub fn is_all(&self) -> bool {
        self.shard.is_none_or(|(_, n)| n == 1) && self.units.is_none()
    }
}

/// The shard (of `n`) that converts `unit`: a hash of its id, so that deciding needs nothing but
/// the id, and every process, whatever it listed, agrees.
pub fn shard_of(unit: &str, n: u64) -> u64 {
    let d = Sha256::digest(unit.as_bytes());
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes")) % n.max(1)
}

/// Parses `K/N` (`0 <= K < N`).
pub fn parse_shard(s: &str) -> Result<(u64, u64), String> {
    let (k, n) = s.split_once('/').ok_or_else(|| format!("{s}: expected K/N, such as 0/8"))?;
    let k: u64 = k.trim().parse().map_err(|_| format!("{s}: K is not a number"))?;
    let n: u64 = n.trim().parse().map_err(|_| format!("{s}: N is not a number"))?;
    if n == 0 || k >= n {
        return Err(format!("{s}: K must be at least 0 and less than N (shards are numbered from 0)"));
    }
    Ok((k, n))
}

/// Reads the units of a units file: one id per line (blank lines and `#` comments skipped), or the
/// JSON of `s3logs plan --json` (its `unit` fields).
pub fn read_units_file(text: &str) -> Result<std::collections::BTreeSet<String>, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let items = v.get("units").unwrap_or(&v).as_array().ok_or("expected a JSON array of units")?;
        return items
            .iter()
            .map(|i| {
                let id = i.get("unit").unwrap_or(i).as_str();
                id.map(str::to_string).ok_or_else(|| format!("not a unit: {i}"))
            })
            .collect();
    }
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both key formats and local paths: the day, and a hash of the prefix (not of the file).
    #[test]
    fn units_are_a_source_prefix_and_a_day() {
        let simple = unit_of("s3://logs/app/2024-01-15-00-10-11-4C3B2A1908F7E6D5");
        assert!(simple.starts_with("2024-01-15-") && simple.len() == 19, "{simple}");
        assert_eq!(simple, unit_of("s3://logs/app/2024-01-15-23-59-59-AAAAAAAAAAAAAAAA"));
        assert_ne!(simple, unit_of("s3://logs/other/2024-01-15-23-59-59-AAAAAAAAAAAAAAAA"));
        assert_ne!(simple, unit_of("s3://logs/app/2024-01-16-00-10-11-4C3B2A1908F7E6D5"));
        let part = "s3://logs/p/123456789012/us-east-1/src/2024/01/15/2024-01-16-00-00-01-ABCDEF0123456789";
        let unit = unit_of(part);
        assert!(unit.starts_with("2024-01-15-"), "the folder's day: {unit}");
        assert_eq!(unit, unit_of("s3://logs/p/123456789012/us-east-1/src/2024/01/15/2024-01-15-10-00-00-X"));
        assert_ne!(unit, unit_of("s3://logs/p/123456789012/us-east-1/src2/2024/01/15/2024-01-15-10-00-00-X"));
        assert_eq!(unit_of("/data/logs/2024-01-15-00-10-11-X"), format!("2024-01-15-{}", hash("/data/logs")));
        for undated in ["s3://logs/app/access.log", "stdin", "/data/2024-13-01-x", "s3://b/x2024-01-15-1"] {
            assert_eq!(unit_of(undated), UNDATED, "{undated}");
        }
        assert_eq!(day_of(&simple), crate::access_log::time::parse_day("2024-01-15"));
        assert_eq!(day_of(UNDATED), None);
    }

    /// A key range of a dated listing names the unit of every object in it.
    #[test]
    fn key_ranges_name_their_unit() {
        let url = "s3://logs/";
        assert_eq!(unit_of_range(url, "app/2024-01-15"), Some(unit_of("s3://logs/app/2024-01-15-00-10-11-4C3B")));
        let range = "p/123456789012/us-east-1/src/2024/01/15/";
        assert_eq!(unit_of_range(url, range), Some(unit_of(&format!("{url}{range}2024-01-15-00-00-00-X"))));
        assert_eq!(unit_of_range(url, "app/pre2024-01-15"), None);
    }

    /// Every unit falls to exactly one shard, and the shards share the units out.
    #[test]
    fn shards_split_the_units() {
        let units: Vec<String> = (0..400).map(|d| format!("2024-01-{:02}-{:08x}", d % 28 + 1, d)).collect();
        let mut per = [0u32; 8];
        for u in &units {
            let owners: Vec<u64> =
                (0..8).filter(|&k| Selection { shard: Some((k, 8)), units: None }.takes(u)).collect();
            assert_eq!(owners.len(), 1, "{u}");
            per[owners[0] as usize] += 1;
        }
        assert!(per.iter().all(|&c| (25..=75).contains(&c)), "{per:?}");
        assert_eq!(parse_shard("3/8"), Ok((3, 8)));
        for bad in ["8/8", "1/0", "x/2", "3"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn units_files_are_lines_or_plan_json() {
        let lines = read_units_file("2024-01-15-aaaaaaaa\n# a comment\n\nundated  # trailing\n").unwrap();
        assert_eq!(lines.into_iter().collect::<Vec<_>>(), ["2024-01-15-aaaaaaaa", "undated"]);
        let json = read_units_file(r#"[{"unit":"2024-01-15-aaaaaaaa","objects":3},{"unit":"undated"}]"#).unwrap();
        assert_eq!(json.len(), 2);
        assert!(read_units_file("[1]").is_err());
    }
}
