//! koko as a CNI plugin (`koko cni`, or the binary installed as `koko-cni`).
//!
//! CNI is the contract between a container runtime (containerd, CRI-O,
//! podman's CNI backend, ...) and network plugins. The runtime runs the
//! plugin binary once per operation: the operation and the container are
//! in environment variables (`CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`,
//! `CNI_IFNAME`, `CNI_ARGS`, `CNI_PATH`), the network configuration is JSON
//! on stdin, and the answer is JSON on stdout: a result for ADD, the
//! supported versions for VERSION, nothing for DEL/CHECK/STATUS/GC, or an
//! error object `{"cniVersion", "code", "msg", "details"}` with a non-zero
//! exit.
//!
//! koko runs *chained* after the cluster's primary plugin, like meshnet-cni:
//! it never touches the pod's primary interface (`CNI_IFNAME`); it reads
//! the `prevResult` the previous plugin produced, adds the interfaces and
//! addresses of the lab links it wired, and answers that, in the layout of
//! the version the runtime asked for (0.3.0 through 1.1.0: before 1.0.0
//! every IP carries `"version"`).
//!
//! Which links a pod gets comes from the topology ([`topology`]); how they
//! are wired, and why DEL is idempotent and GC safe, is [`wire`].
//!
//! Error codes are the spec's: 1 incompatible version, 2 unsupported field,
//! 3 container unknown, 4 invalid environment, 5 I/O, 6 cannot decode,
//! 7 invalid network config, 11 try again later, 50 plugin not available
//! (STATUS); koko's own start at 100: 100 the kernel refused, 101 a CHECK
//! found a link or address missing.

pub mod topology;
pub mod wire;

use std::io::{Read, Write};
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::error::Error;

/// The versions koko answers in.
pub const SUPPORTED: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The newest version: VERSION's `cniVersion`.
pub const LATEST: &str = "1.1.0";

/// The state directory when the network config names none.
pub const DEFAULT_STATE_DIR: &str = "/run/koko/cni";

/// A CNI error: the spec's code, a message and details.
#[derive(Debug, Clone, PartialEq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// The error object, in the config's version.
    pub fn to_json(&self, version: &str) -> Value {
        let mut v = json!({"cniVersion": version, "code": self.code, "msg": self.msg});
        if !self.details.is_empty() {
            v["details"] = json!(self.details);
        }
        v
    }
}

impl From<Error> for CniError {
    fn from(e: Error) -> CniError {
        let code = match &e {
            Error::Invalid(_) => 7,
            Error::NotSupported(_) => 2,
            Error::NotFound { .. } if e.is_namespace_not_found() => 3,
            Error::Io { .. } => 5,
            _ => 100,
        };
        CniError {
            code,
            msg: e.to_string(),
            details: e.kind().to_string(),
        }
    }
}

pub type CniResult<T> = std::result::Result<T, CniError>;

/// The operation the runtime asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub fn parse(word: &str) -> CniResult<Command> {
        Ok(match word {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            "" => return Err(CniError::new(4, "CNI_COMMAND is not set")),
            other => return Err(CniError::new(4, format!("unknown CNI_COMMAND '{other}'"))),
        })
    }
}

/// The environment of one invocation.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    /// CNI_ARGS, `K=V;K=V`.
    pub args: Vec<(String, String)>,
}

impl Env {
    /// Read from this process's environment.
    pub fn from_process() -> Env {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        Env {
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS"),
            ifname: var("CNI_IFNAME"),
            args: parse_args(&var("CNI_ARGS")),
        }
    }

    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The pod's name: `K8S_POD_NAME` (Kubernetes runtimes and podman set
    /// it), else the container id.
    pub fn pod(&self) -> String {
        match self.arg("K8S_POD_NAME") {
            Some(p) if !p.is_empty() => p.to_string(),
            _ => self.container_id.clone(),
        }
    }

