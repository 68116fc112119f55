//! CRI runtimes as endpoints (`-e`/`-E`, koro's `cri ID`, scripts' `cri()`),
//! against a real containerd.
//!
//! tests/setup/containerd.sh (run by tests/run and CI) starts Debian's
//! containerd with a private root, state and socket ([`CRI_SOCK`]), its CRI
//! plugin, and the tiny `koko-test/pause:1` image; pods get no network but
//! their loopback. Each test makes its own pods and containers through the
//! CRI API ([`Pod`]: RunPodSandbox, CreateContainer, StartContainer) and
//! they are removed when it ends. koko runs inside a [`Sandbox`] and finds
//! the runtime through `CONTAINER_RUNTIME_ENDPOINT` or `--cri-socket`.
//! Results are checked through the kernel in the pods' namespaces (by their
//! pause process's pid) and by TCP between the namespaces.

use std::time::{Duration, Instant};

use crate::support::{
    all_ids, assert_not_on_host, assert_pair, assert_tcp, cri_sandbox, cri_up, engine_sandbox,
    wait_for, Ctr, OldRuntime, Pod, Sandbox, CRI_ENDPOINT, TEARDOWN,
};

/// koko with the test runtime named by `CONTAINER_RUNTIME_ENDPOINT`.
fn koko(sb: &Sandbox, line: &str) -> crate::support::Run {
    let args: Vec<&str> = line.split_whitespace().collect();
    sb.koko_env(&[("CONTAINER_RUNTIME_ENDPOINT", CRI_ENDPOINT)], &args)
}

/// The links of a pod's namespace other than its loopback.
fn links_besides_lo(sb: &Sandbox, pod: &Pod) -> Vec<String> {
    sb.link_names(pod)
        .into_iter()
        .filter(|l| l != "lo")
        .collect()
}

#[track_caller]
fn vanish(sb: &Sandbox, netns: &str, link: &str) {
    wait_for(
        &format!("{link} vanishes from {netns}"),
        TEARDOWN,
        || match sb.link(Some(netns), link) {
            None => Ok(()),
            Some(_) => Err("still there".to_string()),
        },
    );
}

/// A pod sandbox by a prefix of its id, wired to a netns; TCP flows; `-E`
/// by the full id deletes both ends.
#[test]
fn cri_pod_sandbox_to_netns_tcp_and_delete() {
    let Some(sb) = cri_sandbox() else {
        return;
    };
    sb.netns_add(&["ns2"]);
    let pod = Pod::new("web");
    let prefix = &pod.id[..12];
    let run = koko(
        &sb,
        &format!("-e {prefix},link1,10.20.0.1/24 -n ns2,link2,10.20.0.2/24"),
    );
    run.ok();
    let l1 = sb.link(&pod, "link1").expect("link1 in the pod");
    let l2 = sb.link(Some("ns2"), "link2").expect("link2 in ns2");
    assert_pair(&l1, &l2);
    assert_eq!(sb.addrs(&pod, "link1"), ["10.20.0.1/24"]);
    assert_eq!(sb.addrs(Some("ns2"), "link2"), ["10.20.0.2/24"]);
    assert!(sb.link_names(None).is_empty(), "{:?}", sb.link_names(None));
    assert_tcp(pod.ns_path(), sb.netns_path("ns2"), "10.20.0.1:8080");
    assert_tcp(sb.netns_path("ns2"), pod.ns_path(), "10.20.0.2:8081");

    koko(&sb, &format!("-E {},link1", pod.id)).ok();
    assert_eq!(links_besides_lo(&sb, &pod), Vec::<String>::new());
    vanish(&sb, "ns2", "link2");
}

