//! Consensus parameters of flow and congestion control, with C-tor's
//! defaults and ranges.
//!
//! The names, defaults and ranges follow proposal 324 §6.5 where C-tor
//! (0.4.9, `congestion_control_common.c`, `congestion_control_vegas.c`,
//! `congestion_control_flow.c`, `sendme.c`) agrees with it, and C-tor where
//! they differ (C-tor's tuned defaults are what the network runs: e.g.
//! `cc_cwnd_inc` 1 with `cc_cwnd_inc_rate` 31, not 31 and 1). A value outside
//! its range is clamped to the nearest bound, as C-tor's
//! `networkstatus_get_param` does; a missing value takes the default.
//!
//! Where C-tor stores a parameter in a narrower integer than its range
//! (`cc_ewma_max` in a `uint8_t`, `cc_vegas_delta_*` in a `uint16_t`) it
//! silently truncates; Braid keeps the clamped value instead.

use std::collections::{BTreeMap, HashMap};

/// Bytes of stream data in one full relay DATA cell (relay cell format of
/// tor-spec §6.1: 509 − 11). Flow-control limits in cells are converted to
/// bytes with it, as C-tor does.
pub const RELAY_PAYLOAD_SIZE: u32 = 498;

/// Initial and maximum circuit window for fixed-window flow control
/// (tor-spec §7.3, C-tor `CIRCWINDOW_START_MAX`).
pub const CIRCWINDOW_START_MAX: u32 = 1000;
/// Circuit window increment (tor-spec §7.3).
pub const CIRCWINDOW_INCREMENT: u32 = 100;
/// Initial and maximum stream window (tor-spec §7.4).
pub const STREAMWINDOW_START: u32 = 500;
/// Stream window increment (tor-spec §7.4).
pub const STREAMWINDOW_INCREMENT: u32 = 50;

/// Cells in one full TLS record (16 KiB / 514): C-tor's
/// `TLS_RECORD_MAX_CELLS`, the default `cc_sendme_inc`.
const TLS_RECORD_MAX_CELLS: i32 = 31;
/// C-tor's `OUTBUF_CELLS`, the unit of the Vegas queue thresholds.
const OUTBUF_CELLS: i32 = 2 * TLS_RECORD_MAX_CELLS;

/// Where consensus parameters come from: anything that can look one up by
/// name. Implemented for the shapes the directory code produces.
pub trait ParamSource {
    /// The value of parameter `name`, if the consensus has it.
    fn param(&self, name: &str) -> Option<i32>;
}

impl ParamSource for [(String, i32)] {
    fn param(&self, name: &str) -> Option<i32> {
        // The last occurrence wins, like a later line in a document.
        self.iter().rev().find(|(k, _)| k == name).map(|(_, v)| *v)
    }
}

impl ParamSource for Vec<(String, i32)> {
    fn param(&self, name: &str) -> Option<i32> {
        self.as_slice().param(name)
    }
}

impl ParamSource for HashMap<String, i32> {
    fn param(&self, name: &str) -> Option<i32> {
        self.get(name).copied()
    }
}

impl ParamSource for BTreeMap<String, i32> {
    fn param(&self, name: &str) -> Option<i32> {
        self.get(name).copied()
    }
}

/// Look up `name`, default `dflt`, clamped into `[min, max]` (C-tor
/// `networkstatus_get_param`). Returns a non-negative value whenever
/// `min >= 0`.
fn get(src: &(impl ParamSource + ?Sized), name: &str, dflt: i32, min: i32, max: i32) -> i32 {
    match src.param(name) {
        None => dflt,
        Some(v) => v.clamp(min, max),
    }
}

/// [`get`] for a parameter whose range starts at zero or above.
fn get_u32(src: &(impl ParamSource + ?Sized), name: &str, dflt: i32, min: i32, max: i32) -> u32 {
    u32::try_from(get(src, name, dflt, min.max(0), max)).unwrap_or(0)
}

/// Which congestion control algorithm the consensus asks for (`cc_alg`,
/// proposal 324 §6.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CcAlg {
    /// 0: no congestion control; fixed SENDME windows (tor-spec §7.3).
    FixedWindow,
    /// 2: TOR_VEGAS (proposal 324 §3.3).
    Vegas,
}

