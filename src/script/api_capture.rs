//! Packet capture in scripts: `link.capture("out.pcap", #{count,
//! duration_ms, dir, snaplen})` starts a [`crate::capture::Capture`] (the
//! same one `koko capture` runs) and returns at once with a `Capture`
//! handle, so the script goes on making the traffic it wants to see:
//!
//! ```rhai
//! let cap = link.capture("drill.pcap", #{dir: "both", snaplen: 128});
//! client.http_get("http://10.0.3.2/");
//! print(cap.packets);          // captured so far
//! let s = cap.stop();          // #{packets, bytes, dropped, file, reason, message}
//! ```
//!
//! `cap.wait()` blocks until the capture ends by itself (count, duration,
//! the link vanishing); Ctrl-C stops the wait and the script. Captures
//! still running when the script ends are stopped then, and their files
//! closed: the engine owns a list of every capture the script started,
//! and dropping the engine (the end of `koko run`, `koko test`'s script,
//! the REPL) stops them and prints the summary of any the script did not
//! ask for. A handle the script drops does not stop its capture.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use rhai::{Engine, Map};
use serde::Deserialize;

use super::api::{fail, stop_if_interrupted, to_map, LinkRef, R};
use super::options::from_map;
use super::SharedWorld;
use crate::capture::{Capture, Direction, Options, Sink, Summary};

/// A running (or ended) capture as scripts see it.
#[derive(Clone)]
pub struct CaptureRef(Rc<Slot>);

/// One capture and whether the script has seen its summary.
struct Slot {
    capture: RefCell<Capture>,
    reported: std::cell::Cell<bool>,
}

impl CaptureRef {
    fn summary(&self, s: Summary) -> Map {
        self.0.reported.set(true);
        to_map(&s)
    }
}

/// Every capture the script started; stops them when the engine goes.
#[derive(Default)]
struct Registry(RefCell<Vec<Rc<Slot>>>);

impl Drop for Registry {
    fn drop(&mut self) {
        for slot in self.0.borrow().iter() {
            let mut capture = slot.capture.borrow_mut();
            let was_running = capture.ended().is_none();
            let summary = capture.stop();
            if was_running {
                crate::say!(
                    "koko: stopped at the end of the script: {}",
                    summary.message
                );
            } else if !slot.reported.get() {
                crate::say!("koko: {}", summary.message);
            }
        }
    }
}

/// The options of `link.capture(file, #{...})`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CaptureOpts {
    count: Option<u64>,
    duration_ms: Option<u64>,
    dir: Option<String>,
    snaplen: Option<u32>,
}

fn start(registry: &Rc<Registry>, link: &LinkRef, file: &str, opts: &Map) -> R<CaptureRef> {
    let o: CaptureOpts = from_map("capture", opts)?;
    let mut options = Options {
        count: o.count,
        duration: o.duration_ms.map(Duration::from_millis),
        ..Options::default()
    };
    if let Some(dir) = &o.dir {
        options.dir = Direction::parse(dir).map_err(fail)?;
    }
    if let Some(snaplen) = o.snaplen {
        options.snaplen = snaplen;
    }
    if file.is_empty() {
        return Err(fail(crate::Error::Invalid(
            "capture(): the file name is empty".into(),
        )));
    }
    let capture =
        Capture::start(&link.ns, &link.name, Sink::File(file.into()), options).map_err(fail)?;
    let slot = Rc::new(Slot {
        capture: RefCell::new(capture),
        reported: std::cell::Cell::new(false),
    });
    registry.0.borrow_mut().push(slot.clone());
    Ok(CaptureRef(slot))
}

pub fn register(engine: &mut Engine, _world: &SharedWorld) {
    engine.register_type_with_name::<CaptureRef>("Capture");
    let registry = Rc::new(Registry::default());
    let r = registry.clone();
    sys!(
        engine,
        "capture",
        /// capture the link's packets into a pcap file while the script goes on: a Capture handle
        move |link: &mut LinkRef, file: &str| -> R<CaptureRef> {
            start(&r, link, file, &Map::new())
        }
    );
    let r = registry;
    sys!(
        engine,
        "capture",
        /// capture with options #{count, duration_ms, dir: "in"|"out"|"both", snaplen}: a Capture handle
        move |link: &mut LinkRef, file: &str, opts: Map| -> R<CaptureRef> {
            start(&r, link, file, &opts)
        }
    );
    sys!(
        engine,
        "stop",
        /// stop the capture and close its file: #{packets, bytes, dropped, file, reason, message}
        |cap: &mut CaptureRef| -> R<Map> {
            let summary = cap.0.capture.borrow_mut().stop();
            Ok(cap.summary(summary))
        }
    );
    sys!(
        engine,
        "wait",
        /// wait until the capture ends by itself (count, duration, link gone): its summary map
        |cap: &mut CaptureRef| -> R<Map> {
            let waited = cap.0.capture.borrow_mut().wait();
            stop_if_interrupted()?;
            Ok(cap.summary(waited.map_err(fail)?))
        }
    );
    getter!(
        engine,
        "packets",
        /// packets captured so far
        |cap: &mut CaptureRef| -> i64 {
            i64::try_from(cap.0.capture.borrow().packets()).unwrap_or(i64::MAX)
        }
    );
    getter!(
        engine,
        "running",
        /// true until the capture has ended (stopped, count or duration reached, link gone)
        |cap: &mut CaptureRef| -> bool {
            cap.0.capture.borrow_mut().ended().is_none()
        }
    );
}
