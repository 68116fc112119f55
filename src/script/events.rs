//! Event hooks and the watch loop: `on_link_down`, `on_link_up`,
//! `on_container_exit`, `watch(ms)`, `stop_watch()`, and the outage probe.
//!
//! Registering a hook subscribes once to the namespace's link notifications
//! (see [`crate::net::monitor`]); `watch` then waits on every subscription
//! at once with `poll(2)` and calls the script's callbacks — never while a
//! borrow of the world is held, since a callback usually builds things.
//!
//! References are handled with care: a monitor socket, like any socket
//! koko opens in a namespace, keeps that namespace alive. So `watch` also
//! listens for namespaces going away (inotify on /run/netns, a pidfd per
//! pid or container namespace) and, the moment one is reported gone, drops
//! every socket koko holds in it. Only then does the kernel destroy it and
//! delete its veth ends, which is what the other namespaces' monitors see
//! as "link gone".

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use rhai::{Dynamic, Engine, EvalAltResult, FnPtr, Map, NativeCallContext, Position};

use super::api::{fail, interruptible_sleep, LinkRef, NsRef};
use super::{SharedWorld, World};
use crate::error::Error;
use crate::net::link;
use crate::net::monitor::{LinkEvent, LinkMonitor, NetnsDirWatch, ProcessWatch};
use crate::ns::{Namespace, NsId, NsSpec};
use crate::probe::{epoch_ms, OutageProbe, OutageReport};

type R<T> = Result<T, Box<EvalAltResult>>;

/// What a hook waits for.
#[derive(Clone)]
pub enum HookKind {
    LinkDown {
        ns: Namespace,
        link: String,
    },
    LinkUp {
        ns: Namespace,
        link: String,
    },
    ContainerExit {
        name: String,
        ns: Namespace,
    },
    /// A probe's loss over the last `window_ms` reaches `loss_pct`.
    ProbeLoss {
        probe: ProbeRef,
        loss_pct: f64,
        window_ms: f64,
        min_samples: u64,
    },
    /// A probe's median connection time over the last `window_ms` goes
    /// above `above_ms`.
    ProbeRtt {
        probe: ProbeRef,
        above_ms: f64,
        window_ms: f64,
        min_samples: u64,
    },
}

/// A registered hook: what it waits for, what to call, and whether it may
/// fire now.
#[derive(Clone)]
pub struct Hook {
    pub on: HookKind,
    pub callback: FnPtr,
    pub arming: Arming,
}

/// When a link hook may fire, as a pure function of the link's events.
///
/// A hook fires once per transition: `armed` is false after it fired,
/// until the opposite transition re-arms it. A link-down hook fires on
/// "lost carrier" only once it has seen the link running (a link just
/// created may not have its carrier yet), but always when the link is
/// deleted. A link-up hook waits for the link to be down first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arming {
    pub armed: bool,
    pub seen_running: bool,
}

impl Arming {
    /// A link-down hook on a link that is (`running`) or is not running now.
    pub fn link_down(running: bool) -> Arming {
        Arming {
            armed: true,
            seen_running: running,
        }
    }

    /// A link-up hook on a link that is (`running`) or is not running now.
    pub fn link_up(running: bool) -> Arming {
        Arming {
            armed: !running,
            seen_running: running,
        }
    }

    /// A hook that fires once, on the first event (container exit).
    pub fn once() -> Arming {
        Arming {
            armed: true,
            seen_running: true,
        }
    }

