//! The command line: the original koko grammar ([`legacy`]), plus koko's own
//! subcommands. This module turns arguments into calls of the library and
//! results into output and exit codes; it implements no behaviour itself.

pub mod koro;
pub mod legacy;
pub mod show;

use serde_json::json;

use crate::connect::{self, EndRequest, VethRequest};
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::net::link::VethOptions;
use crate::net::Session;
use crate::ns::{self, named, Namespace};
use legacy::{Action, EndpointArg, Plan};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub const HELP: &str = "\
koko: connect containers and network namespaces with veth links

Usage:
  koko ENDPOINT ENDPOINT [--mtu N]        veth pair between two endpoints
  koko ENDPOINT -x PARENT,REMOTE,VNI[,port=N][,mtu=N][,local=IP][,ttl=N][,learning=off]
  koko ENDPOINT -V PARENT,VID             vlan into ENDPOINT
  koko ENDPOINT -M PARENT,MODE            macvlan (default|private|vepa|bridge|passthru)
  koko DELETE...                          delete links (a veth's peer goes with it)
  koko netns add|del NAME... | list       named namespaces, as `ip netns` makes them
  koko ip TARGET COMMAND...               addresses, routes, link state (koro; see `koko ip -h`)
  koko show TARGET                        links, addresses and routes of a namespace
  koko -h | -v

ENDPOINT:
  -d CONTAINER,LINK[,ITEM...]   Docker (or Podman) container, by name or id
  -n NETNS,LINK[,ITEM...]       `ip netns` namespace (/run/netns/NETNS)
  -p PID,LINK[,ITEM...]         the network namespace of process PID
  -a PATH,LINK[,ITEM...]        a namespace file, e.g. /proc/1/ns/net
  -c LINK[,ITEM...]             koko's own namespace
  -e CONTAINER,LINK[,ITEM...]   CRI-O container (not supported yet)
DELETE: the same flags in upper case with NS,LINK: -D -N -P -A -C -E
ITEM:   ADDR/PREFIX (IPv4 or IPv6, any number) | mirror:DIR:IFACE | mirror:DIR,IFACE
        DIR := ingress | egress | both

Options:
  --mtu N   MTU of a new veth pair (default 1500)
  --json    print a machine-readable result

Examples:
  koko -n testns1,link1,192.168.1.1/24 -n testns2,link2,192.168.1.2/24
  koko -d centos1,link1,192.168.1.1/24,2001:DB8::1/64 -d centos2,link2,192.168.1.2/24,2001:DB8::2/64
  koko -p 4242,eth1,10.0.0.1/24 -c veth-host,10.0.0.2/24
  koko -N testns1,link1

Exit status: 0 done; 1 the request could not be carried out; 2 the request is wrong.
";

/// Run koko with `args` (including the program name); returns the exit code.
pub fn main(args: Vec<String>) -> i32 {
    let rest = &args[1.min(args.len())..];
    let invoked_as = args
        .first()
        .map(|a| std::path::Path::new(a).file_name().unwrap_or_default());
    if invoked_as == Some(std::ffi::OsStr::new("koro")) {
        return koro::main(rest);
    }
    match rest.first().map(String::as_str) {
        Some("netns") => finish(netns_command(&rest[1..]), false),
        Some("ip") => koro::main(&rest[1..]),
        Some("show") => show::main(&rest[1..]),
        _ => legacy_main(rest),
    }
}

fn legacy_main(args: &[String]) -> i32 {
    let json = args.iter().any(|a| a == "--json");
    let plan = match legacy::parse(args) {
        Ok(plan) => plan,
        Err(e) => return finish(Err(e), json),
    };
    let json = plan.json;
    finish(execute(plan), json)
}

/// Print the outcome and return the exit code.
pub(crate) fn finish(outcome: Result<Outcome>, json: bool) -> i32 {
    match outcome {
        Ok(out) => {
            if json {
                println!("{}", out.json);
            } else {
                for line in &out.lines {
                    println!("{line}");
                }
            }
            0
        }
        Err(failure) => {
            let code = failure.exit_code();
            eprintln!("koko: {failure}");
            if code == 2 {
                eprintln!("Run 'koko -h' for usage.");
            }
            if json {
                println!(
                    "{}",
                    json!({"ok": false, "error": {"kind": failure.kind(), "message": failure.to_string(), "exit_code": code}})
                );
            }
            code
        }
    }
}

/// What a successful command prints: one line per action, or one JSON value.
pub struct Outcome {
    pub lines: Vec<String>,
    pub json: serde_json::Value,
}

fn execute(plan: Plan) -> Result<Outcome> {
    match plan.action {
        Action::Help => Ok(Outcome {
            lines: vec![HELP.trim_end().to_string()],
            json: json!({"ok": true, "help": HELP}),
        }),
        Action::Version => Ok(Outcome {
            lines: vec![format!("koko {VERSION}")],
            json: json!({"ok": true, "version": VERSION}),
        }),
        Action::Veth { a, b, mtu } => {
            reject_mirrors(&a)?;
            reject_mirrors(&b)?;
            ns::check_privileges()?;
            let req = VethRequest {
                a: EndRequest {
                    ns: Namespace::resolve(&a.ns)?,
                    name: a.link,
                    addrs: a.addrs,
                },
                b: EndRequest {
                    ns: Namespace::resolve(&b.ns)?,
                    name: b.link,
                    addrs: b.addrs,
                },
                options: VethOptions {
                    mtu,
                    ..VethOptions::default()
                },
            };
            test_pause_after_resolve();
            let session = Session::new()?;
            let ends = atomically(&session, |journal| connect::veth(&session, journal, &req))?;
            Ok(Outcome {
                lines: vec![format!(
                    "Create veth {} in {} <-> {} in {}...done",
                    req.a.name, req.a.ns, req.b.name, req.b.ns
                )],
                json: json!({"ok": true, "action": "create", "type": "veth", "mtu": mtu, "ends": ends}),
            })
        }
        Action::Tunnel { tunnel, .. } => Err(Error::NotSupported(format!(
            "{} links are not available in this build of koko yet",
            match tunnel {
                legacy::TunnelArg::Vxlan(_) => "vxlan",
                legacy::TunnelArg::Vlan { .. } => "vlan",
                legacy::TunnelArg::Macvlan { .. } => "macvlan",
            }
        ))),
        Action::Delete(targets) => {
            ns::check_privileges()?;
            let session = Session::new()?;
            let mut lines = Vec::new();
            let mut deleted = Vec::new();
            for (spec, name) in targets {
                let ns = Namespace::resolve(&spec)?;
                connect::delete_link(&session, &ns, &name)?;
                lines.push(format!("Delete link {name} in {ns}...done"));
                deleted.push(
                    json!({"namespace": ns.name(), "kind": ns.kind().as_str(), "link": name}),
                );
            }
            Ok(Outcome {
                lines,
                json: json!({"ok": true, "action": "delete", "deleted": deleted}),
            })
        }
    }
}

/// Test-only hook, not a user option: with KOKO_TEST_PAUSE_AFTER_RESOLVE_MS=N
/// koko announces on stderr that it resolved its endpoints, then sleeps N ms
/// before creating anything. Tests use it to kill a container in exactly that
/// window and prove that nothing is left behind.
fn test_pause_after_resolve() {
    if let Some(ms) = std::env::var("KOKO_TEST_PAUSE_AFTER_RESOLVE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        eprintln!("koko: test hook: endpoints resolved, pausing {ms} ms");
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

fn reject_mirrors(end: &EndpointArg) -> Result<()> {
    if end.mirrors.is_empty() {
        Ok(())
    } else {
        Err(Error::NotSupported(
            "mirroring (mirror:DIR:IFACE) is not available in this build of koko yet".into(),
        ))
    }
}

/// Run `work` with a fresh journal; if it fails, undo what it created before
/// returning the error (reporting any undo failure too).
pub(crate) fn atomically<T>(
    session: &Session,
    work: impl FnOnce(&mut Journal) -> Result<T>,
) -> Result<T> {
    let mut journal = Journal::new();
    match work(&mut journal) {
        Ok(v) => Ok(v),
        Err(e) => {
            for undo_error in journal.undo_all(session) {
                eprintln!("koko: while rolling back: {undo_error}");
            }
            Err(e)
        }
    }
}

fn netns_command(args: &[String]) -> Result<Outcome> {
    let usage = || {
        Error::Invalid(
            "usage: koko netns add NAME... | koko netns del NAME... | koko netns list".into(),
        )
    };
    let (verb, names) = args.split_first().ok_or_else(usage)?;
    match verb.as_str() {
        "list" if names.is_empty() => {
            let names = named::list()?;
            Ok(Outcome {
                lines: names.clone(),
                json: json!({"ok": true, "netns": names}),
            })
        }
        "add" | "del" | "delete" if !names.is_empty() => {
            ns::check_privileges()?;
            let mut lines = Vec::new();
            for name in names {
                if verb == "add" {
                    named::create(name)?;
                    lines.push(format!("Create netns {name}...done"));
                } else {
                    named::delete(name)?;
                    lines.push(format!("Delete netns {name}...done"));
                }
            }
            Ok(Outcome {
                lines,
                json: json!({"ok": true, "action": verb, "netns": names}),
            })
        }
        _ => Err(usage()),
    }
}
