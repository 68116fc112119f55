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

use super::api::{fail, interruptible_sleep, to_map, LinkRef, NsRef};
use super::{SharedWorld, World};
use crate::error::Error;
use crate::net::link;
use crate::net::monitor::{LinkEvent, LinkMonitor, NetnsDirWatch, ProcessWatch};
use crate::ns::{Namespace, NsId, NsSpec};
use crate::probe::{epoch_ms, OutageProbe};

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
    /// A kept lab repaired a container or namespace (or saw one removed):
    /// fires on every repair (see [`crate::rewire`]).
    Rewired,
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
    /// The lab kept wired (`keep_wired()`, `--keep-wired`), once asked.
    pub keeper: Option<crate::rewire::Keeper>,
}

impl Events {
    /// Drop every hook and subscription (and with them koko's references
    /// to the namespaces).
    pub fn clear(&mut self) {
        self.hooks.clear();
        self.monitors.clear();
        self.processes.clear();
        self.netns_dir = None;
        self.keeper = None;
    }

    /// Keep the run's lab wired from now on (see [`crate::rewire`]). What
    /// the run built so far is folded into the lab at once: its details
    /// are read from the kernel, so a namespace deleted before the next
    /// wait (a `docker restart` right after the script says it is ready)
    /// must not take them with it.
    pub fn keep_wired(
        &mut self,
        session: &crate::net::Session,
        journal: &crate::journal::Journal,
    ) -> crate::Result<()> {
        if self.keeper.is_none() {
            self.keeper = Some(crate::rewire::Keeper::start()?);
        }
        if let Some(keeper) = self.keeper.as_mut() {
            keeper.lab.fold(session, journal);
        }
        Ok(())
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
        session,
        events,
        journal,
    } = world;
    let left = deadline.saturating_duration_since(Instant::now()).min(
        events
            .keeper
            .as_ref()
            .map_or(Duration::from_millis(50), |k| k.timeout()),
    );
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
        if let Some(k) = &events.keeper {
            fds.extend(
                k.fds()
                    .into_iter()
                    .map(|fd| PollFd::new(fd, PollFlags::POLLIN)),
            );
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

    // 1b. A kept lab: repairs of containers and namespaces that came back.
    fired.extend(repairs(session, journal, events));

    // 2. Path quality, from the probes' recent samples. A stopped probe's
    // hooks never fire: its last window would still hold the samples of
    // the drill it measured (a drill that stops its probe and starts a new
    // one would otherwise see the old probe's hook fire again).
    for hook in events.hooks.iter_mut() {
        let probe_stopped = match &hook.on {
            HookKind::ProbeLoss { probe, .. } | HookKind::ProbeRtt { probe, .. } => {
                !probe.0.borrow().is_running()
            }
            _ => false,
        };
        if probe_stopped {
            continue;
        }
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

/// Is `name` in `ns` running (up with carrier) right now? A link that does
/// not exist is an error naming it: a hook on it could never fire (a typo
/// in a failover drill must not wait silently for an event that cannot
/// come).
fn running(world: &SharedWorld, ns: &Namespace, name: &str) -> R<bool> {
    let w = world.borrow();
    let t = w.session.target(ns).map_err(fail)?;
    match w.session.block_on(link::get(&t, name)).map_err(fail)? {
        Some(l) => Ok(l.up && l.lower_up),
        None => Err(fail(Error::NotFound {
            object: crate::error::Object::link(name),
            place: Some(ns.to_string()),
            cause: Some("a link hook needs a link that exists (create it before the hook)".into()),
        })),
    }
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

/// One pass of a kept lab's repairs (see [`crate::rewire`]): the
/// `on_rewired` callbacks to call, one per finished repair.
fn repairs(
    session: &mut crate::net::Session,
    journal: &mut crate::journal::Journal,
    events: &mut Events,
) -> Vec<(FnPtr, Map)> {
    let mut fired = Vec::new();
    let Some(keeper) = events.keeper.as_mut() else {
        return fired;
    };
    for done in keeper.step(session, journal) {
        let mut m = super::api::to_map(&done);
        m.insert(
            "container".into(),
            if done.ns_kind == "docker" {
                Dynamic::from(done.namespace.clone())
            } else {
                Dynamic::UNIT
            },
        );
        for hook in &events.hooks {
            if matches!(hook.on, HookKind::Rewired) {
                fired.push((hook.callback.clone(), m.clone()));
            }
        }
    }
    fired
}

/// How a hook's callback failed.
enum HookError {
    /// The run was terminated (a signal, a limit): end at once.
    Terminated(Box<EvalAltResult>),
    /// The callback threw: the message names the hook and the error.
    Failed(String),
}

/// Call a hook's callback with its event map.
fn call_hook(ctx: &NativeCallContext, callback: &FnPtr, event: Map) -> Result<(), HookError> {
    let what = describe_event(callback, &event);
    match callback.call_within_context::<Dynamic>(ctx, (event,)) {
        Ok(_) => Ok(()),
        Err(e) if matches!(*e, EvalAltResult::ErrorTerminated(..)) => Err(HookError::Terminated(e)),
        Err(e) => {
            let source = ctx.call_source().unwrap_or("<script>");
            Err(HookError::Failed(format!(
                "{what} failed: {}",
                super::format_runtime_error(source, &e)
            )))
        }
    }
}

/// `sleep(ms)`. While the run keeps its lab wired, repairs go on during a
/// sleep too (a drill restarts a container, sleeps, then checks traffic),
/// and their `on_rewired` hooks run; other hooks wait for `watch`, as
/// always. Without a kept lab it is a plain interruptible sleep.
fn sleep(ctx: &NativeCallContext, world: &SharedWorld, ms: i64) -> R<()> {
    let total = super::api::ms(ms, "sleep")?;
    if world.borrow().events.keeper.is_none() {
        return interruptible_sleep(total);
    }
    let deadline = Instant::now() + total;
    loop {
        super::api::stop_if_interrupted()?;
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        let fired = {
            let mut w = world.borrow_mut();
            let World {
                session,
                events,
                journal,
            } = &mut *w;
            if let Some(keeper) = &events.keeper {
                let left = (deadline - now).min(keeper.timeout());
                let mut fds: Vec<PollFd> = keeper
                    .fds()
                    .into_iter()
                    .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
                    .collect();
                let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
                let _ = poll(&mut fds, PollTimeout::from(ms));
            }
            repairs(session, journal, events)
        };
        for (callback, event) in fired {
            match call_hook(ctx, &callback, event) {
                Ok(()) => {}
                Err(HookError::Terminated(e)) => return Err(e),
                Err(HookError::Failed(message)) => {
                    return Err(EvalAltResult::ErrorRuntime(message.into(), Position::NONE).into())
                }
            }
        }
    }
}

/// Dispatch events until `ms` pass or `stop_watch()`. A hook that fails
/// fails the watch, and so the run (non-zero exit, undone unless `--keep`):
/// at once, or with `keep_going` after the watch's time is up (the first
/// failure). A stop signal or a limit ends it at once, whatever the hook
/// was doing.
fn watch(ctx: &NativeCallContext, world: &SharedWorld, ms: i64, keep_going: bool) -> R<i64> {
    let ms = u64::try_from(ms).map_err(|_| {
        fail(Error::Invalid(format!(
            "watch: {ms} is not a number of milliseconds"
        )))
    })?;
    let started = Instant::now();
    let deadline = started + Duration::from_millis(ms);
    world.borrow_mut().events.stopped = false;
    let mut dispatched = 0;
    let mut progress = crate::progress::Progress::timed(Duration::from_millis(ms));
    let mut first_failure: Option<Box<EvalAltResult>> = None;
    loop {
        super::api::stop_if_interrupted()?;
        if world.borrow().events.stopped || Instant::now() >= deadline {
            return match first_failure {
                Some(e) => Err(e),
                None => Ok(dispatched),
            };
        }
        // A counter redrawn 10 times a second: tenths of a second.
        progress.show(|| {
            format!(
                "watching: {:.1} s of {:.1} s, {dispatched} hook{} fired",
                started.elapsed().as_secs_f64(),
                Duration::from_millis(ms).as_secs_f64(),
                if dispatched == 1 { "" } else { "s" }
            )
        });
        let fired = collect(&mut world.borrow_mut(), deadline).map_err(fail)?;
        for (callback, event) in fired {
            dispatched += 1;
            let message = match call_hook(ctx, &callback, event) {
                Ok(()) => continue,
                Err(HookError::Terminated(e)) => return Err(e),
                Err(HookError::Failed(message)) => message,
            };
            let failure: Box<EvalAltResult> =
                EvalAltResult::ErrorRuntime(message.clone().into(), Position::NONE).into();
            if !keep_going {
                return Err(failure);
            }
            crate::say!("koko: {message}");
            first_failure.get_or_insert(failure);
        }
    }
}

/// The end of a `--keep-wired` run: keep the lab wired (dispatching hooks,
/// `on_rewired` among them) until a stop signal, which is returned as the
/// error that ends the run (undone, or kept with `--keep`, by the caller).
/// A failing hook ends the watch too, with its message.
pub fn keep_watching(
    world: &SharedWorld,
    engine: &Engine,
    ast: &rhai::AST,
    file: &str,
) -> std::result::Result<(), (String, i32)> {
    if let Err(e) = world.borrow_mut().keep_wired() {
        return Err((e.to_string(), e.exit_code()));
    }
    world.borrow_mut().events.stopped = false;
    loop {
        if let Some(e) = super::stop_reason() {
            return Err((e.to_string(), e.exit_code()));
        }
        let far = Instant::now() + Duration::from_secs(3600);
        let fired = collect(&mut world.borrow_mut(), far).map_err(|e| {
            let code = e.exit_code();
            (e.to_string(), code)
        })?;
        for (callback, event) in fired {
            let what = describe_event(&callback, &event);
            if let Err(e) = callback.call::<Dynamic>(engine, ast, (event,)) {
                if let Some(signal) = crate::interrupt::pending() {
                    let e = Error::Interrupted { signal };
                    return Err((e.to_string(), e.exit_code()));
                }
                return Err((
                    format!("{what} failed: {}", super::format_runtime_error(file, &e)),
                    1,
                ));
            }
        }
    }
}

/// "the hook 'repair' (link_down of link1 in a)", or "the hook on
/// link_down of link1 in a" for a closure, for errors.
fn describe_event(callback: &FnPtr, event: &Map) -> String {
    let field = |k: &str| event.get(k).filter(|v| !v.is_unit()).map(|v| v.to_string());
    let kind = field("kind").unwrap_or_else(|| "event".into());
    let on = match (field("link"), field("namespace")) {
        (Some(link), Some(ns)) => format!(" of {link} in {ns}"),
        (None, Some(ns)) => format!(" of {ns}"),
        _ => String::new(),
    };
    match callback.fn_name() {
        // A closure: Rhai's generated name says nothing to the user.
        name if name.starts_with("anon$") => format!("the hook on {kind}{on}"),
        name => format!("the hook '{name}' ({kind}{on})"),
    }
}

/// Wait up to `ms` for the first successful probe started at or after `t`.
fn wait_success_after(probe: &ProbeRef, t: f64, ms: i64) -> R<Dynamic> {
    let end = Instant::now() + Duration::from_millis(ms.max(0) as u64);
    loop {
        if let Some(at) = probe.0.borrow().first_success_after(t) {
            return Ok(at.into());
        }
        if Instant::now() >= end {
            return Ok(Dynamic::UNIT);
        }
        interruptible_sleep(Duration::from_millis(2))?;
    }
}

/// A running outage probe, as scripts see it.
#[derive(Clone)]
pub struct ProbeRef(Rc<RefCell<OutageProbe>>);

/// `watch(ms, #{...})`'s options.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct WatchOpts {
    /// A failing hook ends the watch at once (true, the default) or when
    /// its time is up (false). Either way the watch fails.
    stop_on_error: bool,
}

impl Default for WatchOpts {
    fn default() -> WatchOpts {
        WatchOpts {
            stop_on_error: true,
        }
    }
}

/// `probe_start(ns, ip, port, #{...})`'s options.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ProbeOpts {
    interval_ms: u64,
    timeout_ms: u64,
}

impl Default for ProbeOpts {
    fn default() -> ProbeOpts {
        ProbeOpts {
            interval_ms: 5,
            timeout_ms: 100,
        }
    }
}

/// `on_probe_loss(probe, #{...}, f)`'s options.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LossOpts {
    loss_pct: f64,
    #[serde(default = "default_window")]
    window_ms: f64,
    #[serde(default = "default_min_samples")]
    min_samples: u64,
}

/// `on_probe_rtt(probe, #{...}, f)`'s options.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RttOpts {
    above_ms: f64,
    #[serde(default = "default_window")]
    window_ms: f64,
    #[serde(default = "default_min_samples")]
    min_samples: u64,
}

