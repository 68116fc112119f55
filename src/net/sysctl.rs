//! `net.*` sysctls inside a namespace.
//!
//! The files under /proc/sys/net belong to the network namespace of the
//! thread that *opens* them (the kernel picks the namespace's sysctl table at
//! lookup time). So koko opens the file inside a short setns window and reads
//! or writes it after coming home, like it does with sockets.

use std::fs::OpenOptions;
use std::io::{Read, Seek, Write};
use std::path::PathBuf;

use crate::error::{Error, Object, Result};
use crate::ns::{with_netns, Namespace};

/// The /proc/sys path of a `net.*` key. Dots separate components; a link
/// name containing dots can be given with slashes instead
/// (`net/ipv4/conf/eth0.10/forwarding`), as sysctl(8) allows.
pub fn key_path(key: &str) -> Result<PathBuf> {
    let parts: Vec<&str> = if key.contains('/') {
        key.split('/').collect()
    } else {
        key.split('.').collect()
    };
    if parts.first() != Some(&"net")
        || parts.len() < 2
        || parts.iter().any(|p| p.is_empty() || *p == "..")
    {
        return Err(Error::Invalid(format!(
            "sysctl '{key}': only net.* keys belong to a network namespace"
        )));
    }
    let mut path = PathBuf::from("/proc/sys");
    path.extend(parts);
    Ok(path)
}

fn open(ns: &Namespace, key: &str, write: bool) -> Result<std::fs::File> {
    open_all(ns, &[key], write)?
        .pop()
        .expect("one key, one file")
}

/// Open several sysctls of `ns` in ONE setns window (a chain sets
/// forwarding on hundreds of namespaces: one window each, not one per key).
/// Each key gets its own result, so a missing one does not hide the others.
fn open_all(ns: &Namespace, keys: &[&str], write: bool) -> Result<Vec<Result<std::fs::File>>> {
    let paths = keys
        .iter()
        .map(|key| key_path(key))
        .collect::<Result<Vec<_>>>()?;
    let opened = with_netns(ns, || {
        paths
            .iter()
            .map(|path| OpenOptions::new().read(true).write(write).open(path))
            .collect::<Vec<_>>()
    })?;
    Ok(keys
        .iter()
        .zip(opened)
        .map(|(key, file)| {
            file.map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Error::NotFound {
                        object: Object::sysctl(*key),
                        place: Some(ns.to_string()),
                        cause: None,
                    }
                } else {
                    Error::io(format!("opening sysctl '{key}' in {ns}"), e)
                }
            })
        })
        .collect())
}

/// Read a sysctl's value (trimmed).
pub fn read(ns: &Namespace, key: &str) -> Result<String> {
    let mut file = open(ns, key, false)?;
    let mut value = String::new();
    file.read_to_string(&mut value)
        .map_err(|e| Error::io(format!("reading sysctl '{key}' in {ns}"), e))?;
    Ok(value.trim().to_string())
}

/// Write a sysctl; returns the previous value (for undo).
pub fn write(ns: &Namespace, key: &str, value: &str) -> Result<String> {
    replace(open(ns, key, true)?, ns, key, value)
}

/// Read the old value of an open sysctl file, then write `value`.
fn replace(mut file: std::fs::File, ns: &Namespace, key: &str, value: &str) -> Result<String> {
    let mut old = String::new();
    file.read_to_string(&mut old)
        .map_err(|e| Error::io(format!("reading sysctl '{key}' in {ns}"), e))?;
    file.rewind()
        .map_err(|e| Error::io(format!("sysctl '{key}' in {ns}"), e))?;
    file.write_all(value.as_bytes())
        .map_err(|e| Error::io(format!("setting sysctl '{key}' to '{value}' in {ns}"), e))?;
    Ok(old.trim().to_string())
}

/// Make sure IPv6 is enabled on link `name` (Docker disables it in many
/// containers; an IPv6 address on such a link is refused).
pub fn enable_ipv6_on(ns: &Namespace, name: &str) -> Result<()> {
    let key = format!("net/ipv6/conf/{name}/disable_ipv6");
    match read(ns, &key) {
        Ok(v) if v == "1" => write(ns, &key, "0").map(drop),
        Ok(_) => Ok(()),
        // No ipv6 tree at all: the kernel was booted without IPv6; the
        // address request will report that.
        Err(Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The sysctls that make up "forwarding" in a namespace, IPv4 first.
pub const FORWARDING_KEYS: [&str; 2] = ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"];

/// Turn forwarding on or off in the namespace of the calling thread: for a
/// thread that is inside a namespace already (the helper that creates
/// namespaces in bulk). A kernel without IPv6 has no IPv6 key: skipped.
pub fn set_forwarding_here(on: bool) -> std::io::Result<()> {
    let value = if on { "1" } else { "0" };
    for key in FORWARDING_KEYS {
        let path = key_path(key).expect("a net.* key");
        match std::fs::write(&path, value) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && key.contains("ipv6") => {}
            other => other?,
        }
    }
    Ok(())
}

/// Turn IPv4 and IPv6 forwarding on or off for the whole namespace. Returns
/// each key that exists with its previous value (for undo). A kernel
/// without IPv6 has no IPv6 key: that family is skipped, not an error.
/// This is the one implementation; callers that journal use
/// `connect::set_forwarding`.
pub fn set_forwarding(ns: &Namespace, on: bool) -> Result<Vec<(&'static str, String)>> {
    let value = if on { "1" } else { "0" };
    let mut set = Vec::with_capacity(2);
    for (key, file) in FORWARDING_KEYS
        .into_iter()
        .zip(open_all(ns, &FORWARDING_KEYS, true)?)
    {
        match file {
            Ok(file) => set.push((key, replace(file, ns, key, value)?)),
            Err(Error::NotFound { .. }) if key.contains("ipv6") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_proc_sys() {
        assert_eq!(
            key_path("net.ipv4.ip_forward").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            key_path("net/ipv4/conf/eth0.10/forwarding").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.10/forwarding")
        );
        assert!(key_path("kernel.hostname").is_err());
        assert!(key_path("net..x").is_err());
        assert!(key_path("net/../../etc").is_err());
    }
}