    /// Feed a link-down hook one event of its link; returns the event kind
    /// if the hook fires.
    pub fn down_event(&mut self, ev: &LinkEvent) -> Option<&'static str> {
        if ev.running {
            self.armed = true;
            self.seen_running = true;
            None
        } else if self.armed && (ev.gone || self.seen_running) {
            self.armed = false;
            Some(if ev.gone { "link_gone" } else { "link_down" })
        } else {
            None
        }
    }

    /// Feed a link-up hook one event of its link; returns the event kind
    /// if the hook fires.
    pub fn up_event(&mut self, ev: &LinkEvent) -> Option<&'static str> {
        if ev.running && self.armed {
            self.armed = false;
            Some("link_up")
        } else {
            if !ev.running {
                self.armed = true;
            }
            None
        }
    }

    /// Feed a threshold hook (probe quality) whether its condition holds
    /// now; it fires when the condition starts to hold, and re-arms once it
    /// no longer does.
    pub fn condition(&mut self, holds: bool) -> bool {
        if holds {
            std::mem::replace(&mut self.armed, false)
        } else {
            self.armed = true;
            false
        }
    }

    /// The watched thing is gone for good (its namespace died): fire if
    /// armed.
    pub fn gone(&mut self) -> bool {
        std::mem::replace(&mut self.armed, false)
    }
}

/// A run's event state.
#[derive(Default)]
pub struct Events {
    pub hooks: Vec<Hook>,
    pub stopped: bool,
    monitors: HashMap<NsId, LinkMonitor>,
    processes: HashMap<NsId, ProcessWatch>,
    netns_dir: Option<NetnsDirWatch>,
}

impl Events {
    /// Drop every hook and subscription (and with them koko's references
    /// to the namespaces).
    pub fn clear(&mut self) {
        self.hooks.clear();
        self.monitors.clear();
        self.processes.clear();
        self.netns_dir = None;
    }

    fn subscribe(&mut self, ns: &Namespace) -> crate::Result<()> {
        if let std::collections::hash_map::Entry::Vacant(e) = self.monitors.entry(ns.id()) {
            e.insert(LinkMonitor::open(ns)?);
        }
        self.watch_lifetime(ns)
    }

    /// Be told when `ns` goes away.
    fn watch_lifetime(&mut self, ns: &Namespace) -> crate::Result<()> {
        if self.netns_dir.is_none() {
            self.netns_dir = Some(NetnsDirWatch::open()?);
        }
        if let Some(pid) = ns.process() {
            if let std::collections::hash_map::Entry::Vacant(e) = self.processes.entry(ns.id()) {
                e.insert(ProcessWatch::open(pid)?);
            }
        }
        Ok(())
    }
}

fn event_map(kind: &str, ns: &Namespace, link: Option<&str>) -> Map {
    let mut m = Map::new();
    m.insert("kind".into(), kind.into());
    m.insert("namespace".into(), ns.name().to_string().into());
    m.insert(
        "link".into(),
        link.map(|l| Dynamic::from(l.to_string()))
            .unwrap_or(Dynamic::UNIT),
    );
    m.insert("time".into(), epoch_ms().into());
    m
}

