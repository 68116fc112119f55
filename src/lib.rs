//! koko: a container connector you can program.
//!
//! The library behind the `koko` binary. Data flows one way: text (command
//! line, koro grammar, script) becomes a typed request; the request names
//! [`ns::Namespace`] handles; [`net`] turns it into netlink requests on a
//! socket per namespace; what was created is recorded in a
//! [`journal::Journal`] so it can be undone.
//!
//! * [`ns`] — namespace handles, the setns window, `ip netns`-compatible names
//! * [`net`] — netlink per namespace: links, addresses, sysctls
//! * [`connect`] — the operations the CLI and scripts share
//! * [`ipcmd`] — the `ip`-style command language (koro, `ns.ip()`)
//! * [`inspect`] — what a namespace holds (`koko show`)
//! * [`journal`] — what a run created, and how to undo it
//! * [`cli`] — the command lines

pub mod chain;
pub mod cli;
pub mod connect;
pub mod error;
pub mod inspect;
pub mod ipcmd;
pub mod journal;
pub mod net;
pub mod ns;
pub mod plan;
pub mod probe;
pub mod script;

pub use error::{Error, Result};
