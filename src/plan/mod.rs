//! The plan layer: what the one-shot CLI, `koko ip`/`koro` and scripts'
//! `koko("...")`/`koro("...")` share.
//!
//! Both grammars are parsed here, below every front end, into typed
//! requests ([`oneshot::parse`] gives an [`oneshot::Action`], [`koro::parse`]
//! a [`koro::Request`]). [`execute`] resolves the namespaces a request names,
//! carries it out through [`connect`] and [`ipcmd`] with the caller's
//! session and journal, and describes what was done in a [`Report`]. The
//! report is data: it serialises to the CLI's `--json` output (and to a
//! script's result map), and [`Report::lines`] renders the text the CLI
//! prints. Nothing here prints, reads argv or picks an exit code; that is
//! `cli/`'s job.
//!
//! [`atomically`] is the one-shot discipline: a fresh journal, undone if the
//! work fails, so a failed command leaves nothing behind. Scripts instead
//! pass their run's journal and decide at the end.

pub mod koro;
pub mod oneshot;

#[cfg(test)]
mod fuzz;

use serde::Serialize;

use crate::connect::{self, EndReport, EndRequest, MirrorReport, MirrorRequest};
use crate::connect::{TunnelRequest, VethRequest};
use crate::error::{Error, Result};
use crate::ipcmd;
use crate::journal::Journal;
use crate::net::link::VethOptions;
use crate::net::tunnel::{TunnelKind, VxlanOptions};
use crate::net::Session;
use crate::ns::{Namespace, NsSpec};
use oneshot::{Action, EndpointArg, TunnelArg};

/// koko's version, for `-v`, the REPL banner and reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A typed request of either grammar.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// A one-shot command line (veth, tunnel, delete). Help and version are
    /// front-end matters: executing them is an error.
    Oneshot(Action),
    /// One koro command in one namespace.
    Koro(koro::Request),
}

/// What a request did. Serialises to the JSON the CLI prints with `--json`
/// (`{"ok": true, ...}` followed by the fields of the outcome).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always true: a failed request is an `Err`, not a report.
    pub ok: bool,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// The outcome of each kind of request.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    Veth(VethReport),
    Tunnel(TunnelReport),
    Delete(DeleteReport),
    Koro(KoroReport),
}

/// A veth pair created (`"action": "create", "type": "veth"`).
#[derive(Debug, Clone, Serialize)]
pub struct VethReport {
    pub action: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub mtu: u32,
    pub ends: [EndReport; 2],
    pub mirrors: Vec<MirrorReport>,
}

/// A vxlan, vlan or macvlan created.
#[derive(Debug, Clone, Serialize)]
pub struct TunnelReport {
    pub action: &'static str,
    /// "vxlan", "vlan", "macvlan".
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub parent: String,
    pub end: EndReport,
    pub mirrors: Vec<MirrorReport>,
    /// "vxlan 42 to 10.9.0.2", for the text line.
    #[serde(skip)]
    pub describe: String,
    /// The parent's namespace in words, for the text line.
    #[serde(skip)]
    pub parent_place: String,
}

/// Links deleted.
#[derive(Debug, Clone, Serialize)]
pub struct DeleteReport {
    pub action: &'static str,
    pub deleted: Vec<DeletedLink>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeletedLink {
    pub namespace: String,
    pub kind: &'static str,
    pub link: String,
    /// It was already gone when its turn came: it went with its veth peer,
    /// deleted earlier in the same request.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub with_peer: bool,
    /// The namespace in words ("netns 'a'"), for the text line.
    #[serde(skip)]
    pub place: String,
}

/// One koro command carried out.
#[derive(Debug, Clone, Serialize)]
pub struct KoroReport {
    /// "route add", "address del", ...
    pub action: String,
    /// The command in canonical form.
    pub command: String,
    pub namespace: String,
    pub kind: &'static str,
    /// One line saying what was done.
    pub summary: String,
}

impl Report {
    fn new(outcome: Outcome) -> Report {
        Report { ok: true, outcome }
    }

