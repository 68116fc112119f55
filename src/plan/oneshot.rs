//! The one-shot grammar (the original koko's flags), parsed into a validated
//! [`CommandLine`]: the typed [`Action`] that [`crate::plan::execute`]
//! carries out, plus whether the caller asked for `--json`. It lives below
//! `cli/` so that scripts' `koko("...")` parses the very same way.
//!
//! ```text
//! koko ENDPOINT ENDPOINT            veth between two endpoints
//! koko ENDPOINT -x PARENT,REMOTE,VNI[,port=N][,mtu=N][,local=IP][,ttl=N][,learning=off]
//! koko ENDPOINT -V PARENT,VID       vlan
//! koko ENDPOINT -M PARENT,MODE      macvlan
//! koko DELETE...                    delete links
//! ENDPOINT := -d CONTAINER,LINK[,ITEM...] | -n NETNS,LINK[,ITEM...]
//!           | -p PID,LINK[,ITEM...] | -a PATH,LINK[,ITEM...] | -c LINK[,ITEM...]
//!           | -e CRI_ID,LINK[,ITEM...]   (a CRI container or pod sandbox)
//! DELETE   := -D CONTAINER,LINK | -N NETNS,LINK | -P PID,LINK | -A PATH,LINK | -C LINK | -E CRI_ID,LINK
//! ITEM     := ADDR/PREFIX | mirror:DIR:IFACE | mirror:DIR,IFACE
//! ```
//!
//! Parsing happens in two stages, as in ripgrep: the words become a list of
//! typed options (each checked on its own: addresses, names, numbers), then
//! the list is resolved into one plan (checked as a whole: how many endpoints,
//! no create/delete mix). Every error here is a usage error (exit 2) that
//! names the offending word. Unlike the original, which used getopt and
//! ignored what it did not understand, nothing is silently dropped.

use std::path::PathBuf;

use ipnet::IpNet;

use crate::error::{Error, Result};
use crate::net::addr::{check_assignable, parse_cidr};
use crate::net::link::{validate_name, MTU_RANGE};
use crate::ns::{named, NsSpec};

/// A create endpoint: where, which name, and what to put on the link.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointArg {
    pub ns: NsSpec,
    pub link: String,
    pub addrs: Vec<IpNet>,
    pub mirrors: Vec<MirrorArg>,
}

/// `mirror:DIR:IFACE`: copy IFACE's traffic in direction DIR out through the
/// new link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorArg {
    pub dir: MirrorDir,
    pub source: String,
}

pub use crate::net::tc::MirrorDir;

/// The link to create into a single endpoint (-x, -V, -M).
#[derive(Debug, Clone, PartialEq)]
pub enum TunnelArg {
    Vxlan(VxlanArg),
    Vlan { parent: String, id: u16 },
    Macvlan { parent: String, mode: MacvlanMode },
}

#[derive(Debug, Clone, PartialEq)]
pub struct VxlanArg {
    pub parent: String,
    pub remote: std::net::IpAddr,
    pub vni: u32,
    pub port: u16,
    pub mtu: Option<u32>,
    pub local: Option<std::net::IpAddr>,
    pub ttl: Option<u8>,
    pub learning: bool,
}

pub use crate::net::tunnel::MacvlanMode;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Veth {
        a: EndpointArg,
        b: EndpointArg,
        mtu: u32,
    },
    Tunnel {
        endpoint: EndpointArg,
        tunnel: TunnelArg,
    },
    Delete(Vec<(NsSpec, String)>),
    Help,
    Version,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommandLine {
    pub action: Action,
    pub json: bool,
}

/// One option as given, checked on its own.
enum Opt {
    Create(EndpointArg),
    Delete(NsSpec, String),
    Tunnel(char, TunnelArg),
    Mtu(u32),
    Json,
    Help,
    Version,
}

