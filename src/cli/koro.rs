//! The koro command line: `koko ip TARGET COMMAND...`, or `koro TARGET
//! COMMAND...` when the binary is invoked under that name (a symlink).
//!
//! TARGET names the namespace the way the original koro did; COMMAND is the
//! `ip`-style language of [`crate::ipcmd`]. Both are parsed by
//! [`crate::plan::koro`] and carried out by [`crate::plan::execute`]; this
//! module holds the help text and prints. Usage errors are found before
//! anything is looked up.

use serde_json::json;

use super::Output;
use crate::error::Result;
use crate::ns;
use crate::plan::{self, Request};

pub const HELP: &str = "\
koro: addresses, routes and link state inside a namespace

Usage:
  koko ip TARGET COMMAND... [--json]
  koro TARGET COMMAND... [--json]          (koko invoked as `koro`)

TARGET:
  docker NAME      a Docker (or Podman) container, by name or id
  cri ID           a CRI (containerd, CRI-O) container or pod sandbox, by id or unique prefix
  netns PATH       a namespace file, e.g. /run/netns/blue or /proc/42/ns/net
  ipnetns NAME     an `ip netns` namespace (/run/netns/NAME)
  pid PID          the network namespace of process PID
  host | current   koko's own namespace

COMMAND:
  address add|del ADDR/PREFIX dev IF
  route add|del|replace PREFIX|default [via GW] [dev IF] [metric N] [table N]
  link set IF up|down|mtu N
  link impair IF [delay T] [jitter T] [loss P%] [rate R] [duplicate P%]
       [corrupt P%] [reorder P%] [limit N] [dir egress|ingress|both]
  link impair IF clear             (every impairment koko set, both directions)
  link blackhole IF on|off         (drop everything both ways, both ends stay up)
  sysctl net.KEY=VALUE
  forwarding on|off                (IPv4 and IPv6)

Examples:
  koro docker client address add 10.0.1.1/24 dev link1
  koro docker client route add default via 10.0.1.2 dev link1
  koko ip ipnetns firewall route add 10.0.3.0/24 via 10.0.2.2 dev link3
  koko ip pid 4242 link set link5 mtu 1400
  koko ip netns /run/netns/router sysctl net.ipv4.ip_forward=1
  koko ip ipnetns client link impair link1 delay 20ms jitter 5ms loss 1% rate 10mbit
";

/// Run one koro command; `args` are the words after `ip` (or after the
/// program name when invoked as `koro`).
pub fn main(args: &[String]) -> i32 {
    let json = args.iter().any(|a| a == "--json");
    let words: Vec<String> = args.iter().filter(|a| *a != "--json").cloned().collect();
    // Help only as the first word: anywhere else `-h` is a value (a link
    // may be called `-h`), and a value must never turn a command into a
    // help text that exits 0.
    if matches!(words.first().map(String::as_str), Some("-h" | "--help")) {
        return super::finish(
            Ok(Output {
                lines: vec![HELP.trim_end().into()],
                json: json!({"ok": true, "help": HELP}),
            }),
            json,
        );
    }
    super::finish_printed(run(&words, json), json)
}

fn run(words: &[String], json: bool) -> Result<()> {
    let request = plan::koro::parse(words)?;
    ns::check_privileges()?;
    super::execute(Request::Koro(request), json)
}
