//! `koko show TARGET [--json]`: links, addresses and routes of one namespace,
//! read from the kernel by [`crate::inspect`].

use serde_json::json;

use super::Output;
use crate::error::{Error, Result};
use crate::inspect;
use crate::net::Session;
use crate::ns;

pub fn main(args: &[String]) -> i32 {
    let json = args.iter().any(|a| a == "--json");
    let words: Vec<String> = args.iter().filter(|a| *a != "--json").cloned().collect();
    super::finish(run(&words), json)
}

fn run(words: &[String]) -> Result<Output> {
    let (spec, rest) = crate::plan::koro::parse_target(words)
        .map_err(|e| Error::Invalid(format!("koko show: {e}")))?;
    if let Some(extra) = rest.first() {
        return Err(Error::Invalid(format!(
            "koko show: unexpected word '{extra}' after the target"
        )));
    }
    ns::check_privileges()?;
    let session = Session::new()?;
    let ns = session.resolve(&spec)?;
    let report = inspect::inspect(&session, &ns)?;
    let mut value = serde_json::to_value(&report).expect("report serializes");
    value["ok"] = json!(true);
    Ok(Output {
        lines: report.lines(&ns.to_string()),
        json: value,
    })
}
