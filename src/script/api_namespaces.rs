//! Namespaces in scripts: `netns("a")`, `docker("web")`, `cri("4f2a")`, `pid(1234)`,
//! `host()`, and what can be done to one (`ns.forwarding(true)`,
//! `ns.sysctl(...)`, `ns.destroy()`).
//!
//! An `Ns` is a [`Namespace`] handle: it holds no file descriptor, so a
//! script variable never keeps a namespace alive. A netns the run creates
//! is journaled (deleted on undo); sysctls are journaled with their old
//! value.

use super::api::{fail, invalid, with_world, NsRef, R};
use super::SharedWorld;
use crate::error::Error;
use crate::journal::Undo;
use crate::net::sysctl;
use crate::ns::{named, Namespace, NsKind, NsSpec};
use rhai::Engine;

/// Set a sysctl in `ns`, journaling the old value if it changed.
fn set_sysctl(world: &SharedWorld, ns: &Namespace, key: &str, value: &str) -> R<()> {
    let old = sysctl::write(ns, key, value).map_err(fail)?;
    if old != value {
        world.borrow_mut().journal.record(
            format!("sysctl {key}={value} in {ns}"),
            Undo::RestoreSysctl {
                ns: ns.clone(),
                key: key.to_string(),
                value: old,
            },
        );
    }
    Ok(())
}

/// `ns.forwarding(on)`: the lead re-points this at the library's one
/// forwarding implementation at merge time.
fn forwarding(world: &SharedWorld, ns: &Namespace, on: bool) -> R<()> {
    with_world(world, |session, journal| {
        crate::connect::set_forwarding(session, journal, ns, on)
    })
    .map(drop)
}

/// `ns.destroy()`: let go of what koko holds in the namespace, then delete
/// it (netns) or kill it (container).
fn destroy(world: &SharedWorld, ns: &Namespace) -> R<()> {
    // Koko's netlink socket and its HTTP responders' sockets would keep
    // the namespace (and its veth ends) alive.
    world.borrow().session.forget(ns);
    for entry in world.borrow().journal.entries() {
        if let Undo::StopServer(server) = &entry.undo {
            if let Ok(mut s) = server.lock() {
                if s.ns == *ns {
                    s.stop();
                }
            }
        }
    }
    match ns.kind() {
        // Only the very namespace this handle names: if its name now
        // refers to another one (deleted and re-made by someone else), that
        // one is not the script's to destroy.
        NsKind::Netns => match named::delete_same(ns) {
            Ok(true) => Ok(()),
            Ok(false) => Err(fail(Error::namespace_not_found(
                crate::error::Object::namespace(ns),
                "is gone (its name is free or now names another namespace, which is left alone)",
            ))),
            Err(e) => Err(fail(e)),
        },
        NsKind::Docker => world
            .borrow()
            .session
            .kill_container(ns.name())
            .map_err(fail),
        // A CRI namespace is its pod's: stopping the pod through the runtime
        // is what takes it (and the links in it) away.
        NsKind::Cri => world.borrow().session.stop_cri_pod(ns.name()).map_err(fail),
        kind => Err(fail(Error::NotSupported(format!(
            "destroy() works on netns namespaces and containers, not on a {} namespace ({ns})",
            kind.as_str(),
        )))),
    }
}

