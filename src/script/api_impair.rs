//! Script bindings for degraded links (see [`crate::impair`]):
//! `link.impair(#{...})`, `link.impairments()`, `link.clear_impairments()`,
//! `link.blackhole()` / `link.restore()`, `link.unplug()` / `link.plug()`,
//! `link.flap(#{down_ms, up_ms, count})`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rhai::{Dynamic, Engine, EvalAltResult, Map};
use serde::Deserialize;

use super::api::{fail, with_world, LinkRef};
use super::SharedWorld;
use crate::error::Error;
use crate::impair::{self, End, Impairment, LinkPair, Rate};
use crate::journal::Undo;
use crate::net::tc::MirrorDir as Direction;

type R<T> = Result<T, Box<EvalAltResult>>;

/// `link.impair(#{...})`'s options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ImpairOpts {
    delay_ms: Option<f64>,
    jitter_ms: Option<f64>,
    loss_pct: Option<f64>,
    rate: Option<String>,
    duplicate_pct: Option<f64>,
    corrupt_pct: Option<f64>,
    reorder_pct: Option<f64>,
    limit: Option<u32>,
    dir: Option<String>,
}

impl ImpairOpts {
    fn into_request(self) -> crate::Result<(Impairment, Direction)> {
        let dir = match self.dir.as_deref() {
            None => Direction::Egress,
            Some(d) => d.parse::<Direction>().map_err(|_| {
                Error::Invalid(format!(
                    "impair(): dir '{d}' is not one of egress, ingress, both"
                ))
            })?,
        };
        let rate = match &self.rate {
            Some(r) => Some(r.parse::<Rate>()?),
            None => None,
        };
        Ok((
            Impairment {
                delay_ms: self.delay_ms.unwrap_or(0.0),
                jitter_ms: self.jitter_ms.unwrap_or(0.0),
                loss_pct: self.loss_pct.unwrap_or(0.0),
                rate,
                duplicate_pct: self.duplicate_pct.unwrap_or(0.0),
                corrupt_pct: self.corrupt_pct.unwrap_or(0.0),
                reorder_pct: self.reorder_pct.unwrap_or(0.0),
                limit: self.limit.unwrap_or(0),
            },
            dir,
        ))
    }
}

/// `link.flap(#{...})`'s options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlapOpts {
    down_ms: u64,
    up_ms: u64,
    count: u32,
}

/// A running flap, as scripts see it.
#[derive(Clone)]
pub struct FlapRef(Arc<Mutex<impair::Flap>>);

/// The link as an end (unplug, plug and flap need no peer).
fn end_of(l: &LinkRef) -> End {
    End {
        ns: l.ns.clone(),
        link: l.name.clone(),
    }
}

/// The link and its peer (known to the script if koko made the pair,
/// else asked of the kernel).
fn pair(world: &SharedWorld, l: &LinkRef) -> R<LinkPair> {
    let end = end_of(l);
    let known = l.peer.as_ref().map(|(ns, name)| End {
        ns: ns.clone(),
        link: name.clone(),
    });
    LinkPair::resolve(&world.borrow().session, end, known).map_err(fail)
}

fn report(i: &impair::Impairments) -> R<Dynamic> {
    rhai::serde::to_dynamic(i).map_err(|e| fail(Error::Internal(e.to_string())))
}

