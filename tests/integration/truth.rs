//! Reported results match the kernel's: what koko says it did is what
//! happened, multi-object requests are all or nothing (or say exactly what
//! was done), and an undo restores what it changed — no less (routes the
//! kernel flushed) and no more (a user's own qdisc). The refusals
//! themselves are in the table of bad_inputs.rs; here are the requests that
//! succeed, checked through the kernel.

use crate::support::Sandbox;

#[test]
fn netns_add_takes_flags_anywhere_and_creates_every_name() {
    let sb = Sandbox::new();
    let run = sb.koko(&["netns", "add", "n1", "--json", "n2"]);
    run.ok();
    assert_eq!(run.json()["netns"], serde_json::json!(["n1", "n2"]));
    assert_eq!(
        sb.netns_list(),
        vec!["n1", "n2"],
        "no namespace named --json"
    );
    for n in ["n1", "n2"] {
        sb.sh(&format!("ip netns exec {n} true"));
    }
    // A name that starts with '-' after --.
    sb.koko(&["netns", "add", "--", "-dash"]).ok();
    assert!(sb.netns_list().contains(&"-dash".to_string()));
    let run = sb.koko(&["netns", "del", "--json", "n1", "n2", "--", "-dash"]);
    run.ok();
    assert_eq!(run.json()["action"], "del");
    assert!(sb.netns_list().is_empty());
}

#[test]
fn netns_add_of_a_taken_name_leaves_the_others_uncreated() {
    let sb = Sandbox::new();
    sb.netns_add(&["b"]);
    let b_before = sb.sh("stat -L -c %i /run/netns/b");
    sb.koko(&["netns", "add", "a", "b", "c"])
        .fails(1, "netns 'b' already exists");
    assert_eq!(sb.netns_list(), vec!["b"]);
    // b is the very namespace it was (not deleted and re-made).
    assert_eq!(sb.sh("stat -L -c %i /run/netns/b"), b_before);
}

#[test]
fn deleting_both_ends_of_a_veth_reports_the_second_as_gone_with_its_peer() {
    let sb = Sandbox::new();
    sb.netns_add(&["a", "b"]);
    sb.koko(&["-n", "a,l1", "-n", "b,l2"]).ok();
    let run = sb.koko(&["--json", "-N", "a,l1", "-N", "b,l2"]);
    run.ok();
    let v = run.json();
    assert_eq!(v["deleted"][0]["link"], "l1");
    assert!(v["deleted"][0].get("with_peer").is_none(), "{v}");
    assert_eq!(v["deleted"][1]["link"], "l2");
    assert_eq!(v["deleted"][1]["with_peer"], true);
    assert!(sb.link(Some("a"), "l1").is_none());
    assert!(sb.link(Some("b"), "l2").is_none());
    let text = sb.koko(&["-n", "a,l1", "-n", "b,l2"]);
    text.ok();
    let run = sb.koko(&["-N", "b,l2", "-N", "a,l1"]);
    run.ok();
    run.stdout_has("Delete link l2 in netns 'b'...done\n");
    run.stdout_has("Delete link l1 in netns 'a'...done (it went with its peer)");
}

#[test]
fn deleting_a_mirror_keeps_the_users_own_clsact() {
    let sb = Sandbox::new();
    sb.netns_add(&["a", "b"]);
    sb.sh("ip -n a link add src0 type veth peer name src1 && ip -n a link set src0 up && ip -n a link set src1 up");
    sb.sh("tc -n a qdisc add dev src0 clsact");
    sb.koko(&["-n", "a,mir1,mirror:both:src0", "-n", "b,mir2"])
        .ok();
    assert!(!sb.tc_filters(Some("a"), "src0", "ingress").is_empty());
    sb.koko(&["-N", "a,mir1"]).ok();
    assert!(sb.tc_filters(Some("a"), "src0", "ingress").is_empty());
    assert!(sb.tc_filters(Some("a"), "src0", "egress").is_empty());
    assert!(
        sb.qdisc_kinds(Some("a"), "src0")
            .contains(&"clsact".to_string()),
        "the user's clsact was removed: {:?}",
        sb.qdisc_kinds(Some("a"), "src0")
    );
}

