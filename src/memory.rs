//! How much heap koko holds, for the memory limit of scripts.
//!
//! Rhai's own limits bound one string, one array, one map. They do not
//! bound what a script keeps alive in other ways: closures and curried
//! functions capturing big values, thousands of arrays of big strings,
//! the output of programs. When the machine runs out, Rust aborts on the
//! failed allocation, and an aborted run undoes nothing.
//!
//! So the `koko` binary counts every byte it allocates: [`Counting`] wraps
//! the system allocator and keeps the live total in one atomic (a relaxed
//! add per allocation, unmeasurable next to the allocation itself). The
//! script runner compares [`in_use`] with its budget in Rhai's progress
//! callback (called between operations) and in koko's long-running
//! functions, and stops the run with [`crate::Error::Limit`] before the
//! machine's limit is near: the run then unwinds and undoes its work like
//! any failed run.
//!
//! The allocator is installed by the binary (`src/main.rs`), not by the
//! library: in programs that link the library without it (unit tests),
//! [`in_use`] stays 0 and the limit never trips.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};

static IN_USE: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting live bytes.
pub struct Counting;

// SAFETY: every method forwards to `System` unchanged; the count is a side
// effect that allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            IN_USE.fetch_add(new_size, Ordering::Relaxed);
            IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

/// Heap bytes live now (0 if the binary does not count).
pub fn in_use() -> usize {
    IN_USE.load(Ordering::Relaxed)
}

/// The default budget of `koko run --max-memory`.
pub const DEFAULT_BUDGET: usize = 512 << 20;

/// The budget of the current run (0: none). Set by the runner.
static BUDGET: AtomicUsize = AtomicUsize::new(0);

/// Set the heap budget checked by [`check`] (0: none).
pub fn set_budget(bytes: usize) {
    BUDGET.store(bytes, Ordering::SeqCst);
}

/// `Err(Error::Limit)` if the heap is over the budget.
pub fn check() -> Result<()> {
    let budget = BUDGET.load(Ordering::Relaxed);
    if budget != 0 && in_use() > budget {
        return Err(Error::Limit {
            limit: "memory",
            what: "the script holds too much memory".into(),
            cause: format!("it holds more than {} (--max-memory)", human(budget)),
        });
    }
    Ok(())
}

/// Bytes in words: "512 MiB", "1.5 GiB", "300 KiB".
pub fn human(bytes: usize) -> String {
    let b = bytes as f64;
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", b / f64::from(1u32 << 30))
    } else if bytes >= 1 << 20 {
        format!("{:.0} MiB", b / f64::from(1u32 << 20))
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

/// Parse a size: a number of bytes with an optional K, M or G suffix
/// (powers of 1024; "KiB", "MB" and lower case accepted).
pub fn parse_size(text: &str) -> std::result::Result<usize, String> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits_end);
    let n: usize = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size (e.g. 512M, 2G)"))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("'{text}': unknown unit '{unit}' (use K, M or G)")),
    };
    n.checked_mul(1 << shift)
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("'{text}' is not a usable size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("5T").is_err());
        assert_eq!(human(512 << 20), "512 MiB");
    }
}
