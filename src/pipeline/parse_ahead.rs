//! Parsing across a batch's end: when a batch has drawn its last window, the first windows of
//! local files after it (the next unit's, usually) are parsed on the run's threads while the
//! batch encodes its last windows, closes its files and commits. The commit keeps one thread
//! busy and waits on the disk, and without this the other core, or both, sat idle at each unit's
//! end. The next batch takes a parsed window if its window is the same objects (names, sizes and
//! ETags, in order), and parses its own otherwise; the work spent is at most those windows.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::mpsc::Receiver;

use crate::error::Error;
use crate::pipeline::options::ConvertOptions;
use crate::pipeline::parse::{GroupOutput, parse_window};
use crate::source::{Fetched, SourceObject};

type Identity = (String, u64, Option<String>);

fn identity(objects: &[SourceObject]) -> Vec<Identity> {
    objects.iter().map(|o| (o.name.clone(), o.size, o.etag.clone())).collect()
}

/// A window whose parse was started before its batch drew it.
struct Started {
    objects: Vec<Identity>,
    parse: Parse,
}

enum Parse {
    Running(Receiver<Result<Vec<GroupOutput>, Error>>),
    /// Its outcome: `None` when it failed (the batch parses the window itself and meets the same
    /// error).
    Done(Option<Vec<GroupOutput>>),
}

/// The windows parsed ahead of the next batch, in order (one run's).
#[derive(Default)]
pub(crate) struct ParseAhead {
    started: Mutex<VecDeque<Started>>,
}

impl ParseAhead {
    /// Starts parsing `windows` (of local files, none to be streamed) on `pool` in the
    /// background, unless they are started already. Parses started before of other windows, and
    /// not taken, are dropped.
    pub(crate) fn start(&self, windows: Vec<Vec<SourceObject>>, pool: &rayon::ThreadPool, opts: &ConvertOptions) {
        let mut started = self.started.lock().expect("not poisoned");
        let same =
            started.len() == windows.len() && started.iter().zip(&windows).all(|(s, w)| s.objects == identity(w));
        if same {
            return;
        }
        started.clear();
        for window in windows {
            let objects = identity(&window);
            let (tx, parsed) = std::sync::mpsc::channel();
            let opts = opts.clone();
            pool.spawn(move || {
                let fetched = window.iter().map(|_| Fetched::Local).collect();
                // Nobody may wait any more (the run stopped, or the next batch drew other objects).
                let _ = tx.send(parse_window(&window, fetched, &opts));
            });
            started.push_back(Started { objects, parse: Parse::Running(parsed) });
        }
    }

    /// Waits for the parses started, if any, to end. Called from outside the pool, before the
    /// next batch's window loop: a wait on a worker of the pool could run atop a parse itself (a
    /// worker waiting in a join takes other tasks, the loop among them) and never return.
    pub(crate) fn settle(&self) {
        for Started { parse, .. } in self.started.lock().expect("not poisoned").iter_mut() {
            if let Parse::Running(rx) = parse {
                *parse = Parse::Done(rx.recv().ok().and_then(Result::ok));
            }
        }
    }

    /// `window` parsed, if it is the next window parsed ahead and its parse has ended
    /// ([`settle`]). `None` when it is another window (the ones parsed ahead are dropped) or its
    /// parse failed: the caller parses it itself.
    ///
    /// [`settle`]: ParseAhead::settle
    pub(crate) fn take(&self, window: &[SourceObject]) -> Option<Vec<GroupOutput>> {
        let mut started = self.started.lock().expect("not poisoned");
        let next = started.pop_front()?;
        if next.objects != identity(window) {
            started.clear();
            return None;
        }
        match next.parse {
            Parse::Done(outs) => outs,
            Parse::Running(rx) => rx.try_recv().ok().and_then(Result::ok),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::file_object;

    const LINE: &str = "79a5 awsexamplebucket1 [06/Feb/2019:00:00:38 +0000] 192.0.2.3 79a5 3E57427F3EXAMPLE \
        REST.GET.VERSIONING - \"GET /awsexamplebucket1?versioning HTTP/1.1\" 200 - 113 - 7 - \"-\" \"S3Console/0.4\" - \
        s9lzHYrFp76ZVxRcpX9+5cjAnEH2ROuNkd2BHfIa6UkFVdtjf5mKR3/eTPFvsiP/XV/VLi31234= SigV4 \
        ECDHE-RSA-AES128-GCM-SHA256 AuthHeader awsexamplebucket1.s3.us-west-1.amazonaws.com TLSV1.2\n";

    /// Files of `lines` log lines each, as listed objects.
    fn objects(dir: &std::path::Path, lines: &[usize]) -> Vec<SourceObject> {
        let day = dir.join("111122223333/us-east-1/app/2019/02/06");
        std::fs::create_dir_all(&day).unwrap();
        lines
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let path = day.join(format!("2019-02-06-00-00-{i:02}-0123456789ABCDEF"));
                std::fs::write(&path, LINE.repeat(n)).unwrap();
                file_object(path, (LINE.len() * n) as u64)
            })
            .collect()
    }

    /// A pool of `threads` and nothing parsed ahead yet.
    fn pool(threads: usize) -> (rayon::ThreadPool, ParseAhead) {
        (rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap(), ParseAhead::default())
    }

    fn rows(parsed: &[GroupOutput]) -> u64 {
        parsed.iter().flat_map(|g| g.objects.iter().flat_map(|o| &o.chunks).chain([&g.batches])).map(|c| c.rows).sum()
    }

    /// Started from the pool's only worker, as the window loop does, and settled from outside:
    /// the windows are taken in order, each with all its rows.
    #[test]
    fn windows_parsed_ahead_are_taken_in_order_with_one_thread() {
        let tmp = tempfile::tempdir().unwrap();
        let o = objects(tmp.path(), &[3, 5, 7]);
        let (pool, ahead) = pool(1);
        let windows = vec![o[..2].to_vec(), o[2..].to_vec()];
        pool.install(|| ahead.start(windows.clone(), &pool, &ConvertOptions::default()));
        ahead.settle();
        assert_eq!(ahead.take(&o[..2]).map(|p| rows(&p)), Some(8));
        assert_eq!(ahead.take(&o[2..]).map(|p| rows(&p)), Some(7));
        assert!(ahead.take(&o[2..]).is_none());
    }

    /// A window other than the next one parsed ahead is not taken, and the ones after it are
    /// dropped; so is a window whose file changed size since it was parsed.
    #[test]
    fn another_window_is_not_taken_and_drops_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let o = objects(tmp.path(), &[3, 5, 7]);
        let (pool, ahead) = pool(2);
        ahead.start(vec![o[..1].to_vec(), o[1..].to_vec()], &pool, &ConvertOptions::default());
        ahead.settle();
        assert!(ahead.take(&o[1..]).is_none());
        assert!(ahead.take(&o[1..]).is_none());

        ahead.start(vec![o[..1].to_vec()], &pool, &ConvertOptions::default());
        ahead.settle();
        let mut grown = o[0].clone();
        grown.size += 1;
        assert!(ahead.take(&[grown]).is_none());
    }

    /// A window whose parse failed (its file is gone) is left to the batch, which meets the error
    /// itself.
    #[test]
    fn a_failed_parse_is_not_taken() {
        let tmp = tempfile::tempdir().unwrap();
        let o = objects(tmp.path(), &[3]);
        std::fs::remove_file(&o[0].name).unwrap();
        let (pool, ahead) = pool(2);
        ahead.start(vec![o.clone()], &pool, &ConvertOptions::default());
        ahead.settle();
        assert!(ahead.take(&o).is_none());
    }
}