/// A container (by its id) to another pod (by its sandbox id), the runtime
/// named with `--cri-socket`: the container's end lands in its pod's
/// namespace, and TCP flows pod to pod.
#[test]
fn cri_container_to_another_pod_with_cri_socket_flag() {
    let Some(sb) = cri_sandbox() else {
        return;
    };
    let (a, b) = (Pod::new("client"), Pod::new("server"));
    let ctr = a.container("app", true);
    sb.koko(&[
        "--cri-socket",
        CRI_ENDPOINT,
        "-e",
        &format!("{ctr},eth1,10.21.0.1/24"),
        "-e",
        &format!("{},eth1,10.21.0.2/24", &b.id[..16]),
    ])
    .ok();
    let la = sb.link(&a, "eth1").expect("eth1 in the client pod");
    let lb = sb.link(&b, "eth1").expect("eth1 in the server pod");
    assert_pair(&la, &lb);
    assert_eq!(sb.addrs(&b, "eth1"), ["10.21.0.2/24"]);
    assert_tcp(b.ns_path(), a.ns_path(), "10.21.0.2:7000");
    // `--cri-socket=PATH` and a plain path work too, for -E.
    sb.koko(&[
        &format!("--cri-socket={}", crate::support::CRI_SOCK),
        "-E",
        &format!("{ctr},eth1"),
    ])
    .ok();
    assert_eq!(links_besides_lo(&sb, &a), Vec::<String>::new());
    assert_eq!(links_besides_lo(&sb, &b), Vec::<String>::new());
}

/// A runtime that speaks only `runtime.v1alpha2` (containerd before 1.7):
/// koko's `runtime.v1` handshake is refused, it falls back, and the pod is
/// wired through v1alpha2 calls.
#[test]
fn older_runtime_is_spoken_to_in_v1alpha2() {
    let Some(sb) = cri_sandbox() else {
        return;
    };
    sb.netns_add(&["ns2"]);
    let old = OldRuntime::start();
    let pod = Pod::new("old");
    let socket = old.socket.display().to_string();
    sb.koko(&[
        "--cri-socket",
        &socket,
        "-e",
        &format!("{},link1,10.25.0.1/24", &pod.id[..12]),
        "-n",
        "ns2,link2,10.25.0.2/24",
    ])
    .ok();
    assert!(old.calls() > 0, "no v1alpha2 call reached the old runtime");
    assert_pair(
        &sb.link(&pod, "link1").expect("link1 in the pod"),
        &sb.link(Some("ns2"), "link2").expect("link2 in ns2"),
    );
    assert_tcp(pod.ns_path(), sb.netns_path("ns2"), "10.25.0.1:8080");
}

/// Without `--cri-socket` or `CONTAINER_RUNTIME_ENDPOINT`, koko finds the
/// runtime at the default socket, /run/containerd/containerd.sock. Inside
/// the sandbox's own mount namespace, a tmpfs hides the machine's
/// /run/containerd and the test runtime's socket is bound there.
#[test]
fn default_socket_is_found_without_configuration() {
    let Some(sb) = cri_sandbox() else {
        return;
    };
    sb.netns_add(&["ns2"]);
    // The mount point; containerd makes it anyway (its runc state lives there).
    std::fs::create_dir_all("/run/containerd").unwrap();
    sb.sh(&format!(
        "mount -t tmpfs koko-test /run/containerd && touch /run/containerd/containerd.sock \
         && mount --bind {} /run/containerd/containerd.sock",
        crate::support::CRI_SOCK
    ));
    let pod = Pod::new("default");
    sb.koko_env(
        &[("CONTAINER_RUNTIME_ENDPOINT", "")],
        &["-e", &format!("{},link1", pod.id), "-n", "ns2,link2"],
    )
    .ok();
    assert_pair(
        &sb.link(&pod, "link1").expect("link1 in the pod"),
        &sb.link(Some("ns2"), "link2").expect("link2 in ns2"),
    );
}

/// A CRI pod and a Docker container on one veth: TCP both ways.
#[test]
fn cri_pod_to_docker_container() {
    if !cri_up() {
        return;
    }
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    let pod = Pod::new("mixed");
    let c = Ctr::docker("cri-peer");
    koko(
        &sb,
        &format!(
            "-e {},link1,10.22.0.1/24 -d {},link2,10.22.0.2/24",
            pod.id, c.name
        ),
    )
    .ok();
    assert_pair(
        &sb.link(&pod, "link1").expect("link1 in the pod"),
        &sb.link(&c, "link2").expect("link2 in the container"),
    );
    assert_tcp(c.ns_path(), pod.ns_path(), "10.22.0.2:8080");
    assert_tcp(pod.ns_path(), c.ns_path(), "10.22.0.1:8081");
    c.ping("10.22.0.1");
}