    /// The pod's Kubernetes namespace: `K8S_POD_NAMESPACE`, else
    /// `default` (as Kubernetes does for a pod that names none). A pod is
    /// this and its name; its peers are in the same namespace.
    pub fn pod_namespace(&self) -> String {
        match self.arg("K8S_POD_NAMESPACE") {
            Some(ns) if !ns.is_empty() => ns.to_string(),
            _ => "default".to_string(),
        }
    }

    fn require(&self, what: &str, value: &str) -> CniResult<()> {
        if value.is_empty() {
            return Err(CniError::new(4, format!("{what} is not set")));
        }
        Ok(())
    }
}

/// `K=V;K=V` (unknown keys are fine: koko reads only what it needs).
pub fn parse_args(text: &str) -> Vec<(String, String)> {
    text.split(';')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// koko's part of the network config.
#[derive(Debug, Clone)]
pub struct NetConf {
    pub version: String,
    pub name: String,
    pub topology: Option<PathBuf>,
    pub state_dir: PathBuf,
    /// This node's underlay address, and the interface it is on.
    pub node_ip: Option<String>,
    pub underlay: Option<String>,
    pub mtu: Option<u32>,
    /// A cross-node link's VNI is `vni_base + uid`.
    pub vni_base: u32,
    pub prev_result: Option<Value>,
    pub raw: Value,
}

impl NetConf {
    pub fn parse(text: &str) -> CniResult<NetConf> {
        let raw: Value = serde_json::from_str(text)
            .map_err(|e| CniError::new(6, format!("the network config is not JSON: {e}")))?;
        if !raw.is_object() {
            return Err(CniError::new(6, "the network config is not a JSON object"));
        }
        let version = raw["cniVersion"].as_str().unwrap_or("").to_string();
        let string = |k: &str| -> CniResult<Option<String>> {
            match &raw[k] {
                Value::Null => Ok(None),
                Value::String(s) => Ok(Some(s.clone())),
                other => Err(CniError::new(
                    7,
                    format!("network config: \"{k}\" must be a string, not {other}"),
                )),
            }
        };
        let number = |k: &str| -> CniResult<Option<u32>> {
            match &raw[k] {
                Value::Null => Ok(None),
                v => v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| {
                        CniError::new(
                            7,
                            format!("network config: \"{k}\" must be a number, not {v}"),
                        )
                    }),
            }
        };
        Ok(NetConf {
            name: string("name")?.unwrap_or_default(),
            topology: string("topology")?.map(PathBuf::from),
            state_dir: string("stateDir")?
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            node_ip: string("nodeIP")?,
            underlay: string("underlay")?,
            mtu: number("mtu")?,
            vni_base: number("vniBase")?.unwrap_or(5000),
            prev_result: match &raw["prevResult"] {
                Value::Null => None,
                v => Some(v.clone()),
            },
            version,
            raw,
        })
    }

    /// Reject a version koko cannot answer in (code 1), and operations
    /// newer than the config's version.
    fn check_version(&self, command: Command) -> CniResult<()> {
        if !SUPPORTED.contains(&self.version.as_str()) {
            return Err(CniError::new(
                1,
                format!(
                    "koko-cni answers in CNI versions {}, not '{}'",
                    SUPPORTED.join(", "),
                    self.version
                ),
            ));
        }
        let at_least = |v: &str| version_key(&self.version) >= version_key(v);
        let needs = match command {
            Command::Check => Some("0.4.0"),
            Command::Status | Command::Gc => Some("1.1.0"),
            _ => None,
        };
        if let Some(v) = needs {
            if !at_least(v) {
                return Err(CniError::new(
                    1,
                    format!(
                        "{command:?} needs CNI version {v} or newer; the config says {}",
                        self.version
                    ),
                ));
            }
        }
        Ok(())
    }

    fn topology(&self) -> CniResult<topology::Source> {
        self.topology
            .as_ref()
            .map(topology::Source::new)
            .ok_or_else(|| {
                CniError::new(
                    7,
                    "the network config names no \"topology\" (a file or directory)",
                )
            })
    }
}

/// "1.0.0" -> (1, 0, 0), for comparisons.
fn version_key(v: &str) -> (u32, u32, u32) {
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}