/// Parse the arguments after the program name.
pub fn parse(args: &[String]) -> Result<CommandLine> {
    let opts = lex(args)?;
    resolve(opts)
}

fn usage(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

fn lex(args: &[String]) -> Result<Vec<Opt>> {
    let mut opts = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if let Some(long) = arg.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            match name {
                "json" if attached.is_none() => opts.push(Opt::Json),
                "help" if attached.is_none() => opts.push(Opt::Help),
                "version" if attached.is_none() => opts.push(Opt::Version),
                "mtu" => {
                    let value = match attached {
                        Some(v) => v,
                        None => {
                            i += 1;
                            args.get(i - 1).cloned().ok_or_else(|| {
                                usage("option --mtu needs a value (e.g. --mtu 9000)")
                            })?
                        }
                    };
                    opts.push(Opt::Mtu(parse_mtu(&value, "--mtu")?));
                }
                _ => return Err(usage(format!("unknown option '{arg}'"))),
            }
            continue;
        }
        let mut chars = arg.chars();
        if chars.next() != Some('-') || arg.len() < 2 {
            return Err(usage(format!("unexpected argument '{arg}' (every endpoint starts with a flag, e.g. -n NETNS,LINK)")));
        }
        let flag = chars.next().expect("length checked");
        let attached: String = chars.collect();
        match flag {
            'h' | 'v' => {
                if !attached.is_empty() {
                    return Err(usage(format!("unknown option '{arg}'")));
                }
                opts.push(if flag == 'h' { Opt::Help } else { Opt::Version });
                continue;
            }
            'c' | 'C' | 'd' | 'D' | 'n' | 'N' | 'p' | 'P' | 'a' | 'A' | 'e' | 'E' | 'x' | 'X'
            | 'V' | 'M' => {}
            _ => return Err(usage(format!("unknown option '-{flag}'"))),
        }
        // Like getopt: the value may be attached (-nfoo,bar) or the next word.
        let value = if !attached.is_empty() {
            attached
        } else if i < args.len() {
            i += 1;
            args[i - 1].clone()
        } else {
            return Err(usage(format!(
                "option -{flag} needs a value: {}",
                flag_form(flag)
            )));
        };
        reject_colon_form(flag, &value)?;
        opts.push(lex_flag(flag, &value)?);
    }
    Ok(opts)
}

/// The value form each flag expects, for messages.
fn flag_form(flag: char) -> &'static str {
    match flag {
        'c' => "-c LINK[,ADDR/PREFIX...]",
        'C' => "-C LINK",
        'd' => "-d CONTAINER,LINK[,ADDR/PREFIX...]",
        'D' => "-D CONTAINER,LINK",
        'n' => "-n NETNS,LINK[,ADDR/PREFIX...]",
        'N' => "-N NETNS,LINK",
        'p' => "-p PID,LINK[,ADDR/PREFIX...]",
        'P' => "-P PID,LINK",
        'a' => "-a PATH,LINK[,ADDR/PREFIX...]",
        'A' => "-A PATH,LINK",
        'e' => "-e ID,LINK[,ADDR/PREFIX...]",
        'E' => "-E ID,LINK",
        'x' | 'X' => "-x PARENT,REMOTE,VNI[,port=N][,mtu=N]",
        'V' => "-V PARENT,VID",
        'M' => "-M PARENT,MODE",
        _ => "",
    }
}

/// The original's first syntax was `-d c1:link1:10.0.0.1/24`; it now panics
/// the Go binary. Recognise it and show the comma form instead.
fn reject_colon_form(flag: char, value: &str) -> Result<()> {
    if !value.contains(',') && value.contains(':') && !value.starts_with("mirror:") {
        let fields: Vec<&str> = value.split(':').collect();
        // Keep an IPv6 tail intact in the suggestion: only the first two
        // colons (or one, for -c) separate fields.
        let keep = if flag.eq_ignore_ascii_case(&'c') {
            1
        } else {
            2
        };
        let suggestion = if fields.len() > keep {
            let head = fields[..keep].join(",");
            let tail = fields[keep..].join(":");
            format!("{head},{tail}")
        } else {
            fields.join(",")
        };
        return Err(usage(format!(
            "'-{flag} {value}' uses the old colon form; fields are separated by commas now: -{flag} {suggestion}"
        )));
    }
    Ok(())
}