/// `koko ip cri ID ...` (koro's target): addresses and routes inside a pod.
#[test]
fn koro_cri_target() {
    let Some(sb) = cri_sandbox() else {
        return;
    };
    sb.netns_add(&["ns2"]);
    let pod = Pod::new("koro");
    let ctr = pod.container("app", true);
    koko(&sb, &format!("-e {},link1 -n ns2,link2", pod.id)).ok();
    koko(
        &sb,
        &format!("ip cri {} address add 10.23.0.1/24 dev link1", &ctr[..10]),
    )
    .ok();
    koko(
        &sb,
        &format!("ip cri {} route add 10.99.0.0/16 via 10.23.0.2", pod.id),
    )
    .ok();
    koko(&sb, "ip ipnetns ns2 address add 10.23.0.2/24 dev link2").ok();
    assert_eq!(sb.addrs(&pod, "link1"), ["10.23.0.1/24"]);
    let route = sb
        .route(&pod, "10.99.0.0/16")
        .expect("the route in the pod");
    assert_eq!(route["gateway"], "10.23.0.2");
    assert_tcp(pod.ns_path(), sb.netns_path("ns2"), "10.23.0.1:9000");
    // `koko show cri ID` reads the pod's namespace too.
    let shown = koko(&sb, &format!("show cri {}", &pod.id[..8]));
    shown.ok();
    assert!(shown.stdout.contains("10.23.0.1/24"), "{}", shown.stdout);
}

