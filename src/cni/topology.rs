//! The lab's topology as the CNI plugin reads it: which links each pod has.
//!
//! A link record has meshnet-cni's fields (`uid`, `peer_pod`, `local_intf`,
//! `local_ip`, `peer_intf`, `peer_ip`), so a meshnet topology can be used
//! as it is, plus koko's own `mtu`. Both pods of a link carry a record of
//! it, each seen from its own side, with the same `uid`: the uid names the
//! link (a cross-node link's VNI is derived from it).
//!
//! The source is named in the network config (`"topology"`):
//! - a file: `{"pods": {"r1": {"links": [...]}, ...}, "nodes": {"r3": "10.9.0.2"}}`;
//! - a directory: one `POD.json` per pod, `{"links": [...]}` (or meshnet's
//!   custom-resource form `{"spec": {"links": [...]}}`), and optionally a
//!   `.nodes.json` with the node map `{"r3": "10.9.0.2"}`.
//!
//! The node map gives the underlay address of the node of a pod that lives
//! elsewhere; a pod it does not name is on this node. A pod may also carry
//! its node in its own record (`"node_ip"`).
//!
//! **Kubernetes namespaces.** A pod is a Kubernetes namespace and a name
//! (`K8S_POD_NAMESPACE`, default `default`, and `K8S_POD_NAME`). As in
//! meshnet, whose Topology resources live in the pod's namespace, a
//! record's `peer_pod` names a pod of the *same* namespace: a link never
//! crosses namespaces. The source can be per namespace:
//! - a directory: `NAMESPACE/POD.json` (and `NAMESPACE/.nodes.json`) when
//!   the subdirectory `NAMESPACE` exists, else the flat `POD.json`;
//! - a file: `{"namespaces": {"NAMESPACE": {"pods": ..., "nodes": ...}}}`
//!   for a namespace it lists, else its top-level `pods` and `nodes`.
//!
//! A flat source thus serves every namespace alike: pods named the same in
//! two namespaces get the same links, each to the peer of its own
//! namespace.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::impair::Impairment;
use crate::net::addr;

/// One link of a pod, seen from that pod.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct LinkRecord {
    pub uid: u32,
    pub peer_pod: String,
    pub local_intf: String,
    #[serde(default)]
    pub local_ip: String,
    pub peer_intf: String,
    #[serde(default)]
    pub peer_ip: String,
    /// koko's extra: the link's MTU (default: the network config's `mtu`,
    /// else 1500).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// koko's extra: how this pod's end degrades what it sends on the
    /// link, in the words and units of `koko ip link impair`:
    /// `{"delay": "20ms", "loss": "1%", "rate": "10mbit"}`.
    #[serde(default)]
    pub impair: Option<BTreeMap<String, Value>>,
}

impl LinkRecord {
    /// The local address, if the record has one (meshnet writes "" for none).
    pub fn local_addr(&self) -> Result<Option<IpNet>> {
        parse_opt(&self.local_ip, &self.local_intf)
    }

    /// The peer's address, if the record has one.
    pub fn peer_addr(&self) -> Result<Option<IpNet>> {
        parse_opt(&self.peer_ip, &self.peer_intf)
    }

    /// What this pod's end sends degraded, if the record says so. Parsed
    /// by `koko ip link impair`'s own parser; a number may stand for its
    /// text (`"limit": 100`, `"delay": 20` meaning 20ms).
    pub fn impairment(&self) -> Result<Option<Impairment>> {
        let Some(map) = &self.impair else {
            return Ok(None);
        };
        let what = format!(
            "topology: impairment of '{}' (link {})",
            self.local_intf, self.uid
        );
        let mut out = Impairment::default();
        for (key, value) in map {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(Error::Invalid(format!(
                        "{what}: '{key}' is {other}, not a string or number"
                    )))
                }
            };
            crate::ipcmd::set_impair_value(&mut out, key, &text)
                .map_err(|e| Error::Invalid(format!("{what}: {e}")))?;
        }
        if out.is_none() {
            return Ok(None);
        }
        out.validate(&what)?;
        Ok(Some(out))
    }
}

fn parse_opt(text: &str, intf: &str) -> Result<Option<IpNet>> {
    if text.is_empty() {
        return Ok(None);
    }
    addr::parse_cidr(text)
        .map(Some)
        .map_err(|e| Error::Invalid(format!("topology: address of '{intf}': {e}")))
}

/// A pod's part of the topology.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodTopology {
    #[serde(default)]
    pub links: Vec<LinkRecord>,
    /// meshnet's custom-resource form puts the links under `spec`.
    #[serde(default)]
    spec: Option<Box<PodTopology>>,
    /// The underlay address of the pod's node, if it is not this one.
    #[serde(default)]
    pub node_ip: Option<String>,
}

