//! The `s3logs` binary: everything is in the library; this only picks the allocator and exits
//! with the code the CLI decided.

/// glibc's allocator spent a fifth of the time on many small objects (freeing builders and
/// pages across threads); mimalloc does not. Its v2 line held about 50 MiB less than v3 at the
/// same speed. It is built without its request for transparent huge pages (`no_thp`): where the
/// kernel's memory was fragmented (as after a DuckDB run), faulting in and zeroing 2 MiB pages
/// cost a run system time (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    s3logs::allocator::keep_freed_memory_longer();
    std::process::exit(s3logs::cli::main());
}