fn lex_flag(flag: char, value: &str) -> Result<Opt> {
    let fields: Vec<&str> = value.split(',').collect();
    match flag {
        'x' | 'X' => {
            return parse_vxlan(flag, &fields).map(|v| Opt::Tunnel(flag, TunnelArg::Vxlan(v)))
        }
        'V' => return parse_vlan(&fields).map(|t| Opt::Tunnel(flag, t)),
        'M' => return parse_macvlan(&fields).map(|t| Opt::Tunnel(flag, t)),
        _ => {}
    }
    let delete = flag.is_ascii_uppercase();
    let (ns, rest) = if flag.eq_ignore_ascii_case(&'c') {
        (NsSpec::Current, &fields[..])
    } else {
        if fields.len() < 2 {
            return Err(usage(format!(
                "'-{flag} {value}' has no link name; expected {}",
                flag_form(flag)
            )));
        }
        (parse_ns(flag, fields[0])?, &fields[1..])
    };
    let link = rest[0];
    validate_name(link).map_err(|e| usage(format!("-{flag} {value}: {e}")))?;
    if delete {
        if rest.len() > 1 {
            return Err(usage(format!(
                "'-{flag} {value}': delete takes only the namespace and the link name ({})",
                flag_form(flag)
            )));
        }
        return Ok(Opt::Delete(ns, link.to_string()));
    }
    let mut endpoint = EndpointArg {
        ns,
        link: link.to_string(),
        addrs: Vec::new(),
        mirrors: Vec::new(),
    };
    let mut items = rest[1..].iter();
    while let Some(item) = items.next() {
        if let Some(spec) = item.strip_prefix("mirror:") {
            // Both `mirror:DIR:IFACE` and the README's `mirror:DIR,IFACE`.
            let (dir, source) = match spec.split_once(':') {
                Some((d, s)) => (d, s.to_string()),
                None => {
                    let s = items.next().ok_or_else(|| {
                        usage(format!("-{flag} {value}: '{item}' names no interface to mirror (mirror:DIR:IFACE)"))
                    })?;
                    (spec, s.to_string())
                }
            };
            let dir: MirrorDir = dir
                .parse()
                .map_err(|e| usage(format!("-{flag} {value}: {e}")))?;
            validate_name(&source)
                .map_err(|e| usage(format!("-{flag} {value}: mirror source: {e}")))?;
            if source == endpoint.link {
                return Err(usage(format!(
                    "-{flag} {value}: cannot mirror '{source}' onto itself"
                )));
            }
            endpoint.mirrors.push(MirrorArg { dir, source });
        } else if item.is_empty() {
            return Err(usage(format!("-{flag} {value}: empty field")));
        } else {
            let net = parse_cidr(item).map_err(|e| usage(format!("-{flag} {value}: {e}")))?;
            check_assignable(net).map_err(|e| usage(format!("-{flag} {value}: {e}")))?;
            endpoint.addrs.push(net);
        }
    }
    Ok(Opt::Create(endpoint))
}

fn parse_ns(flag: char, field: &str) -> Result<NsSpec> {
    if field.is_empty() {
        return Err(usage(format!(
            "-{flag}: the namespace field is empty ({})",
            flag_form(flag)
        )));
    }
    Ok(match flag.to_ascii_lowercase() {
        'd' => NsSpec::Docker(field.to_string()),
        'e' => NsSpec::Cri(field.to_string()),
        'p' => NsSpec::Pid(
            field
                .parse::<u32>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| usage(format!("-{flag}: '{field}' is not a process id")))?,
        ),
        'a' => NsSpec::Path(PathBuf::from(field)),
        'n' if field.starts_with('/') => NsSpec::Path(PathBuf::from(field)), // vethcon's -n /var/run/netns/x
        'n' => {
            named::validate_name(field).map_err(|e| usage(format!("-{flag}: {e}")))?;
            NsSpec::Netns(field.to_string())
        }
        _ => unreachable!("namespace flags only"),
    })
}