impl PodTopology {
    fn flatten(mut self) -> PodTopology {
        if let Some(spec) = self.spec.take() {
            let spec = spec.flatten();
            self.links.extend(spec.links);
            if self.node_ip.is_none() {
                self.node_ip = spec.node_ip;
            }
        }
        self
    }
}

#[derive(Debug, Default, Deserialize)]
struct TopologyFile {
    #[serde(default)]
    pods: HashMap<String, PodTopology>,
    #[serde(default)]
    nodes: HashMap<String, String>,
    /// Per-namespace topologies (see the module doc).
    #[serde(default)]
    namespaces: HashMap<String, TopologyFile>,
}

impl TopologyFile {
    /// The part of the file for Kubernetes namespace `ns`.
    fn scope(mut self, ns: &str) -> TopologyFile {
        match self.namespaces.remove(ns) {
            Some(part) => part,
            None => self,
        }
    }
}

/// A name usable as one path component (not empty, no `/`, no leading dot).
fn plain(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains('/')
}

/// Where the topology is read from.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
}

impl Source {
    pub fn new(path: impl Into<PathBuf>) -> Source {
        Source { path: path.into() }
    }

    /// Can the source be read at all (STATUS)?
    pub fn check(&self) -> Result<()> {
        if self.path.is_dir() {
            std::fs::read_dir(&self.path).map(drop).map_err(|e| {
                Error::io(
                    format!("reading topology directory {}", self.path.display()),
                    e,
                )
            })
        } else {
            self.read_file().map(drop)
        }
    }

    fn read_file(&self) -> Result<TopologyFile> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| Error::io(format!("reading topology {}", self.path.display()), e))?;
        serde_json::from_str(&text).map_err(|e| {
            Error::Invalid(format!(
                "topology {} is not valid: {e}",
                self.path.display()
            ))
        })
    }

    /// The directory holding namespace `ns`'s pods: its own subdirectory
    /// if there is one, else the top.
    fn dir_of(&self, ns: &str) -> PathBuf {
        let sub = self.path.join(ns);
        if plain(ns) && sub.is_dir() {
            sub
        } else {
            self.path.clone()
        }
    }

    /// The links of pod `pod` of Kubernetes namespace `ns` (empty if the
    /// topology does not name it).
    pub fn pod(&self, ns: &str, pod: &str) -> Result<PodTopology> {
        if self.path.is_dir() {
            if !plain(pod) {
                return Ok(PodTopology::default());
            }
            let file = self.dir_of(ns).join(format!("{pod}.json"));
            match std::fs::read_to_string(&file) {
                Ok(text) => serde_json::from_str::<PodTopology>(&text)
                    .map(PodTopology::flatten)
                    .map_err(|e| {
                        Error::Invalid(format!("topology {} is not valid: {e}", file.display()))
                    }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PodTopology::default()),
                Err(e) => Err(Error::io(format!("reading topology {}", file.display()), e)),
            }
        } else {
            let mut all = self.read_file()?.scope(ns);
            Ok(all
                .pods
                .remove(pod)
                .map(PodTopology::flatten)
                .unwrap_or_default())
        }
    }

    /// The underlay address of `pod`'s node, if the topology places it on
    /// a node (see the module doc).
    pub fn node_of(&self, ns: &str, pod: &str) -> Result<Option<String>> {
        if self.path.is_dir() {
            let nodes = self.dir_of(ns).join(".nodes.json");
            if let Ok(text) = std::fs::read_to_string(&nodes) {
                let map: HashMap<String, String> = serde_json::from_str(&text).map_err(|e| {
                    Error::Invalid(format!("node map {} is not valid: {e}", nodes.display()))
                })?;
                if let Some(ip) = map.get(pod) {
                    return Ok(Some(ip.clone()));
                }
            }
            Ok(self.pod(ns, pod)?.node_ip)
        } else {
            let all = self.read_file()?.scope(ns);
            if let Some(ip) = all.nodes.get(pod) {
                return Ok(Some(ip.clone()));
            }
            Ok(all.pods.get(pod).and_then(|p| p.node_ip.clone()))
        }
    }
}

/// Check a pod's records before anything is wired: names, addresses, MTU,
/// no interface twice.
pub fn validate(pod: &str, links: &[LinkRecord]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for l in links {
        crate::net::link::validate_name(&l.local_intf)?;
        crate::net::link::validate_name(&l.peer_intf)?;
        l.local_addr()?;
        l.peer_addr()?;
        if let Some(mtu) = l.mtu {
            crate::net::link::check_mtu(mtu)?;
        }
        l.impairment()?;
        if !seen.insert(l.local_intf.as_str()) {
            return Err(Error::Invalid(format!(
                "topology: pod '{pod}' has interface '{}' in two links",
                l.local_intf
            )));
        }
        if l.peer_pod == pod {
            return Err(Error::Invalid(format!(
                "topology: link {} of pod '{pod}' has the pod itself as its peer",
                l.uid
            )));
        }
    }
    Ok(())
}