/// An interface koko added, for the result.
#[derive(Debug, Clone)]
pub struct Added {
    pub name: String,
    pub mac: Option<String>,
    pub addrs: Vec<ipnet::IpNet>,
}

/// The ADD result: `prev` (or an empty result) with `added` appended, in
/// `version`'s layout.
pub fn build_result(version: &str, prev: Option<&Value>, netns: &str, added: &[Added]) -> Value {
    let mut result = match prev {
        Some(p) if p.is_object() => p.clone(),
        _ => json!({}),
    };
    result["cniVersion"] = json!(version);
    let old_layout = version_key(version) < (1, 0, 0);
    if !result["interfaces"].is_array() {
        result["interfaces"] = json!([]);
    }
    if !result["ips"].is_array() {
        result["ips"] = json!([]);
    }
    for a in added {
        let interfaces = result["interfaces"].as_array_mut().expect("an array");
        let index = interfaces.len();
        let mut iface = json!({"name": a.name, "sandbox": netns});
        if let Some(mac) = &a.mac {
            iface["mac"] = json!(mac);
        }
        interfaces.push(iface);
        let ips = result["ips"].as_array_mut().expect("an array");
        for net in &a.addrs {
            let mut ip = json!({"address": net.to_string(), "interface": index});
            if old_layout {
                ip["version"] = json!(if net.addr().is_ipv4() { "4" } else { "6" });
            }
            ips.push(ip);
        }
    }
    // Layouts differ only in "version" on each IP: drop it from a 1.x
    // answer (a 0.x prevResult converted up), add it to a 0.x one.
    if let Some(ips) = result["ips"].as_array_mut() {
        for ip in ips {
            if old_layout {
                if ip["version"].is_null() {
                    let v6 = ip["address"].as_str().unwrap_or("").contains(':');
                    ip["version"] = json!(if v6 { "6" } else { "4" });
                }
            } else if let Some(o) = ip.as_object_mut() {
                o.remove("version");
            }
        }
    }
    result
}

/// Carry out one invocation: `command` with `env` and the config text.
/// Returns what to print on stdout (nothing for DEL, CHECK, STATUS, GC).
pub fn execute(command: Command, env: &Env, stdin: &str) -> CniResult<Option<Value>> {
    if command == Command::Version {
        return Ok(Some(
            json!({"cniVersion": LATEST, "supportedVersions": SUPPORTED}),
        ));
    }
    let conf = NetConf::parse(stdin)?;
    conf.check_version(command)?;
    match command {
        Command::Add => {
            env.require("CNI_CONTAINERID", &env.container_id)?;
            env.require("CNI_NETNS", &env.netns)?;
            env.require("CNI_IFNAME", &env.ifname)?;
            let source = conf.topology()?;
            let added = wire::add(&conf, &source, env)?;
            Ok(Some(build_result(
                &conf.version,
                conf.prev_result.as_ref(),
                &env.netns,
                &added,
            )))
        }
        Command::Del => {
            env.require("CNI_CONTAINERID", &env.container_id)?;
            wire::del(&conf, env)?;
            Ok(None)
        }
        Command::Check => {
            env.require("CNI_CONTAINERID", &env.container_id)?;
            env.require("CNI_NETNS", &env.netns)?;
            if conf.prev_result.is_none() {
                return Err(CniError::new(7, "CHECK needs the prevResult of the ADD"));
            }
            let source = conf.topology()?;
            wire::check(&conf, &source, env)?;
            Ok(None)
        }
        Command::Status => {
            let fail = |e: Error| CniError::new(50, e.to_string());
            conf.topology()?.check().map_err(fail)?;
            wire::status(&conf).map_err(fail)?;
            Ok(None)
        }
        Command::Gc => {
            let valid = valid_attachments(&conf.raw)?;
            wire::gc(&conf, &valid)?;
            Ok(None)
        }
        Command::Version => unreachable!("answered above"),
    }
}

