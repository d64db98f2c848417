//! How the binaries tune the allocator they pick (mimalloc): the `s3logs` binary and the S3 model
//! benchmark (`examples/s3_model.rs`) share it, so both convert under the same settings.

/// mimalloc v2's `mi_option_purge_delay` (`mimalloc.h`; the Rust bindings do not name it). The
/// `v2` feature is pinned in Cargo.toml, and a test checks the option's default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long mimalloc keeps freed memory before giving it back to the OS: 10 ms by default, less
/// than a window takes, so each window's builders and pages were faulted in anew. On a virtual
/// machine whose host reclaims freed memory (as after a DuckDB run), every such page costs, and
/// 100 ms faults in far fewer (docs/performance.md).
/// `MIMALLOC_PURGE_DELAY` still decides where it is set.
const PURGE_DELAY_MS: std::ffi::c_long = 100;

/// Sets mimalloc's purge delay to [`PURGE_DELAY_MS`] unless `MIMALLOC_PURGE_DELAY` is set. Call
/// it first thing in `main`, before any other thread runs.
pub fn keep_freed_memory_longer() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: stores one option value, which mimalloc reads when it next purges; no memory
        // is touched, and no other thread is running yet.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

#[cfg(test)]
mod tests {
    use super::MI_OPTION_PURGE_DELAY;

    /// The option number is purge_delay's: its default is 10 ms in the v2 line, and its
    /// neighbours' are those of `eager_commit_delay` (1) and `use_numa_nodes` (0).
    #[test]
    fn the_option_number_is_the_purge_delay() {
        // SAFETY: reads option values.
        let get = |o| unsafe { libmimalloc_sys::mi_option_get(o) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(get(MI_OPTION_PURGE_DELAY), 10);
        }
        assert_eq!((get(MI_OPTION_PURGE_DELAY - 1), get(MI_OPTION_PURGE_DELAY + 1)), (1, 0));
    }
}