    /// The lines the CLI prints for this report (one per action).
    pub fn lines(&self) -> Vec<String> {
        match &self.outcome {
            Outcome::Veth(v) => {
                let [a, b] = &v.ends;
                let mut lines = vec![format!(
                    "Create veth {} in {} <-> {} in {}...done",
                    a.link, a.place, b.link, b.place
                )];
                lines.extend(v.mirrors.iter().map(MirrorReport::line));
                lines
            }
            Outcome::Tunnel(t) => {
                let mut lines = vec![format!(
                    "Create {} {} on {} in {}...done",
                    t.describe, t.end.link, t.parent, t.end.place
                )];
                lines.extend(t.mirrors.iter().map(MirrorReport::line));
                lines
            }
            Outcome::Delete(d) => d
                .deleted
                .iter()
                .map(|l| {
                    if l.with_peer {
                        format!(
                            "Delete link {} in {}...done (it went with its peer)",
                            l.link, l.place
                        )
                    } else {
                        format!("Delete link {} in {}...done", l.link, l.place)
                    }
                })
                .collect(),
            Outcome::Koro(k) => vec![k.summary.clone()],
        }
    }

    /// The JSON the CLI prints with `--json`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a report serialises")
    }
}

/// Parse a one-shot command line (the words after `koko`) and execute it
/// with the caller's session and journal: scripts' `koko("...")`. Nothing
/// is rolled back here; the journal's owner decides.
pub fn run_oneshot(session: &Session, journal: &mut Journal, args: &[String]) -> Result<Report> {
    let line = oneshot::parse(args)?;
    execute(session, journal, Request::Oneshot(line.action))
}

/// Parse a koro command line (`TARGET COMMAND...`) and execute it with the
/// caller's session and journal: scripts' `koro("...")`.
pub fn run_koro(session: &Session, journal: &mut Journal, words: &[String]) -> Result<Report> {
    let request = koro::parse(words)?;
    execute(session, journal, Request::Koro(request))
}

/// Carry out a typed request: resolve the namespaces it names, act through
/// [`connect`] / [`ipcmd`], record every step in `journal`, and report.
/// On error, what was done so far is in `journal` for the caller to undo.
pub fn execute(session: &Session, journal: &mut Journal, request: Request) -> Result<Report> {
    let outcome = match request {
        Request::Oneshot(Action::Help | Action::Version) => {
            return Err(Error::Invalid(
                "-h and -v have nothing to execute here".into(),
            ))
        }
        Request::Oneshot(Action::Veth { a, b, mtu }) => {
            Outcome::Veth(veth(session, journal, &a, &b, mtu)?)
        }
        Request::Oneshot(Action::Tunnel { endpoint, tunnel }) => {
            Outcome::Tunnel(tunnel_link(session, journal, &endpoint, tunnel)?)
        }
        Request::Oneshot(Action::Delete(targets)) => Outcome::Delete(delete(session, &targets)?),
        Request::Koro(request) => Outcome::Koro(koro_command(session, journal, &request)?),
    };
    Ok(Report::new(outcome))
}

/// Run `work` with a fresh journal, on disk under /run/koko while it runs
/// (so a killed koko's half-done command can be undone by `koko undo`);
/// if it fails, or a stop signal (SIGINT, SIGTERM, SIGHUP: see
/// [`crate::interrupt`]) arrived while it ran, undo what it created before
/// returning the error. An undo failure is reported with the original
/// error, never instead of it. On success the journal is closed: what was
/// made is the user's now.
pub fn atomically<T>(session: &Session, work: impl FnOnce(&mut Journal) -> Result<T>) -> Result<T> {
    let mut journal = Journal::for_run(crate::runs::RunKind::Oneshot)?;
    // A signal that arrived during the last step (no check after it) must
    // still undo: the user asked for the command not to happen.
    match work(&mut journal).and_then(|v| crate::interrupt::check().map(|_| v)) {
        Ok(v) => {
            journal.clear();
            journal.close();
            Ok(v)
        }
        Err(e) => {
            for undo_error in journal.undo_all(session) {
                crate::say!("koko: while rolling back: {undo_error}");
            }
            Err(e)
        }
    }
}

