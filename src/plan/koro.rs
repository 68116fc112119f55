//! The koro grammar: `TARGET COMMAND...`, as the original koro took it and
//! as `koko ip`, `koro` and scripts' `koro("...")` give it.
//!
//! TARGET names the namespace (`docker NAME`, `cri ID`, `netns PATH`, `ipnetns NAME`,
//! `pid PID`, `host`); COMMAND is the `ip`-style language of
//! [`crate::ipcmd`]. [`parse`] checks both without looking anything up, so
//! a usage error is found before the kernel or the engine is asked.

use crate::error::{Error, Result};
use crate::ipcmd::{self, IpCommand};
use crate::ns::NsSpec;

/// One koro command line, typed: where, and what.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub target: NsSpec,
    pub command: IpCommand,
}

/// Parse `TARGET COMMAND...` (the words after `koro` or `koko ip`).
pub fn parse<S: AsRef<str>>(words: &[S]) -> Result<Request> {
    let words: Vec<String> = words.iter().map(|w| w.as_ref().to_string()).collect();
    let (target, rest) = parse_target(&words)?;
    let command = ipcmd::parse_words(rest)?;
    Ok(Request { target, command })
}

/// Parse `TARGET` at the start of `words`; returns the spec and the rest.
pub fn parse_target(words: &[String]) -> Result<(NsSpec, &[String])> {
    let usage = "docker NAME | cri ID | netns PATH | ipnetns NAME | pid PID | host";
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
        "cri" => NsSpec::Cri(value?.clone()),
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
        assert_eq!(
            parse_target(&words("cri 4f2a x")).unwrap().0,
            NsSpec::Cri("4f2a".into())
        );
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

    #[test]
    fn a_whole_koro_line_parses_into_a_request() {
        let r = parse(&words("ipnetns router forwarding on")).unwrap();
        assert_eq!(r.target, NsSpec::Netns("router".into()));
        assert_eq!(r.command, IpCommand::Forwarding(true));
        let r = parse(&words(
            "docker client route add default via 10.0.1.2 dev link1",
        ))
        .unwrap();
        assert_eq!(r.target, NsSpec::Docker("client".into()));
        assert_eq!(
            r.command.to_string(),
            "route add default via 10.0.1.2 dev link1"
        );
        // The command is checked too, before anything is looked up.
        let e = parse(&words("host link set link1")).unwrap_err();
        assert!(e.to_string().contains("nothing to change"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }
}