pub fn register(engine: &mut Engine, world: &SharedWorld) {
    let w = world.clone();
    sys!(
        engine,
        "impair",
        /// impair what the link sends (dir "egress", default), receives ("ingress") or both: #{delay_ms, jitter_ms, loss_pct, rate: "10mbit", duplicate_pct, corrupt_pct, reorder_pct, limit, dir}; returns link.impairments()
        move |l: &mut LinkRef, opts: Map| -> R<Dynamic> {
            let o: ImpairOpts = super::options::from_map("impair", &opts)?;
            let (what, dir) = o.into_request().map_err(fail)?;
            let p = pair(&w, l)?;
            let got = with_world(&w, |s, j| impair::impair(s, j, &p, dir, &what))?;
            report(&got)
        }
    );
    let w = world.clone();
    sys!(
        engine,
        "impairments",
        /// what the kernel has on the link: #{backend, egress, ingress, blackhole}
        move |l: &mut LinkRef| -> R<Dynamic> {
            let p = pair(&w, l)?;
            report(&with_world(&w, |s, _| impair::impairments(s, &p))?)
        }
    );
    let w = world.clone();
    sys!(
        engine,
        "clear_impairments",
        /// remove every impairment and blackhole koko set on the link (both directions)
        move |l: &mut LinkRef| -> R<Dynamic> {
            let p = pair(&w, l)?;
            report(&with_world(&w, |s, j| impair::clear(s, j, &p))?)
        }
    );
    let w = world.clone();
    sys!(
        engine,
        "blackhole",
        /// drop every packet both ways while both ends stay up
        move |l: &mut LinkRef| -> R<()> {
            let p = pair(&w, l)?;
            with_world(&w, |s, j| impair::blackhole(s, j, &p))
        }
    );
    let w = world.clone();
    sys!(
        engine,
        "restore",
        /// end the blackholes on the link (this run's, or koko's found on it); returns how many drop filters went
        move |l: &mut LinkRef| -> R<i64> {
            let p = pair(&w, l)?;
            with_world(&w, |s, j| impair::restore(s, j, &p)).map(|n| n as i64)
        }
    );
    let w = world.clone();
    sys!(
        engine,
        "unplug",
        /// pull the cable: the link goes down, its peer sees NO-CARRIER
        move |l: &mut LinkRef| -> R<()> {
            with_world(&w, |s, j| impair::unplug(s, j, &end_of(l)))
        }
    );
    let w = world.clone();
    sys!(
        engine,
        "plug",
        /// put the cable back (the link up, its routes back); false if this run had not unplugged it
        move |l: &mut LinkRef| -> R<bool> {
            with_world(&w, |s, j| impair::plug(s, j, &end_of(l)))
        }
    );

    engine.register_type_with_name::<FlapRef>("Flap");
    let w = world.clone();
    sys!(
        engine,
        "flap",
        /// flap the link while the script goes on: #{down_ms, up_ms, count}; link hooks fire on every down
        move |l: &mut LinkRef, opts: Map| -> R<FlapRef> {
            let o: FlapOpts = super::options::from_map("flap", &opts)?;
            let end = end_of(l);
            with_world(&w, |s, j| {
                let flap = impair::flap(
                    s,
                    &end,
                    Duration::from_millis(o.down_ms),
                    Duration::from_millis(o.up_ms),
                    o.count,
                )?;
                let shared = Arc::new(Mutex::new(flap));
                j.record(format!("flapping {end}"), Undo::StopFlap(shared.clone()));
                Ok(FlapRef(shared))
            })
        }
    );
    sys!(
        engine,
        "wait",
        /// wait until the flap is done; returns how many downs there were
        |flap: &mut FlapRef| -> R<i64> {
            // Wait in small steps so Ctrl-C still ends the run.
            while !flap.0.lock().expect("flap").done() {
                super::api::interruptible_sleep(Duration::from_millis(5))?;
            }
            let mut f = flap.0.lock().expect("flap");
            f.join().map_err(fail)?;
            Ok(f.downs() as i64)
        }
    );
    sys!(
        engine,
        "stop",
        /// stop flapping now (the link is left up); returns how many downs there were
        |flap: &mut FlapRef| -> R<i64> {
            let mut f = flap.0.lock().expect("flap");
            f.stop().map_err(fail)?;
            Ok(f.downs() as i64)
        }
    );
    getter!(
        engine,
        "downs",
        /// how many times the flapping link has gone down so far
        |flap: &mut FlapRef| -> i64 { flap.0.lock().expect("flap").downs() as i64 }
    );
}