/// The container ids of GC's `cni.dev/valid-attachments`.
fn valid_attachments(raw: &Value) -> CniResult<Vec<String>> {
    match &raw["cni.dev/valid-attachments"] {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|a| {
                a["containerID"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| {
                        CniError::new(7, format!("a valid attachment without containerID: {a}"))
                    })
            })
            .collect(),
        other => Err(CniError::new(
            7,
            format!("\"cni.dev/valid-attachments\" must be a list, not {other}"),
        )),
    }
}

/// The plugin's entry point: read the environment and stdin, act, print,
/// return the exit code.
pub fn main() -> i32 {
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    let mut stdin = String::new();
    let command = Command::parse(&command);
    let read = if matches!(command, Ok(Command::Version)) {
        // VERSION's config is optional; never wait on a terminal for it.
        Ok(0)
    } else {
        std::io::stdin().read_to_string(&mut stdin)
    };
    let version = serde_json::from_str::<Value>(&stdin)
        .ok()
        .and_then(|v| v["cniVersion"].as_str().map(str::to_string))
        .filter(|v| SUPPORTED.contains(&v.as_str()))
        .unwrap_or_else(|| LATEST.to_string());
    let outcome = match (command, read) {
        (Err(e), _) => Err(e),
        (_, Err(e)) => Err(CniError::new(5, format!("reading the network config: {e}"))),
        (Ok(c), Ok(_)) => execute(c, &Env::from_process(), &stdin),
    };
    let mut out = std::io::stdout().lock();
    match outcome {
        Ok(Some(v)) => {
            let _ = writeln!(out, "{v}");
            0
        }
        Ok(None) => 0,
        Err(e) => {
            let _ = writeln!(out, "{}", e.to_json(&version));
            let _ = writeln!(std::io::stderr(), "koko-cni: {}", e.msg);
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_args_split_into_pairs() {
        let args = parse_args("IgnoreUnknown=1;K8S_POD_NAME=r1;K8S_POD_NAMESPACE=lab");
        assert_eq!(args.len(), 3);
        let env = Env {
            container_id: "c1".into(),
            args,
            ..Env::default()
        };
        assert_eq!(env.pod(), "r1");
        assert_eq!(env.pod_namespace(), "lab");
        assert_eq!(
            Env {
                args: parse_args("K8S_POD_NAME=r1"),
                ..Env::default()
            }
            .pod_namespace(),
            "default"
        );
        assert_eq!(
            Env {
                container_id: "c1".into(),
                ..Env::default()
            }
            .pod(),
            "c1"
        );
    }

    #[test]
    fn results_take_the_layout_of_the_asked_version() {
        let prev = json!({"cniVersion": "0.4.0", "interfaces": [{"name": "eth0"}],
            "ips": [{"version": "4", "address": "10.88.0.2/16", "interface": 0}]});
        let added = [Added {
            name: "e1".into(),
            mac: None,
            addrs: vec!["10.0.0.1/24".parse().unwrap()],
        }];
        let old = build_result("0.4.0", Some(&prev), "/run/netns/x", &added);
        assert_eq!(old["ips"][1]["version"], "4");
        assert_eq!(old["ips"][1]["interface"], 1);
        assert_eq!(old["interfaces"][1]["name"], "e1");
        let new = build_result("1.0.0", Some(&prev), "/run/netns/x", &added);
        assert!(new["ips"][0].get("version").is_none());
        assert_eq!(new["cniVersion"], "1.0.0");
    }

    #[test]
    fn versions_are_checked() {
        let conf = NetConf::parse(r#"{"cniVersion": "0.2.0", "name": "n"}"#).unwrap();
        assert_eq!(conf.check_version(Command::Add).unwrap_err().code, 1);
        let conf = NetConf::parse(r#"{"cniVersion": "1.0.0", "name": "n"}"#).unwrap();
        assert_eq!(conf.check_version(Command::Gc).unwrap_err().code, 1);
        assert!(conf.check_version(Command::Check).is_ok());
        assert_eq!(NetConf::parse("nope").unwrap_err().code, 6);
        assert_eq!(NetConf::parse(r#"{"mtu": "x"}"#).unwrap_err().code, 7);
    }
}
