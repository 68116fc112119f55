//! The link monitor under a flood of notifications: a link-down is never
//! lost, even when the kernel drops notifications because koko did not read
//! them in time (ENOBUFS); the monitor resynchronises with a dump.

use crate::support::script::{assert_clean, run_env, script};
use crate::support::Sandbox;

#[test]
fn a_link_down_is_not_lost_when_notifications_overflow() {
    let sb = Sandbox::new();
    // A tiny receive buffer: a few notifications fit, the flood does not.
    let r = run_env(
        &sb,
        &["--cleanup", &script("monitor_flood.rhai"), "--", "150"],
        &[
            ("KOKO_TEST_MONITOR_RCVBUF", "4096"),
            ("KOKO_DEBUG_EVENTS", "1"),
        ],
    );
    r.ok();
    assert!(
        r.stderr.contains("notifications lost, resynchronising"),
        "the flood did not overflow the monitor, so this proves nothing:\n{}",
        r.stderr
    );
    assert_eq!(r.line("fired:"), r#"fired: ["link_gone"]"#, "{}", r.stderr);
    assert_clean(&sb, "after the flood");
}

#[test]
fn with_the_default_buffer_the_same_flood_needs_no_resync() {
    let sb = Sandbox::new();
    let r = run_env(
        &sb,
        &["--cleanup", &script("monitor_flood.rhai"), "--", "150"],
        &[("KOKO_DEBUG_EVENTS", "1")],
    );
    r.ok();
    assert!(
        !r.stderr.contains("notifications lost"),
        "the default buffer overflowed on 300 veth pairs:\n{}",
        r.stderr
    );
    // Every notification arrives: the kernel announces the deleted link as
    // down (NEWLINK without IFF_UP) before its DELLINK, and the hook fires
    // once, on the first.
    assert_eq!(r.line("fired:"), r#"fired: ["link_down"]"#);
    assert_clean(&sb, "after the flood");
}
