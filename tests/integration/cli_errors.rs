//! Bad input and refusals: each gives a clear message naming the object and
//! the cause, the right exit code (2 = wrong request, 1 = could not be done),
//! and leaves nothing behind, checked through the kernel.

use crate::support::Sandbox;

/// Every link (except lo) in every namespace of the sandbox, and the named
/// namespaces themselves: what "nothing left behind" compares.
fn inventory(sb: &Sandbox) -> Vec<String> {
    let mut all = Vec::new();
    for ns in sb.netns_list() {
        all.push(format!("netns {ns}"));
        for l in sb.link_names(Some(ns.as_str())) {
            all.push(format!("{ns}/{l}"));
        }
    }
    for l in sb.link_names(None) {
        all.push(format!("own/{l}"));
    }
    all
}

/// Run koko, expect `code` and `needle` in stderr, and no change at all.
#[track_caller]
fn refused(sb: &Sandbox, args: &[&str], code: i32, needle: &str) {
    let before = inventory(sb);
    sb.koko(args).fails(code, needle);
    assert_eq!(inventory(sb), before, "koko {args:?} left something behind");
}

fn sandbox_with(names: &[&str]) -> Sandbox {
    let sb = Sandbox::new();
    sb.netns_add(names);
    sb
}

#[test]
fn malformed_cidrs() {
    let sb = sandbox_with(&["a", "b"]);
    refused(
        &sb,
        &["-n", "a,l1,10.0.0.300/24", "-n", "b,l2"],
        2,
        "'10.0.0.300' is not an IPv4 or IPv6 address",
    );
    refused(
        &sb,
        &["-n", "a,l1,10.0.0.1", "-n", "b,l2"],
        2,
        "address '10.0.0.1' has no prefix length",
    );
    refused(
        &sb,
        &["-n", "a,l1,10.0.0.1/33", "-n", "b,l2"],
        2,
        "prefix length '33'",
    );
    refused(
        &sb,
        &["-n", "a,l1", "-n", "b,l2,fd00::1/129"],
        2,
        "prefix length '129'",
    );
}

#[test]
fn bad_interface_names() {
    let sb = sandbox_with(&["a", "b"]);
    refused(
        &sb,
        &["-n", "a,this-is-16-bytes", "-n", "b,l2"],
        2,
        "the kernel allows at most 15",
    );
    refused(
        &sb,
        &["-n", "a,", "-n", "b,l2"],
        2,
        "interface name '' is empty",
    );
    refused(&sb, &["-n", "a,x/y", "-n", "b,l2"], 2, "contains '/'");
    refused(&sb, &["-n", "a,x y", "-n", "b,l2"], 2, "contains ' '");
    refused(
        &sb,
        &["-c", "x:y,10.0.0.1/24", "-n", "b,l2"],
        2,
        "contains ':'",
    );
}

#[test]
fn grammar_errors() {
    let sb = sandbox_with(&["a", "b", "c"]);
    refused(
        &sb,
        &["-n", "a:l1:10.0.0.1/24", "-n", "b:l2:10.0.0.2/24"],
        2,
        "-n a,l1,10.0.0.1/24",
    );
    refused(&sb, &["-q", "a,l1", "-n", "b,l2"], 2, "unknown option '-q'");
    refused(
        &sb,
        &["--bogus", "-n", "a,l1", "-n", "b,l2"],
        2,
        "unknown option '--bogus'",
    );
    refused(&sb, &["-n", "a,l1"], 2, "single endpoint");
    refused(
        &sb,
        &["-n", "a,l1", "-n", "b,l2", "-n", "c,l3"],
        2,
        "3 endpoints",
    );
    refused(&sb, &["-n", "a,l1", "-N", "b,l2"], 2, "cannot be mixed");
    refused(
        &sb,
        &["-p", "twelve,l1", "-n", "b,l2"],
        2,
        "'twelve' is not a process id",
    );
    refused(&sb, &[], 2, "nothing to do");
    refused(&sb, &["-n"], 2, "needs a value");
    refused(
        &sb,
        &["-e", "../crio1,l1", "-n", "b,l2"],
        2,
        "is not a CRI container or pod sandbox id",
    );
    // Usage errors also say where to find help.
    sb.koko(&["-n", "a,l1"]).fails(2, "koko -h");
}

