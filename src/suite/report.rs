//! What `koko test` prints and writes: a line per test and a summary for a
//! person, JUnit XML for CI systems (GitHub Actions, GitLab, Jenkins render
//! it), and TAP.
//!
//! JUnit's vocabulary: a failed assertion is a `<failure>`, anything else
//! that stopped a test (a thrown error, a timeout, a crash) an `<error>`.

use std::fmt::Write as _;
use std::time::Duration;

use super::{CaseResult, Status};

/// The word a status is shown with.
pub fn word(status: Status) -> &'static str {
    match status {
        Status::Passed => "PASS",
        Status::Failed => "FAIL",
        Status::Error => "ERROR",
        Status::TimedOut => "TIMEOUT",
        Status::Crashed => "CRASH",
    }
}

/// The line printed as a test ends.
pub fn line(r: &CaseResult) -> String {
    format!(
        "{:<7} {} ({})",
        word(r.result.status),
        r.case.id(),
        crate::output::fmt_secs(r.duration)
    )
}

/// The failures in detail (message, the source line, what the test
/// printed, how to enter a kept sandbox) and the summary line.
pub fn summary(results: &[CaseResult], wall: Duration, not_run: usize) -> String {
    let mut out = String::new();
    let failed: Vec<&CaseResult> = results
        .iter()
        .filter(|r| r.result.status != Status::Passed)
        .collect();
    if !failed.is_empty() {
        out.push_str("\nfailures:\n");
    }
    for r in &failed {
        let _ = writeln!(out, "\n--- {} ({})", r.case.id(), word(r.result.status));
        let _ = writeln!(out, "{}", r.result.message);
        if let Some(line) = r.result.line {
            if let Some(text) = std::fs::read_to_string(&r.case.file)
                .ok()
                .and_then(|s| s.lines().nth(line.saturating_sub(1)).map(str::to_string))
            {
                let _ = writeln!(out, "  {line:>4} | {text}");
            }
        }
        if !r.output.trim().is_empty() {
            let _ = writeln!(out, "output:");
            for l in r.output.lines() {
                let _ = writeln!(out, "  {l}");
            }
        }
        if let Some(pid) = r.result.holder {
            let _ = writeln!(
                out,
                "sandbox kept: enter it with `nsenter -t {pid} -n -m`; `kill {pid}` drops it"
            );
        }
    }
    let count = |s: Status| results.iter().filter(|r| r.result.status == s).count();
    let mut parts = vec![format!("{} passed", count(Status::Passed))];
    for (s, name) in [
        (Status::Failed, "failed"),
        (Status::Error, "errors"),
        (Status::TimedOut, "timed out"),
        (Status::Crashed, "crashed"),
    ] {
        if count(s) > 0 {
            parts.push(format!("{} {name}", count(s)));
        }
    }
    if not_run > 0 {
        parts.push(format!("{not_run} not run"));
    }
    let verdict = if failed.is_empty() && not_run == 0 {
        "ok"
    } else {
        "FAILED"
    };
    let _ = writeln!(
        out,
        "\ntest result: {verdict}. {} ({} tests, {})",
        parts.join(", "),
        results.len() + not_run,
        crate::output::fmt_secs(wall)
    );
    out
}

/// Escape text for XML content and attributes; characters XML 1.0 cannot
/// hold at all (most control characters) become U+FFFD.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// The results as a JUnit XML document: one `<testsuite>` per file.
pub fn junit(results: &[CaseResult], wall: Duration) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let failures = |rs: &[&CaseResult]| {
        rs.iter()
            .filter(|r| r.result.status == Status::Failed)
            .count()
    };
    let errors = |rs: &[&CaseResult]| {
        rs.iter()
            .filter(|r| !matches!(r.result.status, Status::Passed | Status::Failed))
            .count()
    };
    let all: Vec<&CaseResult> = results.iter().collect();
    let _ = writeln!(
        out,
        "<testsuites name=\"koko test\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{:.3}\">",
        all.len(),
        failures(&all),
        errors(&all),
        wall.as_secs_f64()
    );
    let mut files: Vec<&std::path::Path> = results.iter().map(|r| r.case.file.as_path()).collect();
    files.dedup();
    for file in files {
        let rs: Vec<&CaseResult> = results.iter().filter(|r| r.case.file == file).collect();
        let time: f64 = rs.iter().map(|r| r.duration.as_secs_f64()).sum();
        let name = xml_escape(&file.display().to_string());
        let _ = writeln!(
            out,
            "  <testsuite name=\"{name}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{time:.3}\">",
            rs.len(),
            failures(&rs),
            errors(&rs),
        );
        for r in rs {
            let test = xml_escape(r.case.function.as_deref().unwrap_or("(file)"));
            let _ = write!(
                out,
                "    <testcase classname=\"{name}\" name=\"{test}\" file=\"{name}\" time=\"{:.3}\"",
                r.duration.as_secs_f64()
            );
            if r.result.status == Status::Passed && r.output.is_empty() {
                out.push_str("/>\n");
                continue;
            }
            out.push_str(">\n");
            if r.result.status != Status::Passed {
                let tag = if r.result.status == Status::Failed {
                    "failure"
                } else {
                    "error"
                };
                let first = r.result.message.lines().next().unwrap_or("");
                let _ = writeln!(
                    out,
                    "      <{tag} message=\"{}\" type=\"{}\">{}</{tag}>",
                    xml_escape(first),
                    word(r.result.status).to_lowercase(),
                    xml_escape(&r.result.message)
                );
            }
            if !r.output.is_empty() {
                let _ = writeln!(
                    out,
                    "      <system-out>{}</system-out>",
                    xml_escape(&r.output)
                );
            }
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// The results as TAP (version 13): a plan, then `ok`/`not ok` per test
/// with a YAML block for each failure.
pub fn tap(results: &[CaseResult]) -> String {
    let mut out = format!("TAP version 13\n1..{}\n", results.len());
    for (i, r) in results.iter().enumerate() {
        let n = i + 1;
        if r.result.status == Status::Passed {
            let _ = writeln!(out, "ok {n} - {}", r.case.id());
            continue;
        }
        let _ = writeln!(out, "not ok {n} - {}", r.case.id());
        out.push_str("  ---\n");
        let _ = writeln!(out, "  status: {}", word(r.result.status).to_lowercase());
        out.push_str("  message: |\n");
        for l in r.result.message.lines() {
            let _ = writeln!(out, "    {l}");
        }
        if let Some(line) = r.result.line {
            let _ = writeln!(out, "  at: {}:{line}", r.case.file.display());
        }
        out.push_str("  ...\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escape_makes_text_safe_for_xml() {
        assert_eq!(
            xml_escape("a<b & \"c\" 'd'>\u{1}"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;\u{fffd}"
        );
    }
}
