//! The command line: the original koko grammar ([`legacy`]), plus koko's own
//! subcommands. This module turns arguments into calls of the library and
//! results into output and exit codes; it implements no behaviour itself.

pub mod koro;
pub mod legacy;
pub mod show;

use serde_json::json;

use crate::connect::{self, EndRequest, MirrorRequest, TunnelRequest, VethRequest};
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::net::link::VethOptions;
use crate::net::tunnel::{TunnelKind, VxlanOptions};
use crate::net::Session;
use crate::ns::{self, named, Namespace};
use legacy::{Action, EndpointArg, Plan};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub const HELP: &str = "\
koko: connect containers and network namespaces with veth, vxlan, vlan and macvlan links

Usage:
  koko ENDPOINT ENDPOINT [--mtu N]        veth pair between two endpoints
  koko ENDPOINT -x PARENT,REMOTE,VNI[,port=N][,mtu=N][,local=IP][,ttl=N][,learning=off]
                                          vxlan into ENDPOINT (-X is the same)
  koko ENDPOINT -V PARENT,VID             vlan into ENDPOINT
  koko ENDPOINT -M PARENT,MODE            macvlan (default|private|vepa|bridge|passthru)
  koko DELETE...                          delete links (a veth's peer goes with it)
  koko netns add|del NAME... | list       named namespaces, as `ip netns` makes them
  koko run FILE [--keep|--cleanup] [-- ARGS...]   run a Rhai script
  koko repl                               interactive prompt with the script API
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
        DIR := ingress | egress | both   (copy IFACE's traffic out through LINK)
PARENT is a link of koko's own namespace: run koko under `ip netns exec HOST`
to use a parent there. vxlan defaults: port 4789, learning on, MTU from the parent.

Options:
  --mtu N   MTU of a new veth pair (default 1500)
  --json    print a machine-readable result

Examples:
  koko -n testns1,link1,192.168.1.1/24 -n testns2,link2,192.168.1.2/24
  koko -d centos1,link1,192.168.1.1/24,2001:DB8::1/64 -d centos2,link2,192.168.1.2/24,2001:DB8::2/64
  koko -p 4242,eth1,10.0.0.1/24 -c veth-host,10.0.0.2/24
  koko -N testns1,link1
  ip netns exec hostA koko -n ca,vx0,10.200.0.1/24 -x eth1,10.9.0.2,42
  koko -n a,mir0,mirror:both:eth0 -n monitor,tap0

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
        Some("run") => run_command(&rest[1..]),
        Some("repl") => repl_command(&rest[1..]),
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
                println!("{}", json!({"ok": false, "error": failure.to_json()}));
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
        action => {
            ns::check_privileges()?;
            let session = Session::new()?;
            atomically(&session, |journal| {
                execute_action(&session, journal, action)
            })
        }
    }
}

