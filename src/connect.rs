//! Connecting namespaces: the operations the CLI, the koro grammar and
//! scripts share. Each one records what it creates in a [`Journal`] so the
//! caller can roll back (the CLI always does on failure; scripts decide).

use ipnet::IpNet;

use crate::error::{Error, Result};
use crate::journal::{Journal, Undo};
use crate::net::link::{self, VethError, VethOptions};
use crate::net::{addr, Session};
use crate::ns::Namespace;

/// One end of a veth pair to create.
#[derive(Debug, Clone)]
pub struct EndRequest {
    pub ns: Namespace,
    pub name: String,
    pub addrs: Vec<IpNet>,
}

/// A veth pair to create.
#[derive(Debug, Clone)]
pub struct VethRequest {
    pub a: EndRequest,
    pub b: EndRequest,
    pub options: VethOptions,
}

/// One end as created (read back from the kernel).
#[derive(Debug, Clone, serde::Serialize)]
pub struct EndReport {
    pub namespace: String,
    pub kind: &'static str,
    pub link: String,
    pub ifindex: u32,
    pub addresses: Vec<String>,
}

/// Create a veth pair with both ends up and their addresses. On error,
/// whatever was created is in `journal` (the caller rolls back).
pub fn veth(session: &Session, journal: &mut Journal, req: &VethRequest) -> Result<[EndReport; 2]> {
    let (a, b) = (&req.a, &req.b);
    link::validate_name(&a.name)?;
    link::validate_name(&b.name)?;
    if a.ns == b.ns && a.name == b.name {
        return Err(Error::Invalid(format!(
            "both ends are named '{}' in {}: a namespace cannot hold two links of the same name",
            a.name, a.ns
        )));
    }
    if req.options.mtu < 68 || req.options.mtu > 65535 {
        return Err(Error::Invalid(format!(
            "MTU {} is out of range for a veth (68 to 65535)",
            req.options.mtu
        )));
    }
    let ta = session.target(&a.ns)?;
    let tb = session.target(&b.ns)?;
    let created = session.block_on(link::create_veth(&ta, &a.name, &tb, &b.name, &req.options));
    match created {
        Ok(()) => journal.record(
            format!("veth {} in {} <-> {} in {}", a.name, a.ns, b.name, b.ns),
            Undo::DeleteLink {
                ns: a.ns.clone(),
                name: a.name.clone(),
            },
        ),
        Err(VethError::Namespace(e)) => return Err(e),
        Err(VethError::Kernel(errno)) => {
            return Err(explain_veth_failure(session, req, errno));
        }
    }

    let mut reports = Vec::with_capacity(2);
    for (end, t) in [(a, &ta), (b, &tb)] {
        let mut state = session.block_on(link::require(t, &end.name))?;
        if !state.up {
            // The peer is born down (see link::veth_request).
            session.block_on(link::set(
                t,
                &end.name,
                link::LinkChange {
                    up: Some(true),
                    mtu: None,
                },
            ))?;
            state.up = true;
        }
        for cidr in &end.addrs {
            session.block_on(addr::add(t, &end.name, *cidr))?;
        }
        reports.push(EndReport {
            namespace: end.ns.name().to_string(),
            kind: end.ns.kind().as_str(),
            link: end.name.clone(),
            ifindex: state.index,
            addresses: end.addrs.iter().map(|a| a.to_string()).collect(),
        });
    }
    let b_report = reports.pop().expect("two ends");
    let a_report = reports.pop().expect("two ends");
    Ok([a_report, b_report])
}

/// Turn the kernel's refusal of a veth creation into words: which name clashes
/// where, or which namespace went away.
fn explain_veth_failure(session: &Session, req: &VethRequest, errno: nix::errno::Errno) -> Error {
    use nix::errno::Errno;
    if errno == Errno::EEXIST {
        for end in [&req.a, &req.b] {
            if let Ok(t) = session.target(&end.ns) {
                if let Ok(Some(_)) = session.block_on(link::get(&t, &end.name)) {
                    return Error::LinkExists {
                        link: end.name.clone(),
                        ns: end.ns.to_string(),
                    };
                }
            }
        }
    }
    for end in [&req.a, &req.b] {
        if !end.ns.exists() {
            return Error::NamespaceNotFound {
                ns: end.ns.to_string(),
                cause: "is gone".into(),
            };
        }
    }
    Error::kernel(
        format!(
            "creating veth {} in {} <-> {} in {}",
            req.a.name, req.a.ns, req.b.name, req.b.ns
        ),
        errno,
    )
}

/// Delete link `name` in `ns` (a veth's peer goes with it).
pub fn delete_link(session: &Session, ns: &Namespace, name: &str) -> Result<()> {
    link::validate_name(name)?;
    let t = session.target(ns)?;
    session.block_on(link::delete(&t, name))
}