/// The kind of path, which selects the Vegas queue thresholds and the slow
/// start cap (C-tor `cc_path_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CcPath {
    /// A three-hop circuit to an exit (also Conflux legs).
    Exit,
    /// An onion service rendezvous circuit.
    Onion,
    /// A two-hop bandwidth measurement circuit.
    Sbws,
}

/// The TOR_VEGAS thresholds for one kind of path (proposal 324 §6.5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VegasThresholds {
    /// Queue use below which cwnd grows (`cc_vegas_alpha_*`), cells.
    pub alpha: u32,
    /// Queue use above which cwnd shrinks (`cc_vegas_beta_*`), cells.
    pub beta: u32,
    /// Queue use that ends slow start (`cc_vegas_gamma_*`), cells.
    pub gamma: u32,
    /// Queue use above which cwnd drops to BDP + delta (`cc_vegas_delta_*`), cells.
    pub delta: u32,
    /// RFC 3742 limited slow start cap (`cc_sscap_*`), cells.
    pub ss_cap: u32,
}

impl VegasThresholds {
    /// Read one path's thresholds; `suffix` is `exit`, `onion` or `sbws`.
    fn read(src: &(impl ParamSource + ?Sized), suffix: &str, d: [i32; 5]) -> Self {
        let [a, b, g, dl, cap] = d;
        VegasThresholds {
            alpha: get_u32(src, &format!("cc_vegas_alpha_{suffix}"), a, 0, 1000),
            beta: get_u32(src, &format!("cc_vegas_beta_{suffix}"), b, 0, 1000),
            gamma: get_u32(src, &format!("cc_vegas_gamma_{suffix}"), g, 0, 1000),
            delta: get_u32(src, &format!("cc_vegas_delta_{suffix}"), dl, 0, i32::MAX),
            ss_cap: get_u32(src, &format!("cc_sscap_{suffix}"), cap, 100, i32::MAX),
        }
    }
}

/// Congestion control parameters (proposal 324 §6.5.1, §6.5.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CcParams {
    /// `cc_alg`: 0 or 2; C-tor maps the unsupported 1 and 3 to the default 2.
    pub alg: CcAlg,
    /// `cc_sendme_inc`: cells acknowledged by one SENDME. Default 31, range [1, 254].
    pub sendme_inc: u8,
    /// `cc_cwnd_init`: initial cwnd. Default 124 (4 × 31), range [31, 10000].
    pub cwnd_init: u32,
    /// `cc_cwnd_min`: minimum cwnd. Default 124, range [31, 1000].
    pub cwnd_min: u32,
    /// `cc_cwnd_max`: maximum cwnd. Default and maximum `i32::MAX`, minimum 500.
    pub cwnd_max: u32,
    /// `cc_cwnd_inc`: steady-state increment and decrement. Default 1, range [1, 1000].
    pub cwnd_inc: u32,
    /// `cc_cwnd_inc_pct_ss`: slow start increment, percent of `sendme_inc`.
    /// Default 100, range [1, 500].
    pub cwnd_inc_pct_ss: u32,
    /// `cc_cwnd_inc_rate`: cwnd updates per cwnd after slow start. Default 31,
    /// range [1, 250].
    pub cwnd_inc_rate: u32,
    /// `cc_ewma_cwnd_pct`: N of the RTT N-EWMA as a percent of the SENDMEs
    /// between cwnd updates. Default 50, range [1, 255].
    pub ewma_cwnd_pct: u32,
    /// `cc_ewma_max`: maximum N of the N-EWMA. Default 10, range [2, i32::MAX].
    pub ewma_max: u32,
    /// `cc_ewma_ss`: N of the N-EWMA in slow start. Default 2, range [2, i32::MAX].
    pub ewma_ss: u32,
    /// `cc_rtt_reset_pct`: where between min RTT and EWMA RTT the minimum
    /// is reset when cwnd sits at `cwnd_min`. Default 100, range [0, 100].
    pub rtt_reset_pct: u32,
    /// `cc_bwe_min`: SENDMEs needed for a SENDME-rate BDP estimate. Default 5,
    /// range [2, 20]. Parsed for completeness; Vegas uses the cwnd estimator.
    pub bwe_min: u32,
    /// `cc_ss_max`: hard maximum of cwnd in slow start. Default 5000, range
    /// [500, i32::MAX].
    pub ss_max: u32,
    /// `cc_cwnd_full_gap`: how many `sendme_inc` below cwnd inflight may be
    /// and the window still count as full. Default 4, range [0, 32767].
    pub cwnd_full_gap: u32,
    /// `cc_cwnd_full_minpct`: below this percent of cwnd inflight the window
    /// is declared not full at once. Default 25, range [0, 100].
    pub cwnd_full_minpct: u32,
    /// `cc_cwnd_full_per_cwnd`: reset the full flag once per cwnd (true) or
    /// once per cwnd update (false). Default 1.
    pub cwnd_full_per_cwnd: bool,
    /// Vegas thresholds for exit circuits (and Conflux legs).
    pub vegas_exit: VegasThresholds,
    /// Vegas thresholds for onion service circuits.
    pub vegas_onion: VegasThresholds,
    /// Vegas thresholds for bandwidth measurement circuits.
    pub vegas_sbws: VegasThresholds,
    /// `cellq_high`: cells queued on a circuit for its channel above which
    /// the circuit stops reading its streams and counts as blocked on the
    /// channel. Default 256, range [1, 1000].
    pub cellq_high: u32,
    /// `cellq_low`: resume reading below this. Default 10, range [1, 1000].
    pub cellq_low: u32,
    /// `circwindow`: initial circuit package window without congestion
    /// control. Default 1000, range [100, 1000].
    pub circwindow: u32,
    /// `sendme_emit_min_version`: SENDME version to emit. Default 1, range [0, 255].
    pub sendme_emit_min_version: u8,
    /// `sendme_accept_min_version`: lowest SENDME version to accept. Default
    /// 0, range [0, 255]. See [`CcParams::sendme_accept_min`].
    pub sendme_accept_min_version: u8,
}

