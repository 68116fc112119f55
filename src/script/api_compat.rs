//! The compatibility grammars and the run's lifecycle in scripts:
//! `koko("-d c1,link1,10.0.1.1/24 ...")` (the one-shot grammar, the CLI's
//! own parser and executor), `koro("ipnetns client route add ...")` (the
//! koro grammar), `cleanup()`, `sleep(ms)`, `now_ms()`.
//!
//! `koko(...)` and `koro(...)` are each one short call into the layer the
//! command line uses, so both faces keep one behaviour.

use rhai::{Engine, Map};

use super::api::{fail, to_map, with_world, R};
use super::SharedWorld;
use crate::error::Error;

/// `koko(line)`: parse with the one-shot grammar, execute, return the
/// report (the same JSON `koko --json` prints) as a map.
fn koko(world: &SharedWorld, line: &str) -> R<Map> {
    let args: Vec<String> = line.split_whitespace().map(String::from).collect();
    let report = with_world(world, |session, journal| {
        crate::plan::run_oneshot(session, journal, &args)
    })?;
    Ok(to_map(&report.to_json()))
}

/// `koro(line)`: a target (docker NAME, ipnetns NAME, netns PATH, pid N,
/// host), then an `ip`-style command run natively there.
fn koro(world: &SharedWorld, line: &str) -> R<String> {
    let words: Vec<String> = line.split_whitespace().map(String::from).collect();
    let report = with_world(world, |session, journal| {
        crate::plan::run_koro(session, journal, &words)
    })?;
    Ok(report.lines().join("\n"))
}

pub fn register(engine: &mut Engine, world: &SharedWorld) {
    let w = world.clone();
    sys!(
        engine,
        "koko",
        /// the one-shot grammar, same parser as the CLI: "-n a,l1,10.0.1.1/24 -n b,l2,10.0.1.2/24"; returns the report
        move |line: &str| -> R<Map> { koko(&w, line) }
    );
    let w = world.clone();
    sys!(
        engine,
        "koro",
        /// the koro grammar: a target (docker NAME, ipnetns NAME, netns PATH, pid N, host), then an `ip`-style command
        move |line: &str| -> R<String> { koro(&w, line) }
    );
    let w = world.clone();
    sys!(
        engine,
        "cleanup",
        /// undo everything this run created, newest first
        move || -> R<()> {
            let errors = super::undo_world(&w);
            if errors.is_empty() {
                Ok(())
            } else {
                Err(fail(Error::Undo(errors)))
            }
        }
    );
    sys!(
        engine,
        "now_ms",
        /// milliseconds since the Unix epoch
        || -> i64 {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0)
        }
    );
}
