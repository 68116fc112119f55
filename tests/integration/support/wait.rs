//! Polling for a condition the kernel or a process reaches by itself (kept
//! apart so the benchmarks can share it with the traffic helpers).

use std::time::{Duration, Instant};

/// Poll `attempt` every 20 ms until it returns `Ok` (its value) or
/// `timeout` has passed (the last attempt's error).
pub fn poll<T>(
    timeout: Duration,
    mut attempt: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let start = Instant::now();
    loop {
        match attempt() {
            Ok(v) => return Ok(v),
            Err(last) if start.elapsed() >= timeout => return Err(last),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