fn end_request(session: &Session, arg: &EndpointArg) -> Result<EndRequest> {
    Ok(EndRequest {
        ns: session.resolve(&arg.ns)?,
        name: arg.link.clone(),
        addrs: arg.addrs.clone(),
    })
}

fn veth(
    session: &Session,
    journal: &mut Journal,
    a: &EndpointArg,
    b: &EndpointArg,
    mtu: u32,
) -> Result<VethReport> {
    let req = VethRequest {
        a: end_request(session, a)?,
        b: end_request(session, b)?,
        options: VethOptions {
            mtu,
            ..VethOptions::default()
        },
    };
    test_pause_after_resolve()?;
    let mirrors: Vec<MirrorRequest> = mirror_requests(&req.a, a)
        .into_iter()
        .chain(mirror_requests(&req.b, b))
        .collect();
    let ends = connect::veth(session, journal, &req)?;
    test_pause(
        "KOKO_TEST_PAUSE_AFTER_CREATE_MS",
        "the veth pair is created",
    )?;
    let mirrors = add_mirrors(session, journal, &mirrors)?;
    Ok(VethReport {
        action: "create",
        kind: "veth",
        mtu,
        ends,
        mirrors,
    })
}

fn tunnel_link(
    session: &Session,
    journal: &mut Journal,
    endpoint: &EndpointArg,
    tunnel: TunnelArg,
) -> Result<TunnelReport> {
    let (parent, kind) = match tunnel {
        TunnelArg::Vxlan(v) => (
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
        TunnelArg::Vlan { parent, id } => (parent, TunnelKind::Vlan { id }),
        TunnelArg::Macvlan { parent, mode } => (parent, TunnelKind::Macvlan { mode }),
    };
    let req = TunnelRequest {
        // The original looks the parent up in its own namespace: run koko
        // under `ip netns exec` to use a parent elsewhere.
        parent_ns: Namespace::current()?,
        parent,
        end: end_request(session, endpoint)?,
        kind,
    };
    let mirrors = mirror_requests(&req.end, endpoint);
    let end = connect::tunnel(session, journal, &req)?;
    let mirrors = add_mirrors(session, journal, &mirrors)?;
    Ok(TunnelReport {
        action: "create",
        kind: req.kind.kind_name(),
        parent: req.parent.clone(),
        end,
        mirrors,
        describe: req.kind.describe(),
        parent_place: req.parent_ns.to_string(),
    })
}

/// Add "nothing was done" to a "not found" error met while checking a
/// multi-object request before acting: the user learns that the other
/// objects are untouched too.
pub fn nothing_done(e: Error, what: &str) -> Error {
    match e {
        Error::NotFound {
            object,
            place,
            cause,
        } => Error::NotFound {
            object,
            place,
            cause: Some(match cause {
                Some(c) => format!("{c}; {what}"),
                None => what.to_string(),
            }),
        },
        other => other,
    }
}

/// Delete links, all or nothing as far as the kernel allows: every
/// namespace and link is looked up first, and a missing one deletes
/// nothing. Then they are deleted in order; one that is gone by its turn
/// went with its veth peer (deleted just before) and is reported so. If the
/// kernel refuses one half way, the error is preceded by what was deleted
/// and what was not attempted (a deleted link cannot be brought back).
fn delete(session: &Session, targets: &[(NsSpec, String)]) -> Result<DeleteReport> {
    let several = targets.len() > 1;
    let checked = |e: Error| {
        if several {
            nothing_done(e, "nothing was deleted")
        } else {
            e
        }
    };
    let mut found: Vec<(Namespace, &String, u32)> = Vec::with_capacity(targets.len());
    for (spec, name) in targets {
        crate::net::link::validate_name(name)?;
        let ns = session.resolve(spec).map_err(checked)?;
        if found.iter().any(|(n, l, _)| *n == ns && *l == name) {
            return Err(Error::Invalid(format!(
                "link '{name}' in {ns} is named twice in one request"
            )));
        }
        let t = session.target(&ns)?;
        let state = session
            .block_on(crate::net::link::get(&t, name))?
            .ok_or_else(|| checked(Error::link_not_found(name.clone(), &ns)))?;
        // A link without a kind (lo, a physical device) is one the kernel
        // will not delete: say so now, before anything else goes.
        if state.kind.is_none() {
            return Err(Error::Kernel {
                what: format!("deleting link '{name}' in {ns}"),
                cause: format!(
                    "it is {}, which cannot be deleted{}",
                    if name == "lo" {
                        "the loopback device"
                    } else {
                        "a device without a link kind (a physical device?)"
                    },
                    if several { "; nothing was deleted" } else { "" }
                ),
                errno: None,
            });
        }
        found.push((ns, name, state.index));
    }
    let mut deleted: Vec<DeletedLink> = Vec::with_capacity(found.len());
    for (i, (ns, name, index)) in found.iter().enumerate() {
        let t = session.target(ns)?;
        let now = session.block_on(crate::net::link::get(&t, name))?;
        let with_peer = match now {
            None => true,
            Some(l) if l.index == *index => {
                if let Err(e) = connect::delete_link(session, ns, name) {
                    report_partial_delete(&deleted, &found[i + 1..]);
                    return Err(e);
                }
                false
            }
            Some(_) => {
                report_partial_delete(&deleted, &found[i + 1..]);
                return Err(Error::Kernel {
                    what: format!("deleting link '{name}' in {ns}"),
                    cause: "the name now belongs to another link (made by someone else since koko looked); left alone".into(),
                    errno: None,
                });
            }
        };
        deleted.push(DeletedLink {
            namespace: ns.name().to_string(),
            kind: ns.kind().as_str(),
            link: name.to_string(),
            with_peer,
            place: ns.to_string(),
        });
    }
    Ok(DeleteReport {
        action: "delete",
        deleted,
    })
}

/// Say on stderr what a multi-link delete did before it failed.
fn report_partial_delete(done: &[DeletedLink], rest: &[(Namespace, &String, u32)]) {
    if !done.is_empty() {
        let list: Vec<String> = done
            .iter()
            .map(|d| format!("'{}' in {}", d.link, d.place))
            .collect();
        eprintln!("koko: deleted before the failure: {}", list.join(", "));
    }
    if !rest.is_empty() {
        let list: Vec<String> = rest
            .iter()
            .map(|(ns, name, _)| format!("'{name}' in {ns}"))
            .collect();
        eprintln!("koko: not attempted: {}", list.join(", "));
    }
}

fn koro_command(
    session: &Session,
    journal: &mut Journal,
    request: &koro::Request,
) -> Result<KoroReport> {
    let ns = session.resolve(&request.target)?;
    let summary = ipcmd::apply(session, journal, &ns, &request.command)?;
    Ok(KoroReport {
        action: request.command.action(),
        command: request.command.to_string(),
        namespace: ns.name().to_string(),
        kind: ns.kind().as_str(),
        summary,
    })
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

fn add_mirrors(
    session: &Session,
    journal: &mut Journal,
    mirrors: &[MirrorRequest],
) -> Result<Vec<MirrorReport>> {
    let mut reports = Vec::with_capacity(mirrors.len());
    for m in mirrors {
        connect::mirror(session, journal, m)?;
        reports.push(m.report());
    }
    Ok(reports)
}

/// Test-only hook, not a user option: with KOKO_TEST_PAUSE_AFTER_RESOLVE_MS=N
/// koko announces on stderr that it resolved its endpoints, then sleeps N ms
/// before creating anything. Tests use it to kill a container in exactly that
/// window and prove that nothing is left behind, or to deliver a signal
/// there (the pause is interruptible). See [`crate::interrupt::test_pause`]
/// for the other points.
fn test_pause_after_resolve() -> Result<()> {
    test_pause("KOKO_TEST_PAUSE_AFTER_RESOLVE_MS", "endpoints resolved")
}

/// Test-only hooks, not user options: with `var`=N koko announces on
/// stderr "test hook: `moment`" and sleeps N ms (interruptibly). Besides
/// the one above, KOKO_TEST_PAUSE_AFTER_CREATE_MS pauses a one-shot veth
/// right after the pair is created (its journal on disk says so): tests
/// SIGKILL koko there and prove that `koko undo` recovers it.
fn test_pause(var: &str, moment: &str) -> Result<()> {
    if let Some(ms) = std::env::var(var).ok().and_then(|v| v.parse::<u64>().ok()) {
        crate::say!("koko: test hook: {moment}, pausing {ms} ms");
        crate::interrupt::sleep(std::time::Duration::from_millis(ms))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(ns: &str, link: &str, addrs: &[&str]) -> EndReport {
        EndReport {
            namespace: ns.into(),
            kind: "netns",
            link: link.into(),
            ifindex: 3,
            addresses: addrs.iter().map(|a| a.to_string()).collect(),
            place: format!("netns '{ns}'"),
        }
    }

    #[test]
    fn a_veth_report_is_the_cli_json_and_text() {
        let report = Report::new(Outcome::Veth(VethReport {
            action: "create",
            kind: "veth",
            mtu: 1500,
            ends: [end("a", "link1", &["10.0.0.1/24"]), end("b", "link2", &[])],
            mirrors: vec![MirrorReport {
                namespace: "a".into(),
                source: "eth0".into(),
                direction: "both",
                target: "link1".into(),
                place: "netns 'a'".into(),
            }],
        }));
        let v = report.to_json();
        assert_eq!(v["ok"], true);
        assert_eq!(v["action"], "create");
        assert_eq!(v["type"], "veth");
        assert_eq!(v["mtu"], 1500);
        assert_eq!(v["ends"][0]["link"], "link1");
        assert_eq!(v["ends"][0]["addresses"][0], "10.0.0.1/24");
        assert_eq!(v["ends"][1]["namespace"], "b");
        assert_eq!(v["mirrors"][0]["direction"], "both");
        assert!(
            v["ends"][0].get("place").is_none(),
            "text-only fields stay out of the JSON"
        );
        assert_eq!(
            report.lines(),
            vec![
                "Create veth link1 in netns 'a' <-> link2 in netns 'b'...done",
                "Mirror both of eth0 to link1 in netns 'a'...done",
            ]
        );
    }

    #[test]
    fn a_delete_and_a_koro_report() {
        let report = Report::new(Outcome::Delete(DeleteReport {
            action: "delete",
            deleted: vec![DeletedLink {
                namespace: "a".into(),
                kind: "netns",
                link: "link1".into(),
                with_peer: false,
                place: "netns 'a'".into(),
            }],
        }));
        assert_eq!(
            report.to_json(),
            serde_json::json!({"ok": true, "action": "delete",
                "deleted": [{"namespace": "a", "kind": "netns", "link": "link1"}]})
        );
        assert_eq!(
            report.lines(),
            vec!["Delete link link1 in netns 'a'...done"]
        );
        let report = Report::new(Outcome::Koro(KoroReport {
            action: "forwarding".into(),
            command: "forwarding on".into(),
            namespace: "r".into(),
            kind: "netns",
            summary: "IPv4 forwarding on in netns 'r'".into(),
        }));
        assert_eq!(report.to_json()["command"], "forwarding on");
        assert_eq!(report.lines(), vec!["IPv4 forwarding on in netns 'r'"]);
    }

    #[test]
    fn help_and_version_have_nothing_to_execute() {
        // Rejected before the session is used for anything.
        let session = Session::new().unwrap();
        let mut journal = Journal::new();
        for action in [Action::Help, Action::Version] {
            let e = execute(&session, &mut journal, Request::Oneshot(action)).unwrap_err();
            assert_eq!(e.exit_code(), 2);
        }
        let e = run_oneshot(&session, &mut journal, &["-q".to_string()]).unwrap_err();
        assert!(e.to_string().contains("'-q'"), "{e}");
        let e = run_koro(&session, &mut journal, &["frob".to_string()]).unwrap_err();
        assert!(e.to_string().contains("'frob'"), "{e}");
        assert!(journal.is_empty());
    }
}