impl Default for CcParams {
    fn default() -> Self {
        let empty: [(String, i32); 0] = [];
        Self::from_consensus(&empty[..])
    }
}

impl CcParams {
    /// Read the parameters from a consensus (or any [`ParamSource`]),
    /// clamping each into its range.
    pub fn from_consensus(src: &(impl ParamSource + ?Sized)) -> Self {
        let alg = match get(src, "cc_alg", 2, 0, 3) {
            0 => CcAlg::FixedWindow,
            // C-tor: "Unsupported congestion control algorithm", use the default.
            _ => CcAlg::Vegas,
        };
        let cwnd_min = get_u32(src, "cc_cwnd_min", 4 * TLS_RECORD_MAX_CELLS, 31, 1000);
        let cwnd_max = get_u32(src, "cc_cwnd_max", i32::MAX, 500, i32::MAX);
        CcParams {
            alg,
            sendme_inc: u8::try_from(get(src, "cc_sendme_inc", TLS_RECORD_MAX_CELLS, 1, 254))
                .unwrap_or(31),
            cwnd_init: get_u32(src, "cc_cwnd_init", 4 * TLS_RECORD_MAX_CELLS, 31, 10000),
            cwnd_min,
            cwnd_max,
            cwnd_inc: get_u32(src, "cc_cwnd_inc", 1, 1, 1000),
            cwnd_inc_pct_ss: get_u32(src, "cc_cwnd_inc_pct_ss", 100, 1, 500),
            cwnd_inc_rate: get_u32(src, "cc_cwnd_inc_rate", TLS_RECORD_MAX_CELLS, 1, 250),
            ewma_cwnd_pct: get_u32(src, "cc_ewma_cwnd_pct", 50, 1, 255),
            ewma_max: get_u32(src, "cc_ewma_max", 10, 2, i32::MAX),
            ewma_ss: get_u32(src, "cc_ewma_ss", 2, 2, i32::MAX),
            rtt_reset_pct: get_u32(src, "cc_rtt_reset_pct", 100, 0, 100),
            bwe_min: get_u32(src, "cc_bwe_min", 5, 2, 20),
            ss_max: get_u32(src, "cc_ss_max", 5000, 500, i32::MAX),
            cwnd_full_gap: get_u32(src, "cc_cwnd_full_gap", 4, 0, i32::from(i16::MAX)),
            cwnd_full_minpct: get_u32(src, "cc_cwnd_full_minpct", 25, 0, 100),
            cwnd_full_per_cwnd: get(src, "cc_cwnd_full_per_cwnd", 1, 0, 1) == 1,
            vegas_exit: VegasThresholds::read(
                src,
                "exit",
                [
                    3 * OUTBUF_CELLS,
                    4 * OUTBUF_CELLS,
                    3 * OUTBUF_CELLS,
                    5 * OUTBUF_CELLS,
                    600,
                ],
            ),
            vegas_onion: VegasThresholds::read(
                src,
                "onion",
                [
                    3 * OUTBUF_CELLS,
                    6 * OUTBUF_CELLS,
                    4 * OUTBUF_CELLS,
                    7 * OUTBUF_CELLS,
                    475,
                ],
            ),
            vegas_sbws: VegasThresholds::read(
                src,
                "sbws",
                [
                    2 * OUTBUF_CELLS - TLS_RECORD_MAX_CELLS,
                    2 * OUTBUF_CELLS + TLS_RECORD_MAX_CELLS,
                    2 * OUTBUF_CELLS,
                    4 * OUTBUF_CELLS,
                    400,
                ],
            ),
            cellq_high: get_u32(src, "cellq_high", 256, 1, 1000),
            cellq_low: get_u32(src, "cellq_low", 10, 1, 1000),
            circwindow: get_u32(
                src,
                "circwindow",
                1000,
                100,
                i32::try_from(CIRCWINDOW_START_MAX).unwrap_or(1000),
            ),
            sendme_emit_min_version: u8::try_from(get(src, "sendme_emit_min_version", 1, 0, 255))
                .unwrap_or(1),
            sendme_accept_min_version: u8::try_from(get(
                src,
                "sendme_accept_min_version",
                0,
                0,
                255,
            ))
            .unwrap_or(0),
        }
    }