pub fn register(engine: &mut Engine, world: &SharedWorld) {
    let w = world.clone();
    sys!(
        engine,
        "netns",
        /// an `ip netns` namespace; created (visible to `ip netns list`) if missing
        move |name: &str| -> R<NsRef> {
            if Namespace::netns(name).is_err() {
                // Written down before it is made (see crate::journal).
                let intent = crate::journal::Intent::Netns { name: name.into() };
                w.borrow_mut().journal.intend(intent).map_err(fail)?;
            }
            let (ns, created) = named::ensure(name).map_err(fail)?;
            if created {
                let mut world = w.borrow_mut();
                let world = &mut *world;
                // Marked first, then recorded: a namespace koko cannot mark
                // is one a later undo would not recognise as its own.
                if let Err(e) = crate::journal::mark_netns(&world.session, &world.journal, &ns) {
                    world.session.forget(&ns);
                    let _ = named::delete(name);
                    return Err(fail(e));
                }
                world.journal.record(
                    format!("netns '{name}'"),
                    Undo::DeleteNamespace {
                        name: name.to_string(),
                    },
                );
            }
            Ok(NsRef(ns))
        }
    );
    sys!(
        engine,
        "pid",
        /// the network namespace of a process
        |pid: i64| -> R<NsRef> {
            let pid =
                u32::try_from(pid).map_err(|_| invalid(format!("{pid} is not a process id")))?;
            Namespace::pid(pid).map(NsRef).map_err(fail)
        }
    );
    sys!(
        engine,
        "host",
        /// koko's own namespace
        || -> R<NsRef> { Namespace::current().map(NsRef).map_err(fail) }
    );
    let w = world.clone();
    sys!(
        engine,
        "docker",
        /// a running container's namespace (Docker, or Podman via DOCKER_HOST)
        move |name_or_id: &str| -> R<NsRef> {
            w.borrow()
                .session
                .resolve(&NsSpec::Docker(name_or_id.to_string()))
                .map(NsRef)
                .map_err(fail)
        }
    );

    let w = world.clone();
    sys!(
        engine,
        "cri",
        /// a CRI (containerd, CRI-O) container's or pod sandbox's namespace, by id or unique prefix
        move |id: &str| -> R<NsRef> {
            w.borrow()
                .session
                .resolve(&NsSpec::Cri(id.to_string()))
                .map(NsRef)
                .map_err(fail)
        }
    );

    getter!(
        engine,
        "name",
        /// the namespace's name: "client"
        |ns: &mut NsRef| -> String { ns.0.name().to_string() }
    );
    getter!(
        engine,
        "kind",
        /// "netns" / "docker" / "cri" / "pid" / "host" / "path"
        |ns: &mut NsRef| -> String { ns.0.kind().as_str().to_string() }
    );
    func!(
        engine,
        "to_string",
        /// the namespace as text: "netns 'client'"
        |ns: &mut NsRef| -> String { ns.0.to_string() }
    );
    func!(
        engine,
        "to_debug",
        /// the namespace as the REPL shows it: "Ns(netns 'client')"
        |ns: &mut NsRef| -> String { format!("Ns({})", ns.0) }
    );
    func!(
        engine,
        "==",
        /// the same namespace (same kernel object)
        |a: NsRef, b: NsRef| -> bool { a.0 == b.0 }
    );
    func!(
        engine,
        "!=",
        /// not the same namespace
        |a: NsRef, b: NsRef| -> bool { a.0 != b.0 }
    );

    let w = world.clone();
    sys!(
        engine,
        "forwarding",
        /// IPv4 and IPv6 forwarding on/off inside the namespace
        move |ns: &mut NsRef, on: bool| -> R<()> { forwarding(&w, &ns.0, on) }
    );
    let w = world.clone();
    sys!(
        engine,
        "sysctl",
        /// set any net.* sysctl inside the namespace (the old value comes back on undo)
        move |ns: &mut NsRef, key: &str, value: &str| -> R<()> {
            set_sysctl(&w, &ns.0, key, value)
        }
    );
    let w = world.clone();
    sys!(
        engine,
        "sysctl",
        /// set a numeric net.* sysctl inside the namespace
        move |ns: &mut NsRef, key: &str, value: i64| -> R<()> {
            set_sysctl(&w, &ns.0, key, &value.to_string())
        }
    );
    let w = world.clone();
    sys!(
        engine,
        "sysctl",
        /// set a net.* sysctl to 1 or 0 inside the namespace
        move |ns: &mut NsRef, key: &str, on: bool| -> R<()> {
            set_sysctl(&w, &ns.0, key, if on { "1" } else { "0" })
        }
    );
    sys!(
        engine,
        "sysctl",
        /// read a net.* sysctl inside the namespace
        |ns: &mut NsRef, key: &str| -> R<String> { sysctl::read(&ns.0, key).map_err(fail) }
    );

    let w = world.clone();
    sys!(
        engine,
        "destroy",
        /// failure drill: delete a netns (it dies once nothing holds it), kill a container or stop a CRI pod
        move |ns: &mut NsRef| -> R<()> { destroy(&w, &ns.0) }
    );
}