/// Carry out a parsed koko command line with the caller's session and
/// journal (the CLI uses a fresh one and rolls back on error; scripts use
/// their run's). Help and version have nothing to execute.
pub fn execute_action(session: &Session, journal: &mut Journal, action: Action) -> Result<Outcome> {
    match action {
        Action::Help | Action::Version => Err(Error::Invalid(
            "-h and -v have nothing to execute here".into(),
        )),
        Action::Veth { a, b, mtu } => {
            let req = VethRequest {
                a: EndRequest {
                    ns: Namespace::resolve(&a.ns)?,
                    name: a.link.clone(),
                    addrs: a.addrs.clone(),
                },
                b: EndRequest {
                    ns: Namespace::resolve(&b.ns)?,
                    name: b.link.clone(),
                    addrs: b.addrs.clone(),
                },
                options: VethOptions {
                    mtu,
                    ..VethOptions::default()
                },
            };
            test_pause_after_resolve();
            let mirrors: Vec<MirrorRequest> = mirror_requests(&req.a, &a)
                .into_iter()
                .chain(mirror_requests(&req.b, &b))
                .collect();
            let ends = connect::veth(session, journal, &req)?;
            for m in &mirrors {
                connect::mirror(session, journal, m)?;
            }
            let mut lines = vec![format!(
                "Create veth {} in {} <-> {} in {}...done",
                req.a.name, req.a.ns, req.b.name, req.b.ns
            )];
            lines.extend(mirror_lines(&mirrors));
            Ok(Outcome {
                lines,
                json: json!({"ok": true, "action": "create", "type": "veth", "mtu": mtu, "ends": ends, "mirrors": mirror_json(&mirrors)}),
            })
        }
        Action::Tunnel { endpoint, tunnel } => {
            let (parent, kind) = match tunnel {
                legacy::TunnelArg::Vxlan(v) => (
                    v.parent,
                    TunnelKind::Vxlan(VxlanOptions {
                        remote: v.remote,
                        vni: v.vni,
                        port: v.port,
                        mtu: v.mtu,
                        local: v.local,
                        ttl: v.ttl,
                        learning: v.learning,
                    }),
                ),
                legacy::TunnelArg::Vlan { parent, id } => (parent, TunnelKind::Vlan { id }),
                legacy::TunnelArg::Macvlan { parent, mode } => {
                    (parent, TunnelKind::Macvlan { mode })
                }
            };
            let req = TunnelRequest {
                // The original looks the parent up in its own namespace: run
                // koko under `ip netns exec` to use a parent elsewhere.
                parent_ns: Namespace::current()?,
                parent,
                end: EndRequest {
                    ns: Namespace::resolve(&endpoint.ns)?,
                    name: endpoint.link.clone(),
                    addrs: endpoint.addrs.clone(),
                },
                kind,
            };
            let mirrors = mirror_requests(&req.end, &endpoint);
            let end = connect::tunnel(session, journal, &req)?;
            for m in &mirrors {
                connect::mirror(session, journal, m)?;
            }
            let mut lines = vec![format!(
                "Create {} {} on {} in {}...done",
                req.kind.describe(),
                req.end.name,
                req.parent,
                req.end.ns
            )];
            lines.extend(mirror_lines(&mirrors));
            Ok(Outcome {
                lines,
                json: json!({"ok": true, "action": "create", "type": req.kind.kind_name(), "parent": req.parent, "end": end, "mirrors": mirror_json(&mirrors)}),
            })
        }
        Action::Delete(targets) => {
            let mut lines = Vec::new();
            let mut deleted = Vec::new();
            for (spec, name) in targets {
                let ns = Namespace::resolve(&spec)?;
                connect::delete_link(session, &ns, &name)?;
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

/// The mirrors asked for on an endpoint: copy each source's traffic out
/// through the endpoint's new link.
fn mirror_requests(end: &EndRequest, arg: &EndpointArg) -> Vec<MirrorRequest> {
    arg.mirrors
        .iter()
        .map(|m| MirrorRequest {
            ns: end.ns.clone(),
            source: m.source.clone(),
            dir: m.dir,
            target: end.name.clone(),
        })
        .collect()
}

fn mirror_lines(mirrors: &[MirrorRequest]) -> Vec<String> {
    mirrors
        .iter()
        .map(|m| {
            format!(
                "Mirror {} of {} to {} in {}...done",
                m.dir.as_str(),
                m.source,
                m.target,
                m.ns
            )
        })
        .collect()
}

fn mirror_json(mirrors: &[MirrorRequest]) -> serde_json::Value {
    mirrors
        .iter()
        .map(|m| json!({"namespace": m.ns.name(), "source": m.source, "direction": m.dir.as_str(), "target": m.target}))
        .collect()
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

/// `koko run FILE [--keep] [--cleanup] [--max-ops N] [-- ARGS...]`
#[derive(clap::Parser, Debug)]
#[command(name = "koko run", about = "Run a koko script (Rhai)")]
struct RunArgs {
    /// The script to run.
    file: std::path::PathBuf,
    /// If the script fails, keep what it created (default: undo it).
    #[arg(long)]
    keep: bool,
    /// Undo everything the script created when it ends, even on success.
    #[arg(long)]
    cleanup: bool,
    /// Stop the script after this many operations (runaway loops).
    #[arg(long, value_name = "N")]
    max_ops: Option<u64>,
    /// Arguments for the script (the ARGS array).
    #[arg(last = true)]
    args: Vec<String>,
}

fn parse_sub<T: clap::Parser>(name: &str, args: &[String]) -> std::result::Result<T, i32> {
    let argv = std::iter::once(format!("koko {name}")).chain(args.iter().cloned());
    T::try_parse_from(argv).map_err(|e| {
        let code = if e.use_stderr() { 2 } else { 0 };
        let _ = e.print();
        code
    })
}

fn run_command(args: &[String]) -> i32 {
    let parsed: RunArgs = match parse_sub("run", args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if parsed.keep && parsed.cleanup {
        eprintln!("koko run: --keep and --cleanup contradict each other");
        return 2;
    }
    let mut limits = crate::script::Limits::default();
    if let Some(n) = parsed.max_ops {
        limits.max_operations = n;
    }
    crate::script::run_file(&crate::script::RunOptions {
        file: parsed.file,
        args: parsed.args,
        keep: parsed.keep,
        cleanup: parsed.cleanup,
        limits,
    })
}

/// `koko repl [--history FILE]`
#[derive(clap::Parser, Debug)]
#[command(
    name = "koko repl",
    about = "Explore and change namespaces interactively"
)]
struct ReplArgs {
    /// Where to keep the line history (default: ~/.koko_history).
    #[arg(long, value_name = "FILE")]
    history: Option<std::path::PathBuf>,
}

fn repl_command(args: &[String]) -> i32 {
    let parsed: ReplArgs = match parse_sub("repl", args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    crate::script::repl::run(parsed.history)
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