/// A script: `cri(ID)` wires a pod, `on_container_exit` watches it,
/// `destroy()` stops the pod through CRI, and the peer's link goes with it.
#[test]
fn script_cri_namespace_on_exit_and_destroy() {
    let Some(sb) = cri_sandbox() else {
        return;
    };
    let pod = Pod::new("scripted");
    let script = format!("/tmp/koko-cri-script-{}.rhai", std::process::id());
    std::fs::write(
        &script,
        format!(
            r#"
let p = cri("{}");
if p.kind != "cri" {{ throw `kind ${{p.kind}}`; }}
let n = netns("peer");
veth(p, "link1", n, "link2", #{{a_addrs: ["10.24.0.1/24"], b_addrs: ["10.24.0.2/24"]}});
let r = n.ping("10.24.0.1");
if !r.ok {{ throw "no ping across"; }}
print("linked");
let exited = "";
on_container_exit(p, |ev| {{ exited = ev.kind; stop_watch(); }});
p.destroy();
watch(20000);
print(`exit event: ${{exited}}`);
"#,
            &pod.id[..13]
        ),
    )
    .unwrap();
    let run = sb.koko_env(
        &[("CONTAINER_RUNTIME_ENDPOINT", CRI_ENDPOINT)],
        &["run", &script],
    );
    let _ = std::fs::remove_file(&script);
    run.ok();
    assert!(run.stdout.contains("linked"), "{}", run.stdout);
    assert!(
        run.stdout.contains("exit event: container_exit"),
        "{}",
        run.stdout
    );
    assert!(!pod.ready(), "the pod is still ready after destroy()");
    vanish(&sb, "peer", "link2");
}

// --- errors: nothing is created ----------------------------------------------

/// The fastest of three runs of koko (so one slow start on a loaded
/// machine does not decide): what a user waits at best.
fn fastest(mut run: impl FnMut() -> crate::support::Run) -> (crate::support::Run, Duration) {
    let mut best: Option<(crate::support::Run, Duration)> = None;
    for _ in 0..3 {
        let t = Instant::now();
        let r = run();
        let took = t.elapsed();
        if best.as_ref().is_none_or(|(_, b)| took < *b) {
            best = Some((r, took));
        }
    }
    best.unwrap()
}

/// No runtime at the socket: exit 1 naming the socket, within 1 s (no time
/// limit is waited out: the client gives up after 3 s only on a runtime
/// that accepts connections and does not answer).
#[test]
fn no_cri_runtime_is_reported_at_once_naming_the_socket() {
    let sb = Sandbox::new();
    sb.netns_add(&["ns2"]);
    let missing = "unix:///run/koko-test-no-cri/containerd.sock";
    let (run, took) = fastest(|| {
        sb.koko_env(
            &[("CONTAINER_RUNTIME_ENDPOINT", missing)],
            &["-n", "ns2,link2", "-e", "4f2a9c,link1"],
        )
    });
    run.fails(1, missing);
    run.stderr_has("no such socket");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(sb.link_names(Some("ns2")).is_empty());

    // A socket nobody listens on: connection refused, at once.
    let dead = format!("/tmp/koko-test-dead-cri-{}.sock", std::process::id());
    let _ = std::fs::remove_file(&dead);
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    let (run, took) = fastest(|| sb.koko(&["--cri-socket", &dead, "-E", "4f2a9c,link1"]));
    let _ = std::fs::remove_file(&dead);
    run.fails(1, &format!("unix://{dead}"));
    run.stderr_has("connection refused");
    assert!(took < Duration::from_secs(1), "took {took:?}");

    // Not a socket address at all: a usage error.
    sb.koko(&[
        "--cri-socket",
        "tcp://1.2.3.4:5",
        "-e",
        "x,l1",
        "-n",
        "ns2,l2",
    ])
    .fails(2, "--cri-socket");
}

#[test]
fn unknown_and_ambiguous_cri_ids() {
    let Some(sb) = cri_sandbox() else {
        return;
    };
    sb.netns_add(&["ns2"]);
    let pod = Pod::new("ids");
    let ghost = "f".repeat(64);
    koko(&sb, &format!("-n ns2,link2 -e {ghost},link1"))
        .fails(1, "no such container or pod sandbox");
    assert!(sb.link_names(Some("ns2")).is_empty());
    koko(&sb, &format!("-E {ghost},link1")).fails(1, "no such container or pod sandbox");

    // Two ids of this test's that share their first character (17 ids of
    // 16 hex digits always do; far fewer usually suffice).
    let mut mine = vec![pod.id.clone()];
    let prefix = loop {
        let ours: Vec<char> = mine.iter().map(|id| id.chars().next().unwrap()).collect();
        if let Some(c) = ours
            .iter()
            .find(|c| ours.iter().filter(|o| o == c).count() > 1)
        {
            break c.to_string();
        }
        assert!(mine.len() <= 17);
        mine.push(pod.container(&format!("c{}", mine.len()), false));
    };
    assert!(
        all_ids()
            .iter()
            .filter(|id| id.starts_with(&prefix))
            .count()
            > 1
    );
    let run = koko(&sb, &format!("-e {prefix},link1 -n ns2,link2"));
    run.fails(2, "is ambiguous");
    assert!(sb.link_names(Some("ns2")).is_empty());
    assert_eq!(links_besides_lo(&sb, &pod), Vec::<String>::new());
}

#[test]
fn stopped_cri_container_and_sandbox_are_not_running() {
    let Some(sb) = cri_sandbox() else {
        return;
    };
    sb.netns_add(&["ns2"]);
    let pod = Pod::new("stopped");
    let created = pod.container("never-started", false);
    koko(&sb, &format!("-e {created},link1 -n ns2,link2"))
        .fails(1, "is not running (state: created)");
    assert!(sb.link_names(Some("ns2")).is_empty());
    assert_eq!(links_besides_lo(&sb, &pod), Vec::<String>::new());

    let gone = Pod::new("gone");
    gone.stop();
    koko(&sb, &format!("-e {},link1 -n ns2,link2", gone.id))
        .fails(1, "is not running (state: not ready)");
    koko(&sb, &format!("-E {},link1", gone.id)).fails(1, "is not running");
    assert!(sb.link_names(Some("ns2")).is_empty());
}

#[test]
fn host_network_cri_pod_is_refused() {
    let Some(sb) = cri_sandbox() else {
        return;
    };
    sb.netns_add(&["ns2"]);
    let pod = Pod::host_network("hostnet");
    let ctr = pod.container("app", true);
    for id in [&pod.id, &ctr] {
        koko(&sb, &format!("-e {id},kokohost0 -n ns2,link2"))
            .fails(2, "it would wire the node's own network");
        assert!(sb.link_names(Some("ns2")).is_empty());
    }
    // Nothing appeared in the host's namespace (read-only check).
    assert_not_on_host("kokohost0");
}