#[test]
fn a_clsact_koko_made_goes_with_its_last_mirror() {
    let sb = Sandbox::new();
    sb.netns_add(&["a", "b"]);
    sb.sh("ip -n a link add src0 type veth peer name src1 && ip -n a link set src0 up && ip -n a link set src1 up");
    sb.koko(&["-n", "a,mir1,mirror:ingress:src0", "-n", "b,mir2"])
        .ok();
    sb.koko(&["-n", "a,mir3,mirror:egress:src0", "-n", "b,mir4"])
        .ok();
    // The first mirror goes: the second still uses koko's clsact.
    sb.koko(&["-N", "a,mir1"]).ok();
    assert!(sb
        .qdisc_kinds(Some("a"), "src0")
        .contains(&"clsact".to_string()));
    assert!(!sb.tc_filters(Some("a"), "src0", "egress").is_empty());
    // The last one goes: so does the clsact koko added.
    sb.koko(&["-N", "a,mir3"]).ok();
    assert!(
        !sb.qdisc_kinds(Some("a"), "src0")
            .contains(&"clsact".to_string()),
        "koko's clsact stayed: {:?}",
        sb.qdisc_kinds(Some("a"), "src0")
    );
}

#[test]
fn macvlan_modes_are_accepted_in_any_case() {
    let sb = Sandbox::new();
    sb.netns_add(&["a"]);
    sb.sh("ip link add up0 type veth peer name up1 && ip link set up0 up");
    sb.koko(&["-n", "a,mv1", "-M", "up0,BRIDGE"]).ok();
    let l = sb.link(Some("a"), "mv1").expect("mv1 in a");
    assert_eq!(l["linkinfo"]["info_kind"], "macvlan", "{l}");
    assert_eq!(l["linkinfo"]["info_data"]["mode"], "bridge", "{l}");
    sb.koko(&["-n", "a,mv2", "-M", "up0,Private"]).ok();
    let l = sb.link(Some("a"), "mv2").expect("mv2 in a");
    assert_eq!(l["linkinfo"]["info_data"]["mode"], "private", "{l}");
}

#[test]
fn the_kernel_refuses_the_names_koko_refuses() {
    // The rule koko applies up front is the kernel's own: a name with the
    // byte 0xA0 (in 'à') is refused by the kernel ("Invalid argument"),
    // one with a vertical tab or form feed by iproute2 and the kernel alike
    // (both use isspace()), while 'é' (C3 A9) is accepted. (Octal escapes:
    // dash's printf has no \x.)
    let sb = Sandbox::new();
    for bad in ["caf\\303\\240", "x\\013y", "x\\014y"] {
        let out = sb
            .command("sh")
            .arg("-c")
            .arg(format!(
                "ip link add name \"$(printf '{bad}')\" type veth peer name p0"
            ))
            .output()
            .unwrap();
        assert!(!out.status.success(), "the kernel took {bad}");
    }
    sb.sh("ip link add name \"$(printf 'caf\\303\\251')\" type veth peer name p0");
    sb.netns_add(&["a", "b"]);
    sb.koko(&["-n", "a,café", "-n", "b,l2"]).ok();
    assert!(sb.link(Some("a"), "café").is_some());
}

#[test]
fn an_address_refused_for_a_link_is_never_reported_as_added() {
    let sb = Sandbox::new();
    sb.netns_add(&["a", "b"]);
    sb.koko(&["-n", "a,l1", "-n", "b,l2"]).ok();
    sb.koko(&[
        "ip",
        "ipnetns",
        "a",
        "address",
        "add",
        "0.0.0.0/0",
        "dev",
        "l1",
    ])
    .fails(2, "0.0.0.0/0");
    // What the kernel does with it when asked directly: nothing, and says
    // "done". That is why koko refuses it up front.
    sb.sh("ip -n a addr add 0.0.0.0/0 dev l1");
    assert!(sb.addrs(Some("a"), "l1").is_empty());
    // -6 route with an IPv4 gateway is refused, not turned into IPv4.
    sb.koko(&[
        "ip", "ipnetns", "a", "-6", "route", "add", "default", "via", "10.0.0.1",
    ])
    .fails(2, "'-6'");
    assert!(sb.route(Some("a"), "default").is_none());
}

#[test]
fn destroy_deletes_only_the_namespace_it_names_never_a_new_one_of_that_name() {
    let sb = Sandbox::new();
    // Someone else deletes x and makes a new x with a link of their own
    // while the script holds its handle on the old one.
    let path = crate::support::script::write_script(
        "truth",
        "destroy.rhai",
        r#"
        let x = netns("x");
        let r = x.exec(["sh", "-c", "ip netns del x && ip netns add x && ip -n x link add own0 type veth peer name own1"]);
        if r.code != 0 { throw `setup failed: ${r.err}`; }
        try { x.destroy(); print("destroyed"); } catch (e) { print(`refused: ${e.message}`); }
        "#,
    );
    let run = sb.koko(&["run", path.to_str().unwrap()]);
    run.ok();
    run.stdout_has("refused: netns 'x': is gone");
    assert_eq!(sb.netns_list(), vec!["x"]);
    assert!(
        sb.link(Some("x"), "own0").is_some(),
        "the new x was touched"
    );
}
