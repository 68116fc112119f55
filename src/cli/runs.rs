//! `koko runs [--json]` and `koko undo RUN... | --dead [--json]`: the runs
//! whose journal is on disk (see [`crate::runs`]) and undoing the ones whose
//! process died.

use serde_json::json;

use super::Output;
use crate::error::{Error, Result};
use crate::journal::{self, UndoReport};
use crate::net::Session;
use crate::{ns, runs};

pub const RUNS_USAGE: &str = "usage: koko runs [--json]";
pub const UNDO_USAGE: &str = "usage: koko undo RUN... [--json] | koko undo --dead [--json]";

/// `koko runs`: one line per journal on disk.
pub fn runs_main(args: &[String]) -> i32 {
    let json = args.iter().any(|a| a == "--json");
    let extra = args.iter().find(|a| *a != "--json");
    let outcome = match extra {
        Some(w) => Err(Error::Invalid(format!(
            "koko runs: unexpected word '{w}'\n{RUNS_USAGE}"
        ))),
        None => list(),
    };
    super::finish(outcome, json)
}

fn list() -> Result<Output> {
    let mut lines = Vec::new();
    let mut values = Vec::new();
    for id in runs::ids()? {
        let run = match journal::read_run(&id) {
            Ok(r) => r,
            // Gone meanwhile (the run ended): not a run any more.
            Err(Error::NotFound { .. }) => continue,
            Err(e) => {
                lines.push(format!("{id}: {e}"));
                continue;
            }
        };
        let h = &run.header;
        let alive = h.alive();
        let state = if alive { "alive" } else { "dead" };
        let command = h.command.join(" ");
        lines.push(format!(
            "{:<22} {:>7}  {:<5}  {:<7}  {}  {:>5}  {}",
            h.id,
            h.pid,
            state,
            h.kind.as_str(),
            utc(h.started),
            run.steps.len(),
            command
        ));
        values.push(json!({
            "id": h.id,
            "pid": h.pid,
            "alive": alive,
            "kind": h.kind,
            "started": h.started,
            "command": h.command,
            "steps": run.steps.len(),
            "intents": run.intents.len(),
        }));
    }
    if !lines.is_empty() {
        lines.insert(
            0,
            format!(
                "{:<22} {:>7}  {:<5}  {:<7}  {:<20} {:>5}  COMMAND",
                "RUN", "PID", "STATE", "KIND", "STARTED (UTC)", "STEPS"
            ),
        );
    }
    Ok(Output {
        lines,
        json: json!({"ok": true, "runs": values}),
    })
}

/// `koko undo`: exit 0 when everything is undone, 1 when something could
/// not be (or a run is alive), 2 for bad usage or an unknown run.
pub fn undo_main(args: &[String]) -> i32 {
    let json = args.iter().any(|a| a == "--json");
    let dead = args.iter().any(|a| a == "--dead");
    let ids: Vec<&String> = args
        .iter()
        .filter(|a| *a != "--json" && *a != "--dead")
        .collect();
    let usage =
        |msg: String| super::finish(Err(Error::Invalid(format!("{msg}\n{UNDO_USAGE}"))), json);
    if let Some(flag) = ids.iter().find(|a| a.starts_with('-')) {
        return usage(format!("koko undo: unknown option '{flag}'"));
    }
    if dead != ids.is_empty() {
        return usage("koko undo: name the runs to undo, or --dead (not both)".into());
    }
    for id in &ids {
        if !runs::valid_id(id) || !runs::exists(&runs::path_of(id)) {
            return usage(format!(
                "koko undo: there is no run '{id}' (`koko runs` lists them)"
            ));
        }
    }
    if let Err(e) = ns::check_privileges() {
        return super::finish(Err(e), json);
    }
    let ids: Vec<String> = if dead {
        match runs::ids() {
            Ok(all) => all
                .into_iter()
                .filter(|id| journal::read_run(id).is_ok_and(|r| !r.header.alive()))
                .collect(),
            Err(e) => return super::finish(Err(e), json),
        }
    } else {
        ids.into_iter().cloned().collect()
    };
    let session = match Session::new() {
        Ok(s) => s,
        Err(e) => return super::finish(Err(e), json),
    };
    let mut lines = Vec::new();
    let mut values = Vec::new();
    let mut failed = false;
    for id in &ids {
        let (text, value, ok) = undo_one_run(&session, id);
        lines.extend(text);
        values.push(value);
        failed |= !ok;
    }
    if ids.is_empty() {
        lines.push("no dead runs to undo".into());
    }
    if json {
        println!("{}", json!({"ok": !failed, "runs": values}));
    } else {
        for l in &lines {
            if failed {
                eprintln!("{l}");
            } else {
                println!("{l}");
            }
        }
    }
    i32::from(failed)
}

/// Undo one dead run: its report as text lines, as JSON, and whether
/// everything was undone.
fn undo_one_run(session: &Session, id: &str) -> (Vec<String>, serde_json::Value, bool) {
    let header = match journal::read_run(id) {
        Ok(r) => r.header,
        Err(e) => {
            return (
                vec![format!("koko: run {id}: {e}")],
                json!({"id": id, "ok": false, "error": e.to_json()}),
                false,
            )
        }
    };
    if header.alive() {
        let e = format!(
            "run {id} is still running (pid {}): koko undoes only runs whose process is dead; stop that koko and it undoes its own work",
            header.pid
        );
        return (
            vec![format!("koko: {e}")],
            json!({"id": id, "ok": false, "alive": true, "pid": header.pid, "error": e}),
            false,
        );
    }
    match journal::undo_dead(session, id) {
        Ok(report) => {
            let ok = report.errors.is_empty();
            (
                report_lines(id, &header, &report),
                json!({
                    "id": id,
                    "ok": ok,
                    "pid": header.pid,
                    "kind": header.kind,
                    "undone": report.undone,
                    "left_alone": report.left_alone.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                    "died_with_process": report.died,
                    "errors": report.errors.iter().map(|e| e.to_json()).collect::<Vec<_>>(),
                }),
                ok,
            )
        }
        Err(e) => (
            vec![format!("koko: run {id}: {e}")],
            json!({"id": id, "ok": false, "error": e.to_json()}),
            false,
        ),
    }
}

fn report_lines(id: &str, h: &runs::RunHeader, r: &UndoReport) -> Vec<String> {
    let mut lines = vec![format!(
        "Undo run {id} ({}, pid {} dead): {}",
        h.kind.as_str(),
        h.pid,
        h.command.join(" ")
    )];
    lines.extend(r.undone.iter().map(|w| format!("  undone: {w}")));
    lines.extend(r.left_alone.iter().map(|e| format!("  {e}")));
    lines.extend(
        r.died
            .iter()
            .map(|w| format!("  died with its process: {w}")),
    );
    lines.extend(r.errors.iter().map(|e| format!("  could not undo: {e}")));
    lines.push(if r.errors.is_empty() {
        format!("Undo run {id}...done")
    } else {
        format!(
            "Undo run {id}: {} step(s) could not be undone; its journal stays for another try",
            r.errors.len()
        )
    });
    lines
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_796_176_210), "2026-12-02 01:50:10");
    }
}
