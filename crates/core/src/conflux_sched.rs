//! Conflux leg schedulers (proposal 329 §3): which leg of a linked set the
//! next multiplexed cell (DATA, BEGIN, END, ...) goes out on.
//!
//! Sans-IO like the rest of the core: a scheduler sees one [`LegView`] per
//! leg (RTT estimates, congestion window, cells in flight, whether the leg
//! may send now, optionally a bandwidth estimate) and `now`, and answers
//! with a [`LegId`](crate::ids::LegId) or `None` ("send nothing now; ask
//! again at the next event", e.g. a SENDME). Schedulers hold no clock, no
//! sockets and never panic.
//!
//! - [`leg`]: [`LegView`], the per-leg input.
//! - [`scheduler`]: the [`Scheduler`] trait and [`SchedulerKind`], a name
//!   for each scheduler.
//! - [`min_rtt`]: [`MinRtt`], C-tor's `CONFLUX_ALG_MINRTT` (only ever the
//!   lowest-RTT leg; for latency).
//! - [`low_rtt`]: [`LowRtt`], C-tor's `CONFLUX_ALG_LOWRTT` (the lowest-RTT
//!   leg that has room; what C-tor exits run for downloads).
//! - [`ecf`]: [`Ecf`], Earliest Completion First (Lim et al., CoNEXT 2017):
//!   a slower leg is used only when it delivers before the fastest leg
//!   would; for legs of different RTT and bandwidth. Optionally with a
//!   reorder budget in the manner of BLEST (Ferlin et al., 2016).
//! - [`chooser`]: [`SchedulerChooser`], a scheduler as a Conflux set's
//!   [`LegChooser`](crate::conflux::LegChooser).
//! - [`rate`]: [`DeliveryRate`], a per-leg bandwidth estimate from SENDME
//!   arrivals, for [`LegView::est_bandwidth`].

pub mod chooser;
pub mod ecf;
pub mod leg;
pub mod low_rtt;
pub mod min_rtt;
pub mod rate;
pub mod scheduler;

pub use chooser::{SchedulerChooser, leg_view};
pub use ecf::Ecf;
pub use leg::LegView;
pub use low_rtt::LowRtt;
pub use min_rtt::MinRtt;
pub use rate::DeliveryRate;
pub use scheduler::{Scheduler, SchedulerKind};