/// Wait (at most until `deadline`, at most 50 ms) for anything to happen,
/// handle it, and return the callbacks to call.
fn collect(world: &mut World, deadline: Instant) -> crate::Result<Vec<(FnPtr, Map)>> {
    let World {
        session, events, ..
    } = world;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .min(Duration::from_millis(50));
    {
        let mut fds: Vec<PollFd> = events
            .monitors
            .values()
            .map(|m| PollFd::new(m.fd(), PollFlags::POLLIN))
            .collect();
        fds.extend(
            events
                .processes
                .values()
                .map(|p| PollFd::new(p.fd(), PollFlags::POLLIN)),
        );
        if let Some(d) = &events.netns_dir {
            fds.push(PollFd::new(d.fd(), PollFlags::POLLIN));
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let _ = poll(&mut fds, PollTimeout::from(ms));
    }
    let mut fired = Vec::new();

    // 1. Namespaces that went away: drop our references first, so the
    //    kernel can destroy them (and their veth ends).
    if let Some(d) = &events.netns_dir {
        d.drain();
    }
    let mut gone: Vec<Namespace> = session
        .open_namespaces()
        .into_iter()
        .filter(|ns| !ns.exists())
        .collect();
    for m in events.monitors.values() {
        if !m.ns.exists() && !gone.contains(&m.ns) {
            gone.push(m.ns.clone());
        }
    }
    let exited: Vec<NsId> = events
        .processes
        .iter()
        .filter(|(_, p)| p.exited())
        .map(|(id, _)| *id)
        .collect();
    for hook in events.hooks.iter_mut() {
        if let HookKind::ContainerExit { ns, .. } = &hook.on {
            if exited.contains(&ns.id()) && hook.arming.gone() {
                fired.push((hook.callback.clone(), event_map("container_exit", ns, None)));
                if !gone.contains(ns) {
                    gone.push(ns.clone());
                }
            }
        }
    }
    for ns in &gone {
        session.forget(ns);
        events.monitors.remove(&ns.id());
        events.processes.remove(&ns.id());
        // Links inside a namespace that died are gone too.
        for hook in events.hooks.iter_mut() {
            if let HookKind::LinkDown { ns: hns, link } = &hook.on {
                if hns == ns && hook.arming.gone() {
                    fired.push((
                        hook.callback.clone(),
                        event_map("link_gone", hns, Some(link)),
                    ));
                }
            }
        }
    }

    // 2. Path quality, from the probes' recent samples.
    for hook in events.hooks.iter_mut() {
        let (kind, stats, holds) = match &hook.on {
            HookKind::ProbeLoss {
                probe,
                loss_pct,
                window_ms,
                min_samples,
            } => {
                let w = probe.0.borrow().window(*window_ms);
                let holds = w.sent >= *min_samples && w.loss_pct >= *loss_pct;
                ("probe_loss", w, holds)
            }
            HookKind::ProbeRtt {
                probe,
                above_ms,
                window_ms,
                min_samples,
            } => {
                let w = probe.0.borrow().window(*window_ms);
                let holds = w.sent - w.lost >= *min_samples
                    && w.rtt_p50_ms.is_some_and(|rtt| rtt > *above_ms);
                ("probe_rtt", w, holds)
            }
            _ => continue,
        };
        if hook.arming.condition(holds) {
            let mut m = Map::new();
            m.insert("kind".into(), kind.into());
            m.insert("loss_pct".into(), stats.loss_pct.into());
            m.insert(
                "rtt_ms".into(),
                stats.rtt_p50_ms.map(Dynamic::from).unwrap_or(Dynamic::UNIT),
            );
            m.insert("sent".into(), (stats.sent as i64).into());
            m.insert("lost".into(), (stats.lost as i64).into());
            m.insert("window_ms".into(), stats.window_ms.into());
            m.insert("time".into(), epoch_ms().into());
            fired.push((hook.callback.clone(), m));
        }
    }

    // 3. Link changes.
    for (id, monitor) in events.monitors.iter_mut() {
        for ev in monitor.drain()? {
            for hook in events.hooks.iter_mut() {
                let kind = match &hook.on {
                    HookKind::LinkDown { ns, link } if ns.id() == *id && *link == ev.name => {
                        hook.arming.down_event(&ev).map(|kind| (kind, ns, link))
                    }
                    HookKind::LinkUp { ns, link } if ns.id() == *id && *link == ev.name => {
                        hook.arming.up_event(&ev).map(|kind| (kind, ns, link))
                    }
                    _ => None,
                };
                if let Some((kind, ns, link)) = kind {
                    fired.push((hook.callback.clone(), event_map(kind, ns, Some(link))));
                }
            }
        }
    }
    Ok(fired)
}

/// Is `name` in `ns` running (up with carrier) right now?
fn running(world: &SharedWorld, ns: &Namespace, name: &str) -> R<bool> {
    let w = world.borrow();
    let t = w.session.target(ns).map_err(fail)?;
    Ok(w.session
        .block_on(link::get(&t, name))
        .map_err(fail)?
        .map(|l| l.up && l.lower_up)
        .unwrap_or(false))
}

fn add_link_hook(world: &SharedWorld, ns: &Namespace, name: &str, f: FnPtr, down: bool) -> R<()> {
    let is_running = running(world, ns, name)?;
    let mut w = world.borrow_mut();
    w.events.subscribe(ns).map_err(fail)?;
    let on = if down {
        HookKind::LinkDown {
            ns: ns.clone(),
            link: name.to_string(),
        }
    } else {
        HookKind::LinkUp {
            ns: ns.clone(),
            link: name.to_string(),
        }
    };
    w.events.hooks.push(Hook {
        on,
        callback: f,
        arming: if down {
            Arming::link_down(is_running)
        } else {
            Arming::link_up(is_running)
        },
    });
    Ok(())
}

fn watch(ctx: &NativeCallContext, world: &SharedWorld, ms: i64, stop_on_error: bool) -> R<i64> {
    let ms = u64::try_from(ms).map_err(|_| {
        fail(Error::Invalid(format!(
            "watch: {ms} is not a number of milliseconds"
        )))
    })?;
    let deadline = Instant::now() + Duration::from_millis(ms);
    world.borrow_mut().events.stopped = false;
    let mut dispatched = 0;
    loop {
        if super::interrupted() {
            return Err(EvalAltResult::ErrorTerminated(
                "interrupted (Ctrl-C)".into(),
                Position::NONE,
            )
            .into());
        }
        if world.borrow().events.stopped || Instant::now() >= deadline {
            return Ok(dispatched);
        }
        let fired = collect(&mut world.borrow_mut(), deadline).map_err(fail)?;
        for (callback, event) in fired {
            dispatched += 1;
            if let Err(e) = callback.call_within_context::<Dynamic>(ctx, (event,)) {
                let source = ctx.call_source().unwrap_or("<script>");
                eprintln!(
                    "koko: a hook failed: {}",
                    super::format_runtime_error(source, &e)
                );
                if stop_on_error {
                    return Err(e);
                }
            }
        }
    }
}

/// The hook a probe-quality registration asks for: `#{loss_pct,
/// window_ms[, min_samples]}` or `#{above_ms, window_ms[, min_samples]}`.
fn probe_hook(function: &str, probe: ProbeRef, opts: &Map, loss: bool) -> crate::Result<HookKind> {
    let threshold_key = if loss { "loss_pct" } else { "above_ms" };
    let allowed = [threshold_key, "window_ms", "min_samples"];
    if let Some(unknown) = opts.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(Error::Invalid(format!(
            "{function}(): unknown option '{unknown}' (allowed: {})",
            allowed.join(", ")
        )));
    }
    let number = |key: &str| -> crate::Result<Option<f64>> {
        match opts.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_float()
                .or_else(|_| v.as_int().map(|i| i as f64))
                .map(Some)
                .map_err(|t| {
                    Error::Invalid(format!("{function}(): {key} must be a number, not {t}"))
                }),
        }
    };
    let threshold = number(threshold_key)?
        .ok_or_else(|| Error::Invalid(format!("{function}(): {threshold_key} is required")))?;
    let window_ms = number("window_ms")?.unwrap_or(1000.0);
    let min_samples = number("min_samples")?.unwrap_or(5.0);
    if window_ms.is_nan() || window_ms <= 0.0 {
        return Err(Error::Invalid(format!(
            "{function}(): window_ms {window_ms} must be positive"
        )));
    }
    if min_samples < 1.0 {
        return Err(Error::Invalid(format!(
            "{function}(): min_samples {min_samples} must be at least 1"
        )));
    }
    let min_samples = min_samples as u64;
    if loss {
        if !(0.0..=100.0).contains(&threshold) || threshold == 0.0 {
            return Err(Error::Invalid(format!(
                "{function}(): loss_pct {threshold} is not a percentage above 0"
            )));
        }
        Ok(HookKind::ProbeLoss {
            probe,
            loss_pct: threshold,
            window_ms,
            min_samples,
        })
    } else {
        if threshold.is_nan() || threshold <= 0.0 {
            return Err(Error::Invalid(format!(
                "{function}(): above_ms {threshold} must be positive"
            )));
        }
        Ok(HookKind::ProbeRtt {
            probe,
            above_ms: threshold,
            window_ms,
            min_samples,
        })
    }
}

