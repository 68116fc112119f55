//! The koro command line: `koko ip TARGET COMMAND...`, or `koro TARGET
//! COMMAND...` when the binary is invoked under that name (a symlink).
//!
//! TARGET names the namespace the way the original koro did; COMMAND is the
//! `ip`-style language of [`crate::ipcmd`], parsed and carried out by the
//! library. Usage errors are found before anything is looked up.

use serde_json::json;

use super::{atomically, Outcome};
use crate::error::{Error, Result};
use crate::ipcmd;
use crate::net::Session;
use crate::ns::{self, Namespace, NsSpec};

pub const HELP: &str = "\
koro: addresses, routes and link state inside a namespace

Usage:
  koko ip TARGET COMMAND... [--json]
  koro TARGET COMMAND... [--json]          (koko invoked as `koro`)

TARGET:
  docker NAME      a Docker (or Podman) container, by name or id
  netns PATH       a namespace file, e.g. /run/netns/blue or /proc/42/ns/net
  ipnetns NAME     an `ip netns` namespace (/run/netns/NAME)
  pid PID          the network namespace of process PID
  host | current   koko's own namespace

COMMAND:
  address add|del ADDR/PREFIX dev IF
  route add|del|replace PREFIX|default [via GW] [dev IF] [metric N] [table N]
  link set IF up|down|mtu N
  sysctl net.KEY=VALUE
  forwarding on|off                (IPv4 and IPv6)

Examples:
  koro docker client address add 10.0.1.1/24 dev link1
  koro docker client route add default via 10.0.1.2 dev link1
  koko ip ipnetns firewall route add 10.0.3.0/24 via 10.0.2.2 dev link3
  koko ip pid 4242 link set link5 mtu 1400
  koko ip netns /run/netns/router sysctl net.ipv4.ip_forward=1
";

/// Parse `TARGET` at the start of `words`; returns the spec and the rest.
pub fn parse_target(words: &[String]) -> Result<(NsSpec, &[String])> {
    let usage = "docker NAME | netns PATH | ipnetns NAME | pid PID | host";
    let Some(kind) = words.first() else {
        return Err(Error::Invalid(format!("missing TARGET ({usage})")));
    };
    if kind == "host" || kind == "current" {
        return Ok((NsSpec::Current, &words[1..]));
    }
    let value = words
        .get(1)
        .ok_or_else(|| Error::Invalid(format!("target '{kind}' needs a value ({usage})")));
    let spec = match kind.as_str() {
        "docker" => NsSpec::Docker(value?.clone()),
        "netns" => NsSpec::Path(value?.into()),
        "ipnetns" => NsSpec::Netns(value?.clone()),
        "pid" => {
            let v = value?;
            NsSpec::Pid(v.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
                Error::Invalid(format!("target 'pid {v}': '{v}' is not a process id"))
            })?)
        }
        other => {
            return Err(Error::Invalid(format!(
                "unknown target '{other}': expected {usage}"
            )))
        }
    };
    Ok((spec, &words[2..]))
}

/// Run one koro command; `args` are the words after `ip` (or after the
/// program name when invoked as `koro`).
pub fn main(args: &[String]) -> i32 {
    let json = args.iter().any(|a| a == "--json");
    let words: Vec<String> = args.iter().filter(|a| *a != "--json").cloned().collect();
    if words.iter().any(|w| w == "-h" || w == "--help") {
        return super::finish(
            Ok(Outcome {
                lines: vec![HELP.trim_end().into()],
                json: json!({"ok": true, "help": HELP}),
            }),
            json,
        );
    }
    super::finish(run(&words), json)
}

fn run(words: &[String]) -> Result<Outcome> {
    let (spec, rest) = parse_target(words)?;
    let cmd = ipcmd::parse_words(rest)?;
    ns::check_privileges()?;
    let ns = Namespace::resolve(&spec)?;
    let session = Session::new()?;
    let summary = atomically(&session, |journal| {
        ipcmd::apply(&session, journal, &ns, &cmd)
    })?;
    Ok(Outcome {
        lines: vec![summary.clone()],
        json: json!({
            "ok": true,
            "action": cmd.action(),
            "command": cmd.to_string(),
            "namespace": ns.name(),
            "kind": ns.kind().as_str(),
            "summary": summary,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn targets() {
        let w = words("docker client address add 10.0.1.1/24 dev link1");
        let (spec, rest) = parse_target(&w).unwrap();
        assert_eq!(spec, NsSpec::Docker("client".into()));
        assert_eq!(rest[0], "address");
        assert_eq!(
            parse_target(&words("ipnetns a x")).unwrap().0,
            NsSpec::Netns("a".into())
        );
        assert_eq!(
            parse_target(&words("netns /run/netns/a x")).unwrap().0,
            NsSpec::Path("/run/netns/a".into())
        );
        assert_eq!(parse_target(&words("pid 42 x")).unwrap().0, NsSpec::Pid(42));
        assert_eq!(parse_target(&words("host x")).unwrap().0, NsSpec::Current);
        for (bad, needle) in [
            ("pid abc x", "'abc'"),
            ("frob a", "'frob'"),
            ("docker", "needs a value"),
            ("", "missing"),
        ] {
            let e = parse_target(&words(bad)).unwrap_err();
            assert!(matches!(e, Error::Invalid(_)));
            assert!(e.to_string().contains(needle), "{bad}: {e}");
        }
    }
}
