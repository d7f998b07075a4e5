//! The `graft` command: parses arguments (see `cli`), calls the library, prints errors once with
//! their context chain.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// Large freed blocks are kept for reuse (see `graft::alloc`); `GRAFT_BLOCK_CACHE_MB` sets how
/// many megabytes it may hold (default 2048, 0 turns it off).
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOC: graft::alloc::BlockCache = graft::alloc::BlockCache::new();

fn main() -> ExitCode {
    tune_allocator();
    #[cfg(target_os = "linux")]
    if let Some(mb) = std::env::var("GRAFT_BLOCK_CACHE_MB").ok().and_then(|v| v.parse::<usize>().ok()) {
        ALLOC.set_limit(mb << 20);
    }
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}

/// Training allocates large per-batch buffers (LSTM states and gradients, the tail's
/// activations); glibc would mmap and unmap each of them every batch, or give its heap back to the
/// kernel whenever the top of it is free, and pay the page faults again (10% of LSTM training
/// time, a fifth of the fine-tuning tail's). Keep buffers up to 32 MB in the heap, never trim it;
/// larger ones go through the block cache.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    // SAFETY: mallopt only changes allocator parameters; called before any other thread exists.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, -1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}