fn default_window() -> f64 {
    1000.0
}

fn default_min_samples() -> u64 {
    5
}

/// Check a probe hook's window and threshold.
fn check_window(function: &str, window_ms: f64, min_samples: u64) -> crate::Result<()> {
    if window_ms.is_nan() || window_ms <= 0.0 {
        return Err(Error::Invalid(format!(
            "{function}(): window_ms {window_ms} must be positive"
        )));
    }
    if min_samples == 0 {
        return Err(Error::Invalid(format!(
            "{function}(): min_samples must be at least 1"
        )));
    }
    Ok(())
}

fn add_hook(world: &SharedWorld, on: HookKind, callback: FnPtr) {
    world.borrow_mut().events.hooks.push(Hook {
        on,
        callback,
        arming: Arming::once(),
    });
}

pub fn register(engine: &mut Engine, world: &SharedWorld) {
    let w = world.clone();
    sys!(
        engine,
        "on_link_down",
        /// run the hook when the link goes down or disappears (its peer's namespace died); ev = #{kind, namespace, link, time}
        move |ns: NsRef, name: &str, f: FnPtr| -> R<()> {
            add_link_hook(&w, &ns.0, name, f, true)
        }
    );
    let w = world.clone();
    sys!(
        engine,
        "on_link_down",
        /// the same for a link
        move |link: LinkRef, f: FnPtr| -> R<()> {
            add_link_hook(&w, &link.ns, &link.name, f, true)
        }
    );
    let w = world.clone();
    sys!(
        engine,
        "on_link_up",
        /// run the hook when the link comes up (with carrier)
        move |ns: NsRef, name: &str, f: FnPtr| -> R<()> {
            add_link_hook(&w, &ns.0, name, f, false)
        }
    );
    let w = world.clone();
    sys!(
        engine,
        "on_container_exit",
        /// run the hook when the container stops
        move |name: &str, f: FnPtr| -> R<()> {
            let ns = w
                .borrow()
                .session
                .resolve(&NsSpec::Docker(name.to_string()))
                .map_err(fail)?;
            w.borrow_mut().events.watch_lifetime(&ns).map_err(fail)?;
            add_hook(
                &w,
                HookKind::ContainerExit {
                    name: name.to_string(),
                    ns,
                },
                f,
            );
            Ok(())
        }
    );
    let w = world.clone();
    sys!(
        engine,
        "on_container_exit",
        /// run the hook when the namespace's container stops (e.g. `cri("4f2a")`, `docker("web")`)
        move |ns: NsRef, f: FnPtr| -> R<()> {
            let ns = ns.0;
            if ns.process().is_none() {
                return Err(fail(crate::error::Error::Invalid(format!(
                    "on_container_exit: {ns} is not a container's namespace"
                ))));
            }
            w.borrow_mut().events.watch_lifetime(&ns).map_err(fail)?;
            add_hook(
                &w,
                HookKind::ContainerExit {
                    name: ns.name().to_string(),
                    ns,
                },
                f,
            );
            Ok(())
        }
    );
    let w = world.clone();
    sys!(
        engine,
        "watch",
        /// dispatch events for up to ms (or until stop_watch()); returns how many hooks ran; a failing hook ends the watch (and the run) with its error
        move |ctx: NativeCallContext, ms: i64| -> R<i64> { watch(&ctx, &w, ms, false) }
    );
    let w = world.clone();
    sys!(
        engine,
        "watch",
        /// the same with options #{stop_on_error}: false keeps dispatching after a failing hook, and the watch fails with the first error when its time is up
        move |ctx: NativeCallContext, ms: i64, opts: Map| -> R<i64> {
            let o: WatchOpts = super::options::from_map("watch", &opts)?;
            watch(&ctx, &w, ms, !o.stop_on_error)
        }
    );
    let w = world.clone();
    sys!(
        engine,
        "sleep",
        /// wait ms milliseconds (Ctrl-C, SIGTERM or SIGHUP stop it and the run); a kept lab's repairs and their on_rewired hooks go on meanwhile
        move |ctx: NativeCallContext, ms: i64| -> R<()> { sleep(&ctx, &w, ms) }
    );
    let w = world.clone();
    sys!(
        engine,
        "keep_wired",
        /// keep the lab wired while its containers and namespaces restart: repairs run during watch(), and when the script ends koko stays watching until Ctrl-C (like `koko run --keep-wired`)
        move || -> R<()> { w.borrow_mut().keep_wired().map_err(fail) }
    );
    let w = world.clone();
    sys!(
        engine,
        "keep_wired",
        /// keep_wired(true) is keep_wired(); keep_wired(false) stops keeping the lab wired: no more repairs, and the run ends with its last statement (a drill that measured its repairs and is done)
        move |on: bool| -> R<()> {
            let mut w = w.borrow_mut();
            if on {
                w.keep_wired().map_err(fail)
            } else {
                w.events.keeper = None;
                Ok(())
            }
        }
    );
    let w = world.clone();
    sys!(
        engine,
        "on_rewired",
        /// run the hook after each repair of a kept lab; ev = #{kind: "rewired"|"removed", namespace, container, ns_kind, links, addresses, routes, sysctls, mirrors, impairments, ms_after_start, time}
        move |f: FnPtr| -> R<()> {
            add_hook(&w, HookKind::Rewired, f);
            Ok(())
        }
    );
    let w = world.clone();
    sys!(
        engine,
        "stop_watch",
        /// end the current watch() (call it from a hook)
        move || { w.borrow_mut().events.stopped = true }
    );

    engine.register_type_with_name::<ProbeRef>("Probe");
    sys!(
        engine,
        "probe_start",
        /// keep opening TCP connections from ns to ip:port in the background; opts: #{interval_ms, timeout_ms}
        |ns: NsRef, ip: &str, port: i64, opts: Map| -> R<ProbeRef> {
            let o: ProbeOpts = super::options::from_map("probe_start", &opts)?;
            let ip: std::net::IpAddr = ip
                .parse()
                .map_err(|_| fail(Error::Invalid(format!("'{ip}' is not an IP address"))))?;
            let port = u16::try_from(port)
                .map_err(|_| fail(Error::Invalid(format!("{port} is not a TCP port"))))?;
            let probe = OutageProbe::start(
                &ns.0,
                SocketAddr::new(ip, port),
                Duration::from_millis(o.interval_ms.max(1)),
                Duration::from_millis(o.timeout_ms.max(1)),
            );
            Ok(ProbeRef(Rc::new(RefCell::new(probe))))
        }
    );
    let w = world.clone();
    sys!(
        engine,
        "on_probe_loss",
        /// run the hook when the probe's loss over the last window_ms reaches loss_pct: #{loss_pct, window_ms, min_samples}; ev = #{kind, loss_pct, rtt_ms, sent, lost, window_ms, time}
        move |probe: ProbeRef, opts: Map, f: FnPtr| -> R<()> {
            let o: LossOpts = super::options::from_map("on_probe_loss", &opts)?;
            check_window("on_probe_loss", o.window_ms, o.min_samples).map_err(fail)?;
            if o.loss_pct.is_nan() || o.loss_pct <= 0.0 || o.loss_pct > 100.0 {
                return Err(fail(Error::Invalid(format!(
                    "on_probe_loss(): loss_pct {} is not a percentage above 0",
                    o.loss_pct
                ))));
            }
            let on = HookKind::ProbeLoss {
                probe,
                loss_pct: o.loss_pct,
                window_ms: o.window_ms,
                min_samples: o.min_samples,
            };
            add_hook(&w, on, f);
            Ok(())
        }
    );
    let w = world.clone();
    sys!(
        engine,
        "on_probe_rtt",
        /// run the hook when the probe's median connection time over the last window_ms goes above above_ms: #{above_ms, window_ms, min_samples}
        move |probe: ProbeRef, opts: Map, f: FnPtr| -> R<()> {
            let o: RttOpts = super::options::from_map("on_probe_rtt", &opts)?;
            check_window("on_probe_rtt", o.window_ms, o.min_samples).map_err(fail)?;
            if o.above_ms.is_nan() || o.above_ms <= 0.0 {
                return Err(fail(Error::Invalid(format!(
                    "on_probe_rtt(): above_ms {} must be positive",
                    o.above_ms
                ))));
            }
            let on = HookKind::ProbeRtt {
                probe,
                above_ms: o.above_ms,
                window_ms: o.window_ms,
                min_samples: o.min_samples,
            };
            add_hook(&w, on, f);
            Ok(())
        }
    );
    sys!(
        engine,
        "report",
        /// #{sent, lost, first_failure_ms, first_recovery_ms, outage_ms} so far
        |probe: &mut ProbeRef| -> Map { to_map(&probe.0.borrow().report()) }
    );
    sys!(
        engine,
        "window",
        /// loss and median connection time over the last ms: #{window_ms, sent, lost, loss_pct, rtt_p50_ms}
        |probe: &mut ProbeRef, ms: i64| -> Map { to_map(&probe.0.borrow().window(ms.max(1) as f64)) }
    );
    sys!(
        engine,
        "stop",
        /// stop the probe; the final report
        |probe: &mut ProbeRef| -> Map { to_map(&probe.0.borrow_mut().stop()) }
    );
    sys!(
        engine,
        "wait_success_after",
        /// wait up to ms for the first successful probe started at or after t (ms since the epoch); its time, or () on timeout
        |probe: &mut ProbeRef, t: f64, ms: i64| -> R<Dynamic> { wait_success_after(probe, t, ms) }
    );
    sys!(
        engine,
        "wait_success_after",
        /// the same with t as now_ms() gives it
        |probe: &mut ProbeRef, t: i64, ms: i64| -> R<Dynamic> {
            wait_success_after(probe, t as f64, ms)
        }
    );
    sys!(
        engine,
        "wait_recovery",
        /// wait up to ms until the probe saw traffic recover after a failure
        |probe: &mut ProbeRef, ms: i64| -> R<bool> {
            let end = Instant::now() + Duration::from_millis(ms.max(0) as u64);
            while Instant::now() < end {
                if probe.0.borrow().report().first_recovery_ms.is_some() {
                    return Ok(true);
                }
                interruptible_sleep(Duration::from_millis(2))?;
            }
            Ok(probe.0.borrow().report().first_recovery_ms.is_some())
        }
    );
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
    fn a_quality_hook_fires_when_the_condition_starts_and_rearms_when_it_ends() {
        let mut a = Arming::once();
        assert!(a.condition(true), "degraded: fire");
        assert!(!a.condition(true), "still degraded: once");
        assert!(!a.condition(false), "healthy again: re-armed, no firing");
        assert!(a.condition(true), "degraded again: fire again");
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