fn parse_mtu(value: &str, what: &str) -> Result<u32> {
    value
        .parse::<u32>()
        .ok()
        .filter(|m| MTU_RANGE.contains(m))
        .ok_or_else(|| {
            usage(format!(
                "{what}: '{value}' is not an MTU ({} to {})",
                MTU_RANGE.start(),
                MTU_RANGE.end()
            ))
        })
}

fn parse_vxlan(flag: char, fields: &[&str]) -> Result<VxlanArg> {
    let form = flag_form(flag);
    if fields.len() < 3 {
        return Err(usage(format!(
            "-{flag} {}: expected {form}",
            fields.join(",")
        )));
    }
    validate_name(fields[0]).map_err(|e| usage(format!("-{flag}: parent: {e}")))?;
    let remote = fields[1].parse().map_err(|_| {
        usage(format!(
            "-{flag}: remote '{}' is not an IP address",
            fields[1]
        ))
    })?;
    let vni = fields[2]
        .parse::<u32>()
        .ok()
        .filter(|v| *v < (1 << 24))
        .ok_or_else(|| {
            usage(format!(
                "-{flag}: VNI '{}' is not a number from 0 to 16777215",
                fields[2]
            ))
        })?;
    let mut vx = VxlanArg {
        parent: fields[0].to_string(),
        remote,
        vni,
        port: 4789,
        mtu: None,
        local: None,
        ttl: None,
        learning: true,
    };
    let mut seen: Vec<&str> = Vec::new();
    for kv in &fields[3..] {
        let (key, val) = kv.split_once('=').ok_or_else(|| {
            usage(format!(
                "-{flag}: '{kv}' is not KEY=VALUE (port=, mtu=, local=, ttl=, learning=)"
            ))
        })?;
        // The original let the last one win; a key given twice is far more
        // likely a mistake than a wish.
        if seen.contains(&key) {
            return Err(usage(format!(
                "-{flag}: '{key}' is given twice ({}); give each option once",
                fields[3..]
                    .iter()
                    .filter(|f| f.split_once('=').map(|(k, _)| k) == Some(key))
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        seen.push(key);
        match key {
            "port" => {
                vx.port = val.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                    usage(format!(
                        "-{flag}: port '{val}' is not a UDP port (1 to 65535)"
                    ))
                })?
            }
            "mtu" => vx.mtu = Some(parse_mtu(val, &format!("-{flag} mtu="))?),
            "local" => {
                vx.local =
                    Some(val.parse().map_err(|_| {
                        usage(format!("-{flag}: local '{val}' is not an IP address"))
                    })?)
            }
            "ttl" => {
                vx.ttl = Some(val.parse().map_err(|_| {
                    usage(format!(
                        "-{flag}: ttl '{val}' is not a number from 0 to 255"
                    ))
                })?)
            }
            "learning" => {
                vx.learning = match val {
                    "on" | "true" | "1" => true,
                    "off" | "false" | "0" => false,
                    _ => return Err(usage(format!("-{flag}: learning '{val}' is not on or off"))),
                }
            }
            _ => {
                return Err(usage(format!(
                    "-{flag}: unknown key '{key}' (known: port, mtu, local, ttl, learning)"
                )))
            }
        }
    }
    Ok(vx)
}

fn parse_vlan(fields: &[&str]) -> Result<TunnelArg> {
    if fields.len() != 2 {
        return Err(usage(format!(
            "-V {}: expected -V PARENT,VID",
            fields.join(",")
        )));
    }
    validate_name(fields[0]).map_err(|e| usage(format!("-V: parent: {e}")))?;
    let id = fields[1]
        .parse::<u16>()
        .ok()
        .filter(|v| (1..=4094).contains(v))
        .ok_or_else(|| {
            usage(format!(
                "-V: VLAN id '{}' is not a number from 1 to 4094",
                fields[1]
            ))
        })?;
    Ok(TunnelArg::Vlan {
        parent: fields[0].to_string(),
        id,
    })
}

fn parse_macvlan(fields: &[&str]) -> Result<TunnelArg> {
    if fields.len() != 2 {
        return Err(usage(format!(
            "-M {}: expected -M PARENT,MODE",
            fields.join(",")
        )));
    }
    validate_name(fields[0]).map_err(|e| usage(format!("-M: parent: {e}")))?;
    let mode: MacvlanMode = fields[1].parse().map_err(|e| usage(format!("-M: {e}")))?;
    Ok(TunnelArg::Macvlan {
        parent: fields[0].to_string(),
        mode,
    })
}

fn resolve(opts: Vec<Opt>) -> Result<CommandLine> {
    let mut json = false;
    let mut mtu = None;
    let mut creates = Vec::new();
    let mut deletes = Vec::new();
    let mut tunnels: Vec<(char, TunnelArg)> = Vec::new();
    let mut help = false;
    let mut version = false;
    for opt in opts {
        match opt {
            Opt::Create(e) => creates.push(e),
            Opt::Delete(ns, link) => deletes.push((ns, link)),
            Opt::Tunnel(flag, t) => tunnels.push((flag, t)),
            Opt::Mtu(m) => {
                if mtu.replace(m).is_some() {
                    return Err(usage("--mtu given twice"));
                }
            }
            Opt::Json => json = true,
            Opt::Help => help = true,
            Opt::Version => version = true,
        }
    }
    let action = if help {
        Action::Help
    } else if version {
        Action::Version
    } else if !deletes.is_empty() {
        if !creates.is_empty() || !tunnels.is_empty() || mtu.is_some() {
            return Err(usage(
                "create and delete flags cannot be mixed: delete with -D/-N/-P/-A/-C/-E alone, create with lower-case flags",
            ));
        }
        Action::Delete(deletes)
    } else if tunnels.len() > 1 {
        return Err(usage(format!(
            "only one of -x/-V/-M per command (got -{} and -{})",
            tunnels[0].0, tunnels[1].0
        )));
    } else if let Some((flag, tunnel)) = tunnels.pop() {
        if mtu.is_some() {
            return Err(usage(format!(
                "--mtu is for veth pairs; give -{flag} its own mtu= where supported"
            )));
        }
        match creates.len() {
            1 => Action::Tunnel {
                endpoint: creates.pop().expect("one"),
                tunnel,
            },
            0 => {
                return Err(usage(format!(
                    "-{flag} needs one endpoint to put the new link in (e.g. -n NETNS,LINK)"
                )))
            }
            n => {
                return Err(usage(format!(
                    "-{flag} takes exactly one endpoint, got {n}"
                )))
            }
        }
    } else {
        match creates.len() {
            0 => return Err(usage("nothing to do: give two endpoints to connect, or a link to delete")),
            1 => {
                return Err(usage(format!(
                    "a single endpoint ({} in {}) with nothing to do: give a second endpoint for a veth, or -x/-V/-M",
                    creates[0].link, creates[0].ns
                )))
            }
            2 => {
                let b = creates.pop().expect("two");
                let a = creates.pop().expect("two");
                Action::Veth { a, b, mtu: mtu.unwrap_or(1500) }
            }
            n => return Err(usage(format!("a veth has two ends, but {n} endpoints were given"))),
        }
    };
    Ok(CommandLine { action, json })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<CommandLine> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse(&args)
    }

    fn err(line: &str) -> String {
        let e = p(line).expect_err(line);
        assert_eq!(e.exit_code(), 2, "{line}: {e}");
        e.to_string()
    }

    #[test]
    fn the_readme_veth_forms_parse() {
        let plan = p("-n testns1,link1,192.168.1.1/24 -n testns2,link2,192.168.1.2/24").unwrap();
        let Action::Veth { a, b, mtu } = plan.action else {
            panic!()
        };
        assert_eq!(a.ns, NsSpec::Netns("testns1".into()));
        assert_eq!(b.link, "link2");
        assert_eq!(a.addrs[0].to_string(), "192.168.1.1/24");
        assert_eq!(mtu, 1500);
        let plan = p("-d centos1,link1,192.168.1.1/24,2001:DB8::1/64 -d centos2,link2,192.168.1.2/24,2001:DB8::2/64").unwrap();
        let Action::Veth { a, .. } = plan.action else {
            panic!()
        };
        assert_eq!(a.addrs.len(), 2);
        assert_eq!(a.ns, NsSpec::Docker("centos1".into()));
    }

    #[test]
    fn any_number_of_addresses() {
        let plan = p("-c l1,10.0.0.1/24,10.0.1.1/24,10.0.2.1/24,fd00::1/64,fd00:1::1/64 -p 42,l2")
            .unwrap();
        let Action::Veth { a, b, .. } = plan.action else {
            panic!()
        };
        assert_eq!(a.ns, NsSpec::Current);
        assert_eq!(a.addrs.len(), 5);
        assert_eq!(b.ns, NsSpec::Pid(42));
    }

    #[test]
    fn attached_values_work_like_getopt() {
        let plan = p("-nfoo,bar -nbaz,qux --mtu=9000 --json").unwrap();
        assert!(plan.json);
        let Action::Veth { a, mtu, .. } = plan.action else {
            panic!()
        };
        assert_eq!(a.link, "bar");
        assert_eq!(mtu, 9000);
    }

    #[test]
    fn deletes_parse() {
        assert_eq!(
            p("-N ns1,link1").unwrap().action,
            Action::Delete(vec![(NsSpec::Netns("ns1".into()), "link1".into())])
        );
        assert_eq!(
            p("-C link1").unwrap().action,
            Action::Delete(vec![(NsSpec::Current, "link1".into())])
        );
    }

    #[test]
    fn vethcon_paths_and_a_flag() {
        let Action::Veth { a, b, .. } = p("-n /var/run/netns/x,l1 -a /proc/1/ns/net,l2")
            .unwrap()
            .action
        else {
            panic!()
        };
        assert_eq!(a.ns, NsSpec::Path("/var/run/netns/x".into()));
        assert_eq!(b.ns, NsSpec::Path("/proc/1/ns/net".into()));
    }

    #[test]
    fn mirror_both_spellings() {
        for line in [
            "-n a,l1,mirror:ingress:eth0 -x eth1,10.1.1.1,1",
            "-n a,l1,mirror:ingress,eth0 -x eth1,10.1.1.1,1",
        ] {
            let Action::Tunnel { endpoint, .. } = p(line).unwrap().action else {
                panic!()
            };
            assert_eq!(
                endpoint.mirrors,
                vec![MirrorArg {
                    dir: MirrorDir::Ingress,
                    source: "eth0".into()
                }]
            );
        }
        assert!(err("-n a,l1,mirror:sideways:eth0 -n b,l2").contains("'sideways'"));
        assert!(err("-n a,l1,mirror:both:l1 -n b,l2").contains("onto itself"));
    }

    #[test]
    fn vxlan_vlan_macvlan() {
        let Action::Tunnel {
            tunnel: TunnelArg::Vxlan(vx),
            ..
        } = p("-n a,vx0 -X eth1,10.1.1.1,42,port=8472,mtu=1400,learning=off")
            .unwrap()
            .action
        else {
            panic!()
        };
        assert_eq!(
            (vx.vni, vx.port, vx.mtu, vx.learning),
            (42, 8472, Some(1400), false)
        );
        assert!(err("-n a,vx0 -x eth1,10.1.1.1,16777216").contains("VNI"));
        assert!(err("-n a,vx0 -x eth1,10.1.1.1,abc").contains("'abc'"));
        assert!(err("-n a,vx0 -x eth1,10.1.1.1,1,port=0").contains("port"));
        assert!(err("-n a,vx0 -x eth1,10.1.1.1,1,mtu=x").contains("mtu"));
        assert!(err("-n a,vx0 -x eth1,10.1.1.1,1,color=red").contains("unknown key 'color'"));
        assert!(err("-n a,vx0 -x eth1,host1,1").contains("'host1' is not an IP"));
        assert!(err("-n a,v -V eth1,4095").contains("1 to 4094"));
        assert!(err("-n a,v -V eth1,0").contains("1 to 4094"));
        assert!(err("-n a,m -M eth1,fancy").contains("default, private, vepa, bridge, passthru"));
        let Action::Tunnel {
            tunnel: TunnelArg::Macvlan { mode, .. },
            ..
        } = p("-n a,m -M eth1,BRIDGE").unwrap().action
        else {
            panic!()
        };
        assert_eq!(mode, MacvlanMode::Bridge);
        let twice = err("-n a,vx0 -x eth1,10.1.1.1,1,port=4789,port=4790");
        assert!(
            twice.contains("'port' is given twice") && twice.contains("port=4789, port=4790"),
            "{twice}"
        );
        assert!(err("-n a,vx0 -x eth1,10.1.1.1,1,learning=on,learning=off").contains("'learning'"));
        assert!(err("-n a,l1,0.0.0.0/0 -n b,l2").contains("silently ignores"));
    }

    #[test]
    fn bad_input_is_a_usage_error_naming_the_word() {
        assert!(err("-n a,l1,10.0.0.300/24 -n b,l2").contains("10.0.0.300"));
        assert!(err("-n a,l1,10.0.0.1 -n b,l2").contains("no prefix length"));
        assert!(err("-n a,l1,10.0.0.1/33 -n b,l2").contains("'33'"));
        assert!(err("-n a,abcdefghijklmnop -n b,l2").contains("at most 15"));
        assert!(
            err("-n a, -n b,l2").contains("no link name") || err("-n a, -n b,l2").contains("empty")
        );
        assert!(err("-n a,x/y -n b,l2").contains("'/'"));
        assert!(err("-n a,x\ty -n b,l2").contains("x"));
        let colon = err("-d c1:link1:10.0.0.1/24 -d c2:link2:10.0.0.2/24");
        assert!(colon.contains("-d c1,link1,10.0.0.1/24"), "{colon}");
        assert!(err("-q foo").contains("unknown option '-q'"));
        assert!(err("--frobnicate").contains("'--frobnicate'"));
        assert!(err("-n a,l1").contains("single endpoint"));
        assert!(err("-n a,l1 -n b,l2 -n c,l3").contains("3 endpoints"));
        assert!(err("-N a,l1 -n b,l2").contains("cannot be mixed"));
        assert!(err("-p abc,l1 -n b,l2").contains("'abc' is not a process id"));
        assert!(err("-p -5,l1 -n b,l2").contains("process id"));
        assert!(err("").contains("nothing to do"));
        assert!(err("-n").contains("needs a value"));
        assert!(err("-N a,l1,10.0.0.1/24").contains("only the namespace and the link"));
        assert!(err("stray").contains("unexpected argument 'stray'"));
        assert!(err("--mtu 20 -n a,b -n c,d").contains("MTU"));
    }

    #[test]
    fn help_and_version() {
        assert_eq!(p("-h").unwrap().action, Action::Help);
        assert_eq!(p("-v").unwrap().action, Action::Version);
    }
}
