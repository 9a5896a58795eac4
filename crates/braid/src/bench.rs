//! `braid bench`: Braid's client against the C-tor client on private
//! networks of real C-tor relays.
//!
//! - [`single`](mod@single): one circuit each, unshaped and shaped links.
//! - [`conflux`](mod@conflux): Conflux sets over middles with different links,
//!   downloads and uploads, with each leg's capacity measured alone each
//!   way, per-leg time series and a plot.
//! - [`relay`](mod@relay): a Braid exit against a C-tor exit, bulk
//!   downloads and a load run with KIST on and off.
//! - [`soak`](mod@soak): `braid proxy` under a long mixed load while leg
//!   middles die: memory, descriptors and tunnels over time.
//! - [`resume`](mod@resume): the busy leg's middle killed under a transfer,
//!   through the Braid exit (resumption) and a C-tor exit.
//! - [`dir`](mod@dir): directory bootstrap, cold, warm and by diff, time
//!   and bytes, Braid's client beside the C-tor client.
//! - [`prom`]: a tolerant parser of Prometheus text (the proxy's
//!   `/metrics`); [`scrape`]: scraping it into per-leg time series.
//! - [`svg`]: hand-written SVG line charts.
//! - [`proc`]: CPU time and peak memory from `/proc`; [`proxy`]: `braid
//!   proxy` as a child process; [`output`]: result files; [`error`].

mod conflux;
mod dir;
mod error;
mod output;
mod proc;
mod prom;
mod proxy;
mod relay;
mod resume;
mod scrape;
mod single;
mod soak;
mod svg;

pub(crate) use conflux::conflux;
pub(crate) use dir::dir;
pub(crate) use relay::relay;
pub(crate) use resume::resume;
pub(crate) use single::single;
pub(crate) use soak::soak;

/// The median of `v` (the upper one of an even count), `None` if empty.
fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied()
}
