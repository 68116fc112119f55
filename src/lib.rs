//! koko: a container connector you can program.
//!
//! The library behind the `koko` binary. Data flows one way: text (command
//! line, koro grammar, script) becomes a typed request; the request names
//! [`ns::Namespace`] handles; [`net`] turns it into netlink requests on a
//! socket per namespace; what was created is recorded in a
//! [`journal::Journal`] so it can be undone.
//!
//! * [`cli`] — argv, help, printing and exit codes (no behaviour)
//! * [`script`] — the Rhai runtime (bindings, runner, REPL)
//! * [`suite`] — `koko test`: test discovery, a sandbox (private network
//!   and mount namespace) per test, parallel runs, JUnit/TAP reports
//! * [`cni`] — the CNI plugin (`koko cni`, `koko-cni`): Kubernetes places
//!   the pods, koko wires them from a topology
//! * [`plan`] — both command grammars as typed requests, executed into a
//!   serialisable report: what the CLI and scripts share
//! * [`connect`] — operations: veth, tunnels, mirrors, delete, forwarding
//! * [`ipcmd`] — the `ip`-style command language (koro, `ns.ip()`)
//! * [`chain`] — a chain of namespaces built in bulk
//! * [`inspect`] — what a namespace holds (`koko show`)
//! * [`graph`] — the live wiring of every namespace and container, read
//!   from the kernel, as DOT, Mermaid, JSON or SVG (`koko graph`)
//! * [`rewire`] — a lab kept wired while its containers and namespaces
//!   restart (`--keep-wired`): its desired state, watching, repairs
//! * [`journal`] — what a run created, and how to undo it
//! * [`runs`] — the runs whose journal is on disk (/run/koko): alive or dead
//! * [`probe`] — reachability and traffic checks inside a namespace
//! * [`capture`] — packet capture into pcap files (a packet socket in the
//!   link's namespace, read on a thread of its own)
//! * [`net`] — the only place netlink messages are built: links, addresses,
//!   routes, tc, nsids, sysctls, batches, event sources
//! * [`ns`] — namespace handles, the setns window, `ip netns`-compatible names
//! * [`interrupt`] — SIGINT/SIGTERM/SIGHUP as a flag every wait checks
//! * [`memory`] — the byte count behind `koko run --max-memory`
//! * [`output`] — stdout writes that fail instead of panicking; numbers
//!   rounded for people
//! * [`progress`] — a progress line on stderr, when it is a terminal
//!
//! Layers only call down (cli, script → plan → connect/ipcmd/inspect →
//! journal → net → ns); `.ci/layering.sh` checks the two rules that are
//! easy to break by accident.

pub mod capture;
pub mod chain;
pub mod cli;
pub mod cni;
pub mod connect;
pub mod error;
pub mod graph;
pub mod impair;
pub mod inspect;
pub mod interrupt;
pub mod ipcmd;
pub mod journal;
pub mod memory;
pub mod net;
pub mod ns;
pub mod output;
pub mod plan;
pub mod probe;
pub mod progress;
pub mod rewire;
pub mod runs;
pub mod script;
pub mod suite;

pub use error::{Error, Result};