    /// The Vegas thresholds for a kind of path.
    pub fn vegas(&self, path: CcPath) -> VegasThresholds {
        match path {
            CcPath::Exit => self.vegas_exit,
            CcPath::Onion => self.vegas_onion,
            CcPath::Sbws => self.vegas_sbws,
        }
    }

    /// The effective maximum cwnd: `cc_cwnd_max`, but never below
    /// `cc_cwnd_min` (the two ranges overlap, so a consensus could invert
    /// them; Braid keeps `cwnd_min <= cwnd_max`).
    pub fn effective_cwnd_max(&self) -> u32 {
        self.cwnd_max.max(self.cwnd_min)
    }

    /// Whether a `sendme_inc` offered by an exit in its ntor-v3
    /// congestion control response is acceptable: within ±1 of our
    /// consensus value (C-tor `congestion_control_validate_sendme_increment`).
    pub fn sendme_inc_acceptable(&self, offered: u8) -> bool {
        offered != 0 && u32::from(offered).abs_diff(u32::from(self.sendme_inc)) <= 1
    }

    /// The lowest SENDME version Braid accepts: the consensus value, but at
    /// least 1. C-tor accepts version 0 (unauthenticated) by default; every
    /// Tor since 0.4.1 emits version 1, and accepting 0 would let a peer
    /// skip proposal 289's proof of receipt, so Braid does not.
    pub fn sendme_accept_min(&self) -> u8 {
        self.sendme_accept_min_version.max(1)
    }
}

/// Stream flow control parameters (proposal 324 §6.5.5, C-tor
/// `congestion_control_flow.c`), converted to bytes where C-tor does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowParams {
    /// `cc_xoff_client` × 498: buffered bytes above which a client (or onion
    /// service) sends XOFF. Default 500 cells, range [1, 10000] cells.
    pub xoff_client_bytes: u64,
    /// `cc_xoff_exit` × 498: the same for exits.
    pub xoff_exit_bytes: u64,
    /// `cc_xon_change_pct`: drain rate change that triggers an advisory XON.
    /// Default 25, range [1, 99].
    pub xon_change_pct: u32,
    /// `cc_xon_rate` × 498: bytes drained between rate updates (and between
    /// advisory XONs). Default 500 cells, range [1, 5000] cells.
    pub xon_rate_bytes: u64,
    /// `cc_xon_ewma_cnt`: N of the drain rate N-EWMA. Default 2, range [2, 100].
    pub xon_ewma_cnt: u32,
    /// Braid's own limit (not a consensus parameter in C-tor): bytes a peer
    /// may still send on a stream after our XOFF before we call it a
    /// protocol violation. C-tor has no limit and relies on its OOM killer
    /// (proposal 324 §4.1.3). The default is `cc_ss_max` cells plus the
    /// XOFF limit, what a well-behaved peer at the largest slow start
    /// window can have in flight. A driver that knows better (a peer whose
    /// window grew past `cc_ss_max` in steady state) may raise it.
    pub xoff_grace_bytes: u64,
}