/// The path of a topology source, for messages.
pub fn describe(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meshnet_records_and_the_crd_form_parse() {
        let text = r#"{"spec": {"links": [{"uid": 1, "peer_pod": "r2", "local_intf": "eth1",
            "local_ip": "10.0.0.1/24", "peer_intf": "eth1", "peer_ip": "10.0.0.2/24"}]}}"#;
        let p = serde_json::from_str::<PodTopology>(text).unwrap().flatten();
        assert_eq!(p.links.len(), 1);
        assert_eq!(
            p.links[0].local_addr().unwrap().unwrap().to_string(),
            "10.0.0.1/24"
        );
        let none = LinkRecord {
            local_ip: String::new(),
            ..p.links[0].clone()
        };
        assert_eq!(none.local_addr().unwrap(), None);
    }

    #[test]
    fn a_topology_file_gives_pods_and_nodes() {
        let path = std::env::temp_dir().join(format!("koko-topo-{}.json", std::process::id()));
        std::fs::write(
            &path,
            r#"{"pods": {"r1": {"links": [{"uid": 2, "peer_pod": "r2", "local_intf": "e1",
                "peer_intf": "e1", "mtu": 9000}]}, "r2": {"node_ip": "10.9.0.2"}},
                "nodes": {"r3": "10.9.0.3"}}"#,
        )
        .unwrap();
        let source = Source::new(&path);
        let r1 = source.pod("default", "r1").unwrap();
        assert_eq!(r1.links[0].mtu, Some(9000));
        assert!(source.pod("default", "nobody").unwrap().links.is_empty());
        assert_eq!(
            source.node_of("lab", "r2").unwrap().as_deref(),
            Some("10.9.0.2")
        );
        assert_eq!(
            source.node_of("default", "r3").unwrap().as_deref(),
            Some("10.9.0.3")
        );
        assert_eq!(source.node_of("default", "r1").unwrap(), None);
        assert!(source.check().is_ok());
        std::fs::remove_file(&path).unwrap();
        assert!(source.check().is_err());
    }

    #[test]
    fn a_topology_file_can_hold_one_topology_per_namespace() {
        let path = std::env::temp_dir().join(format!("koko-topo-ns-{}.json", std::process::id()));
        std::fs::write(
            &path,
            r#"{"pods": {"r1": {"links": [{"uid": 1, "peer_pod": "r2", "local_intf": "e1",
                "peer_intf": "e1"}]}},
                "namespaces": {"blue": {"pods": {"r1": {"links": [{"uid": 9, "peer_pod": "r5",
                "local_intf": "b1", "peer_intf": "b1"}]}}, "nodes": {"r5": "10.9.0.5"}}}}"#,
        )
        .unwrap();
        let source = Source::new(&path);
        assert_eq!(source.pod("blue", "r1").unwrap().links[0].uid, 9);
        assert_eq!(source.pod("red", "r1").unwrap().links[0].uid, 1);
        assert_eq!(
            source.node_of("blue", "r5").unwrap().as_deref(),
            Some("10.9.0.5")
        );
        assert_eq!(source.node_of("red", "r5").unwrap(), None);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn impairments_take_the_words_of_koko_ip_link_impair() {
        let text = r#"{"uid": 3, "peer_pod": "r2", "local_intf": "e1", "peer_intf": "e1",
            "impair": {"delay": "20ms", "loss": "1%", "rate": "10mbit", "limit": 100}}"#;
        let l: LinkRecord = serde_json::from_str(text).unwrap();
        let what = l.impairment().unwrap().unwrap();
        assert_eq!(what.delay_ms, 20.0);
        assert_eq!(what.loss_pct, 1.0);
        assert_eq!(what.rate.unwrap().to_string(), "10mbit");
        assert_eq!(what.limit, 100);
        for (bad, says) in [
            (r#"{"dir": "ingress"}"#, "unknown impairment 'dir'"),
            (r#"{"loss": "150%"}"#, "loss"),
            (r#"{"rate": true}"#, "not a string or number"),
        ] {
            let l = LinkRecord {
                impair: Some(serde_json::from_str(bad).unwrap()),
                ..l.clone()
            };
            let err = validate("a", &[l]).unwrap_err().to_string();
            assert!(err.contains(says) && err.contains("'e1'"), "{bad}: {err}");
        }
    }

    #[test]
    fn validation_names_the_problem() {
        let l = LinkRecord {
            uid: 1,
            peer_pod: "b".into(),
            local_intf: "e1".into(),
            local_ip: "10.0.0.1/24".into(),
            peer_intf: "e1".into(),
            peer_ip: String::new(),
            mtu: None,
            impair: None,
        };
        assert!(validate("a", std::slice::from_ref(&l)).is_ok());
        let err = validate("a", &[l.clone(), l.clone()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("two links"), "{err}");
        let selfish = LinkRecord {
            peer_pod: "a".into(),
            ..l
        };
        assert!(validate("a", &[selfish]).is_err());
    }
}
