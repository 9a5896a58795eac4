//! Flow and congestion control: SENDMEs (tor-spec §7.3, §7.4),
//! authenticated SENDMEs (proposal 289), RTT-based congestion control
//! TOR_VEGAS and XON/XOFF stream flow control (proposal 324).
//!
//! Everything here is a plain state machine: no I/O, no clock of its own
//! (`now: Instant` is passed in), no panics on network input. Protocol
//! violations by the peer are [`CcError`] variants naming the rule.
//!
//! - [`params`]: consensus parameters with C-tor's defaults and ranges.
//! - [`rtt`]: RTT estimation from SENDMEs, with the clock heuristics.
//! - [`vegas`]: the TOR_VEGAS congestion window.
//! - [`sendme`]: SENDME v1 tags and bodies, fixed package/deliver windows.
//! - [`circuit`]: one circuit hop's send control (Vegas or fixed) with tag
//!   checking, for the circuit reactor.
//! - [`flow`]: stream-level XON/XOFF, and the choice between it and fixed
//!   stream windows.
//! - [`error`]: the error type, [`CcError`].

pub mod circuit;
pub mod error;
pub mod flow;
pub mod params;
pub mod rtt;
pub mod sendme;
pub mod vegas;

pub use circuit::{CircuitSender, SendControl};
pub use error::{CcError, WindowKind};
pub use flow::{
    Drained, EdgeKind, FlowSignal, StreamFlowCtrl, XOFF_GRACE_PERIOD, XonXoffReceiver,
    XonXoffSender,
};
pub use params::{CcAlg, CcParams, CcPath, FlowParams, ParamSource, VegasThresholds};
pub use rtt::{RttContext, RttEstimator, RttSample};
pub use sendme::{
    DeliverWindow, PackageWindow, SendmeTag, SendmeTags, parse_sendme_body, sendme_v1_body,
};
pub use vegas::Vegas;
