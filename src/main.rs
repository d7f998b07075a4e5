//! The `graft` command: parses arguments (see `cli`), calls the library, prints errors once with
//! their context chain.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tune_allocator();
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
/// time, a fifth of the fine-tuning tail's). Keep buffers up to 32 MB in the heap and never trim
/// it: freed memory stays mapped for the next step.
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
