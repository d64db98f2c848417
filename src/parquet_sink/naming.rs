//! The one place Parquet files get their names: `part-<batch>-<seq>.parquet`, in their
//! partition's folder. A batch's files are written before its objects (and so its name) are all
//! known, under a provisional name, and take the batch's name once it is: both names come from
//! here, so the same batch always gives the same file names.

/// The name of file `seq` (counted per partition folder) of batch `batch`.
pub fn file_name(batch: &str, seq: u32) -> String {
    format!("part-{batch}-{seq:05}.parquet")
}

/// The path of the file at `path` (named for batch `from`) once its batch is named `to`; `None`
/// when `path` is not a file of batch `from`.
pub fn for_batch(path: &str, from: &str, to: &str) -> Option<String> {
    let (dir, name) = match path.rsplit_once('/') {
        Some((dir, name)) => (Some(dir), name),
        None => (None, path),
    };
    let seq: u32 =
        name.strip_prefix("part-")?.strip_prefix(from)?.strip_prefix('-')?.strip_suffix(".parquet")?.parse().ok()?;
    let name = file_name(to, seq);
    Some(match dir {
        Some(dir) => format!("{dir}/{name}"),
        None => name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_take_their_batch_name_and_keep_their_folder_and_number() {
        assert_eq!(file_name("0123abcd", 7), "part-0123abcd-00007.parquet");
        let provisional = format!("data/dt=2024-01-15/{}", file_name("new-42-0", 3));
        assert_eq!(
            for_batch(&provisional, "new-42-0", "0123abcd").unwrap(),
            "data/dt=2024-01-15/part-0123abcd-00003.parquet"
        );
        assert_eq!(for_batch(&file_name("new-42-0", 0), "new-42-0", "b").unwrap(), "part-b-00000.parquet");
        // Not a file of that batch: no name, rather than a half-replaced one.
        assert_eq!(for_batch("dt=2024-01-15/part-other-00001.parquet", "new-42-0", "b"), None);
        assert_eq!(for_batch("dt=2024-01-15/part-new-42-0-x.parquet", "new-42-0", "b"), None);
    }
}