impl Default for FlowParams {
    fn default() -> Self {
        let empty: [(String, i32); 0] = [];
        Self::from_consensus(&empty[..])
    }
}

impl FlowParams {
    /// Read the parameters from a consensus, clamping each into its range.
    pub fn from_consensus(src: &(impl ParamSource + ?Sized)) -> Self {
        let cell = u64::from(RELAY_PAYLOAD_SIZE);
        let ss_max = u64::from(get_u32(src, "cc_ss_max", 5000, 500, i32::MAX));
        let xoff_client_bytes = u64::from(get_u32(src, "cc_xoff_client", 500, 1, 10000)) * cell;
        let xoff_exit_bytes = u64::from(get_u32(src, "cc_xoff_exit", 500, 1, 10000)) * cell;
        FlowParams {
            xoff_client_bytes,
            xoff_exit_bytes,
            xon_change_pct: get_u32(src, "cc_xon_change_pct", 25, 1, 99),
            xon_rate_bytes: u64::from(get_u32(src, "cc_xon_rate", 500, 1, 5000)) * cell,
            xon_ewma_cnt: get_u32(src, "cc_xon_ewma_cnt", 2, 2, 100),
            xoff_grace_bytes: ss_max * cell + xoff_client_bytes.max(xoff_exit_bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, i32)]) -> Vec<(String, i32)> {
        v.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn defaults_match_c_tor() {
        let p = CcParams::default();
        assert_eq!(p.alg, CcAlg::Vegas);
        assert_eq!(p.sendme_inc, 31);
        assert_eq!(p.cwnd_init, 124);
        assert_eq!(p.cwnd_min, 124);
        assert_eq!(p.cwnd_max, i32::MAX as u32);
        assert_eq!(p.cwnd_inc, 1);
        assert_eq!(p.cwnd_inc_pct_ss, 100);
        assert_eq!(p.cwnd_inc_rate, 31);
        assert_eq!((p.ewma_cwnd_pct, p.ewma_max, p.ewma_ss), (50, 10, 2));
        assert_eq!(p.ss_max, 5000);
        assert_eq!((p.cwnd_full_gap, p.cwnd_full_minpct), (4, 25));
        assert!(p.cwnd_full_per_cwnd);
        let e = p.vegas(CcPath::Exit);
        assert_eq!(
            (e.alpha, e.beta, e.gamma, e.delta, e.ss_cap),
            (186, 248, 186, 310, 600)
        );
        let o = p.vegas(CcPath::Onion);
        assert_eq!(
            (o.alpha, o.beta, o.gamma, o.delta, o.ss_cap),
            (186, 372, 248, 434, 475)
        );
        let s = p.vegas(CcPath::Sbws);
        assert_eq!(
            (s.alpha, s.beta, s.gamma, s.delta, s.ss_cap),
            (93, 155, 124, 248, 400)
        );
        assert_eq!(p.circwindow, 1000);
        assert_eq!(
            (p.sendme_emit_min_version, p.sendme_accept_min_version),
            (1, 0)
        );
        assert_eq!(p.sendme_accept_min(), 1);

        let f = FlowParams::default();
        assert_eq!(f.xoff_client_bytes, 500 * 498);
        assert_eq!(f.xoff_exit_bytes, 500 * 498);
        assert_eq!(f.xon_rate_bytes, 500 * 498);
        assert_eq!((f.xon_change_pct, f.xon_ewma_cnt), (25, 2));
        assert_eq!(f.xoff_grace_bytes, 5500 * 498);
    }

    #[test]
    fn out_of_range_values_are_clamped() {
        let src = pairs(&[
            ("cc_sendme_inc", 0),
            ("cc_cwnd_init", 1_000_000),
            ("cc_cwnd_min", -5),
            ("cc_cwnd_max", 10),
            ("cc_vegas_alpha_exit", 5000),
            ("cc_sscap_exit", 1),
            ("cc_cwnd_full_per_cwnd", 7),
            ("cc_xoff_exit", 0),
            ("cc_xon_ewma_cnt", 1000),
            ("sendme_accept_min_version", 1000),
        ]);
        let p = CcParams::from_consensus(src.as_slice());
        assert_eq!(p.sendme_inc, 1);
        assert_eq!(p.cwnd_init, 10000);
        assert_eq!(p.cwnd_min, 31);
        assert_eq!(p.cwnd_max, 500);
        assert_eq!(p.vegas_exit.alpha, 1000);
        assert_eq!(p.vegas_exit.ss_cap, 100);
        assert!(p.cwnd_full_per_cwnd);
        assert_eq!(p.sendme_accept_min_version, 255);
        let f = FlowParams::from_consensus(src.as_slice());
        assert_eq!(f.xoff_exit_bytes, 498);
        assert_eq!(f.xon_ewma_cnt, 100);
    }

    #[test]
    fn alg_mapping() {
        let map: HashMap<String, i32> = [("cc_alg".to_owned(), 0)].into_iter().collect();
        assert_eq!(CcParams::from_consensus(&map).alg, CcAlg::FixedWindow);
        for v in [1, 2, 3, 99, -1] {
            let map: BTreeMap<String, i32> = [("cc_alg".to_owned(), v)].into_iter().collect();
            let want = if v < 0 {
                CcAlg::FixedWindow
            } else {
                CcAlg::Vegas
            };
            assert_eq!(CcParams::from_consensus(&map).alg, want, "cc_alg={v}");
        }
    }

    #[test]
    fn cwnd_bounds_never_inverted_and_sendme_inc_window() {
        let src = pairs(&[("cc_cwnd_min", 1000), ("cc_cwnd_max", 500)]);
        let p = CcParams::from_consensus(src.as_slice());
        assert_eq!(p.effective_cwnd_max(), 1000);
        let p = CcParams::default();
        assert!(p.sendme_inc_acceptable(30));
        assert!(p.sendme_inc_acceptable(31));
        assert!(p.sendme_inc_acceptable(32));
        assert!(!p.sendme_inc_acceptable(33));
        assert!(!p.sendme_inc_acceptable(0));
    }

    proptest::proptest! {
        /// Whatever the consensus says, every value lands in its range.
        #[test]
        fn any_consensus_is_clamped(vals in proptest::collection::vec(proptest::num::i32::ANY, 12)) {
            let keys = [
                "cc_sendme_inc", "cc_cwnd_init", "cc_cwnd_min", "cc_cwnd_max",
                "cc_cwnd_inc", "cc_cwnd_inc_rate", "cc_ewma_max", "cc_ss_max",
                "cc_vegas_delta_exit", "cc_sscap_exit", "cc_xoff_client", "cc_xon_rate",
            ];
            let src: Vec<(String, i32)> =
                keys.iter().zip(vals).map(|(k, v)| ((*k).to_owned(), v)).collect();
            let p = CcParams::from_consensus(src.as_slice());
            proptest::prop_assert!((1..=254).contains(&p.sendme_inc));
            proptest::prop_assert!((31..=10000).contains(&p.cwnd_init));
            proptest::prop_assert!((31..=1000).contains(&p.cwnd_min));
            proptest::prop_assert!((500..=i32::MAX as u32).contains(&p.cwnd_max));
            proptest::prop_assert!(p.effective_cwnd_max() >= p.cwnd_min);
            proptest::prop_assert!((1..=1000).contains(&p.cwnd_inc));
            proptest::prop_assert!((1..=250).contains(&p.cwnd_inc_rate));
            proptest::prop_assert!(p.ewma_max >= 2);
            proptest::prop_assert!(p.ss_max >= 500);
            proptest::prop_assert!(p.vegas_exit.delta <= i32::MAX as u32);
            proptest::prop_assert!(p.vegas_exit.ss_cap >= 100);
            let f = FlowParams::from_consensus(src.as_slice());
            proptest::prop_assert!((498..=10000 * 498).contains(&f.xoff_client_bytes));
            proptest::prop_assert!((498..=5000 * 498).contains(&f.xon_rate_bytes));
        }
    }

    #[test]
    fn last_duplicate_wins() {
        let src = pairs(&[("cc_sendme_inc", 20), ("cc_sendme_inc", 40)]);
        assert_eq!(CcParams::from_consensus(src.as_slice()).sendme_inc, 40);
    }
}