/// A running outage probe, as scripts see it.
#[derive(Clone)]
pub struct ProbeRef(Rc<RefCell<OutageProbe>>);

fn report_map(r: &OutageReport) -> Map {
    let opt = |v: Option<f64>| v.map(Dynamic::from).unwrap_or(Dynamic::UNIT);
    let mut m = Map::new();
    m.insert("sent".into(), (r.sent as i64).into());
    m.insert("lost".into(), (r.lost as i64).into());
    m.insert("first_failure_ms".into(), opt(r.first_failure_ms));
    m.insert("first_recovery_ms".into(), opt(r.first_recovery_ms));
    m.insert("outage_ms".into(), opt(r.outage_ms));
    m
}

pub fn register(engine: &mut Engine, world: &SharedWorld) {
    let w = world.clone();
    sys!(engine, "on_link_down", move |ns: NsRef,
                                       name: &str,
                                       f: FnPtr|
          -> R<()> {
        add_link_hook(&w, &ns.0, name, f, true)
    });
    let w = world.clone();
    sys!(engine, "on_link_down", move |l: LinkRef,
                                       f: FnPtr|
          -> R<()> {
        add_link_hook(&w, &l.ns, &l.name, f, true)
    });
    let w = world.clone();
    sys!(engine, "on_link_up", move |ns: NsRef,
                                     name: &str,
                                     f: FnPtr|
          -> R<()> {
        add_link_hook(&w, &ns.0, name, f, false)
    });
    let w = world.clone();
    sys!(engine, "on_container_exit", move |name: &str,
                                            f: FnPtr|
          -> R<()> {
        let ns = w
            .borrow()
            .session
            .resolve(&NsSpec::Docker(name.to_string()))
            .map_err(fail)?;
        let mut world = w.borrow_mut();
        world.events.watch_lifetime(&ns).map_err(fail)?;
        world.events.hooks.push(Hook {
            on: HookKind::ContainerExit {
                name: name.to_string(),
                ns,
            },
            callback: f,
            arming: Arming::once(),
        });
        Ok(())
    });
    let w = world.clone();
    sys!(engine, "watch", move |ctx: NativeCallContext,
                                ms: i64|
          -> R<i64> {
        watch(&ctx, &w, ms, false)
    });
    let w = world.clone();
    sys!(engine, "watch", move |ctx: NativeCallContext,
                                ms: i64,
                                opts: Map|
          -> R<i64> {
        let stop_on_error = opts
            .get("stop_on_error")
            .and_then(|v| v.as_bool().ok())
            .unwrap_or(false);
        watch(&ctx, &w, ms, stop_on_error)
    });
    let w = world.clone();
    sys!(engine, "stop_watch", move || {
        w.borrow_mut().events.stopped = true
    });

    engine.register_type_with_name::<ProbeRef>("Probe");
    sys!(engine, "probe_start", |ns: NsRef,
                                 ip: &str,
                                 port: i64,
                                 opts: Map|
     -> R<ProbeRef> {
        let ip: std::net::IpAddr = ip
            .parse()
            .map_err(|_| fail(Error::Invalid(format!("'{ip}' is not an IP address"))))?;
        let port = u16::try_from(port)
            .map_err(|_| fail(Error::Invalid(format!("{port} is not a TCP port"))))?;
        let get = |k: &str, d: i64| {
            opts.get(k)
                .and_then(|v| v.as_int().ok())
                .unwrap_or(d)
                .max(1) as u64
        };
        let probe = OutageProbe::start(
            &ns.0,
            SocketAddr::new(ip, port),
            Duration::from_millis(get("interval_ms", 5)),
            Duration::from_millis(get("timeout_ms", 100)),
        );
        Ok(ProbeRef(Rc::new(RefCell::new(probe))))
    });
    for (name, loss) in [("on_probe_loss", true), ("on_probe_rtt", false)] {
        let w = world.clone();
        sys!(engine, name, move |p: ProbeRef,
                                 opts: Map,
                                 f: FnPtr|
              -> R<()> {
            let on = probe_hook(name, p, &opts, loss).map_err(fail)?;
            w.borrow_mut().events.hooks.push(Hook {
                on,
                callback: f,
                arming: Arming::once(),
            });
            Ok(())
        });
    }
    sys!(engine, "report", |p: &mut ProbeRef| -> Map {
        report_map(&p.0.borrow().report())
    });
    sys!(engine, "stop", |p: &mut ProbeRef| -> Map {
        report_map(&p.0.borrow_mut().stop())
    });
    sys!(engine, "wait_success_after", |p: &mut ProbeRef,
                                        t: f64,
                                        ms: i64|
     -> R<Dynamic> {
        let end = Instant::now() + Duration::from_millis(ms.max(0) as u64);
        loop {
            if let Some(at) = p.0.borrow().first_success_after(t) {
                return Ok(at.into());
            }
            if Instant::now() >= end {
                return Ok(Dynamic::UNIT);
            }
            interruptible_sleep(Duration::from_millis(2))?;
        }
    });
    sys!(engine, "wait_recovery", |p: &mut ProbeRef,
                                   ms: i64|
     -> R<bool> {
        let end = Instant::now() + Duration::from_millis(ms.max(0) as u64);
        while Instant::now() < end {
            if p.0.borrow().report().first_recovery_ms.is_some() {
                return Ok(true);
            }
            interruptible_sleep(Duration::from_millis(2))?;
        }
        Ok(p.0.borrow().report().first_recovery_ms.is_some())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(running: bool, gone: bool) -> LinkEvent {
        LinkEvent {
            index: 5,
            name: "link1".into(),
            gone,
            running,
        }
    }

    #[test]
    fn a_down_hook_fires_once_per_down_transition() {
        let mut a = Arming::link_down(true);
        assert_eq!(a.down_event(&ev(false, false)), Some("link_down"));
        assert_eq!(
            a.down_event(&ev(false, false)),
            None,
            "still down: no second firing"
        );
        assert_eq!(a.down_event(&ev(true, false)), None, "up again re-arms");
        assert_eq!(a.down_event(&ev(false, false)), Some("link_down"));
    }

    #[test]
    fn a_down_hook_on_a_link_without_carrier_yet_waits_for_it_but_not_for_deletion() {
        let mut a = Arming::link_down(false);
        assert_eq!(a.down_event(&ev(false, false)), None, "never seen running");
        assert_eq!(a.down_event(&ev(false, true)), Some("link_gone"));
        let mut b = Arming::link_down(false);
        assert_eq!(b.down_event(&ev(true, false)), None);
        assert_eq!(b.down_event(&ev(false, false)), Some("link_down"));
    }

    #[test]
    fn an_up_hook_waits_for_the_link_to_be_down_first() {
        let mut a = Arming::link_up(true);
        assert_eq!(
            a.up_event(&ev(true, false)),
            None,
            "already up: not a transition"
        );
        assert_eq!(a.up_event(&ev(false, false)), None);
        assert_eq!(a.up_event(&ev(true, false)), Some("link_up"));
        assert_eq!(a.up_event(&ev(true, false)), None);
        let mut b = Arming::link_up(false);
        assert_eq!(b.up_event(&ev(true, false)), Some("link_up"));
    }

    #[test]
    fn a_namespace_dying_fires_an_armed_hook_once() {
        let mut a = Arming::link_down(true);
        assert!(a.gone());
        assert!(!a.gone());
        let mut fired = Arming::link_down(true);
        fired.down_event(&ev(false, false));
        assert!(!fired.gone(), "already fired for this down");
    }
}