#[test]
fn namespaces_that_do_not_exist() {
    let sb = sandbox_with(&["a"]);
    refused(
        &sb,
        &["-n", "ghost,l1", "-n", "a,l2"],
        1,
        "netns 'ghost': does not exist",
    );
    refused(
        &sb,
        &["-n", "a,l1", "-p", "4000000,l2"],
        1,
        "pid 4000000: no such process",
    );
    refused(
        &sb,
        &["-a", "/tmp/not-a-namespace,l1", "-n", "a,l2"],
        1,
        "/tmp/not-a-namespace",
    );
    refused(
        &sb,
        &["-a", "/etc/hostname,l1", "-n", "a,l2"],
        1,
        "is not a namespace file",
    );
    refused(&sb, &["-N", "ghost,l1"], 1, "netns 'ghost'");
}

#[test]
fn same_name_twice_in_one_namespace() {
    let sb = sandbox_with(&["a"]);
    refused(
        &sb,
        &["-n", "a,twin", "-n", "a,twin"],
        2,
        "both ends are named 'twin' in netns 'a'",
    );
    // Different names in the same namespace are fine (a hairpin veth).
    sb.koko(&["-n", "a,left", "-n", "a,right"]).ok();
    assert_eq!(sb.link_names(Some("a")).len(), 2);
}

#[test]
fn name_already_taken_leaves_no_half_pair() {
    let sb = sandbox_with(&["a", "b"]);
    sb.sh("ip -n b link add taken type veth peer name other");
    // The clash is on b's side; nothing may appear in a (the original left
    // a temp-named end behind).
    refused(
        &sb,
        &["-n", "a,fresh", "-n", "b,taken"],
        1,
        "link 'taken' already exists in netns 'b'",
    );
    refused(
        &sb,
        &["-n", "b,taken", "-n", "a,fresh"],
        1,
        "link 'taken' already exists in netns 'b'",
    );
    assert!(sb.link_names(Some("a")).is_empty());
}

#[test]
fn kernel_refusal_after_creation_rolls_back() {
    let sb = sandbox_with(&["a", "b"]);
    // The second, identical address is refused by the kernel after the veth
    // and the first address exist: both must be undone.
    refused(
        &sb,
        &[
            "-n",
            "a,l1,10.0.0.1/24,10.0.0.1/24",
            "-n",
            "b,l2,10.0.0.2/24",
        ],
        1,
        "address 10.0.0.1/24: already on l1 in netns 'a'",
    );
    // The same on the second end: the first end's address goes too.
    refused(
        &sb,
        &["-n", "a,l1,10.0.0.1/24", "-n", "b,l2,fd00::2/64,fd00::2/64"],
        1,
        "address fd00::2/64: already on l2 in netns 'b'",
    );
}

#[test]
fn deleting_what_is_not_there() {
    let sb = sandbox_with(&["a"]);
    refused(
        &sb,
        &["-N", "a,nothing"],
        1,
        "no link 'nothing' in netns 'a'",
    );
    refused(
        &sb,
        &["-C", "nothing"],
        1,
        "no link 'nothing' in koko's own namespace",
    );
}

#[test]
fn not_root_says_so() {
    let sb = sandbox_with(&["a", "b"]);
    let before = inventory(&sb);
    let out = sb
        .command("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(crate::support::koko_bin())
        .args(["-n", "a,l1", "-n", "b,l2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("koko must run as root"), "{stderr}");
    assert!(stderr.contains("CAP_NET_ADMIN"), "{stderr}");
    assert_eq!(inventory(&sb), before);
}

#[test]
fn json_errors_are_machine_readable() {
    let sb = sandbox_with(&["a"]);
    let run = sb.koko(&["--json", "-N", "a,nothing"]);
    run.fails(1, "no link 'nothing'");
    let v = run.json();
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["kind"], "not_found");
    assert_eq!(v["error"]["object"]["kind"], "link");
    assert_eq!(v["error"]["exit_code"], 1);
}
