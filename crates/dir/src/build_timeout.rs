//! Learning when to give up on building a circuit (path-spec §2.4): the
//! build times of 3-hop circuits are kept (the last 1000), the tail of
//! their distribution is fitted with a Pareto curve, and a build that
//! takes longer than the curve's `cbtquantile` point (80%) is given up,
//! as C-tor's `circuitstats.c` and arti's `tor-circmgr` timeouts do.
//! Until `cbtmincircs` builds are known the timeout is
//! `cbtinitialtimeout` (60 s); when most recent builds time out the
//! network changed and the history starts again (§2.4.5).
//!
//! Sans-IO: times are given, nothing is read from a clock. The client
//! keeps one estimator and gives each leg it launches
//! [`BuildTimes::timeout_for_hops`].

use std::collections::VecDeque;
use std::time::Duration;

/// Build times kept (path-spec §2.4.2, C-tor `CBT_NCIRCUITS_TO_OBSERVE`).
pub const MAX_RECORDED: usize = 1000;

/// Histogram bin width in milliseconds (path-spec §2.4.2, `CBT_BIN_WIDTH`).
pub const BIN_MS: u32 = 10;

/// The `cbt*` consensus parameters (path-spec §2.4.6), clamped to their
/// ranges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BuildTimeParams {
    /// `cbtdisabled`: learning off, the initial timeout always.
    pub disabled: bool,
    /// `cbtnummodes`: bins averaged into Xm.
    pub num_modes: usize,
    /// `cbtrecentcount`: outcomes remembered to detect a changed network.
    pub recent_count: usize,
    /// `cbtmaxtimeouts`: timeouts among the recent outcomes that reset
    /// the history.
    pub max_timeouts: usize,
    /// `cbtmincircs`: build times needed before a timeout is computed.
    pub min_circs: usize,
    /// `cbtquantile` / 100: the usage timeout's point on the curve.
    pub quantile: f64,
    /// `cbtclosequantile` / 100: the close timeout's point.
    pub close_quantile: f64,
    /// `cbtmintimeout`.
    pub min_timeout: Duration,
    /// `cbtinitialtimeout`.
    pub initial_timeout: Duration,
}

impl Default for BuildTimeParams {
    fn default() -> Self {
        Self {
            disabled: false,
            num_modes: 10,
            recent_count: 20,
            max_timeouts: 18,
            min_circs: 100,
            quantile: 0.80,
            close_quantile: 0.99,
            min_timeout: Duration::from_millis(10),
            initial_timeout: Duration::from_millis(60_000),
        }
    }
}

impl BuildTimeParams {
    /// The parameters a consensus sets (`get` returns a `params` value by
    /// name), each clamped to path-spec §2.4.6's range; absent ones keep
    /// their defaults.
    pub fn from_params(get: impl Fn(&str) -> Option<i32>) -> Self {
        let d = Self::default();
        let int = |name: &str, default: i64, min: i64, max: i64| -> i64 {
            get(name).map_or(default, |v| i64::from(v).clamp(min, max))
        };
        let to_usize = |v: i64| usize::try_from(v).unwrap_or(usize::MAX);
        let to_u64 = |v: i64| u64::try_from(v).unwrap_or(0);
        let quantile = int("cbtquantile", 80, 10, 99);
        let min_timeout = int("cbtmintimeout", 10, 10, i64::from(i32::MAX));
        Self {
            disabled: int("cbtdisabled", 0, 0, 1) == 1,
            num_modes: to_usize(int("cbtnummodes", 10, 1, 20)),
            recent_count: to_usize(int("cbtrecentcount", 20, 3, 1000)),
            max_timeouts: to_usize(int("cbtmaxtimeouts", 18, 3, 10_000)),
            min_circs: to_usize(int("cbtmincircs", 100, 1, 10_000)),
            quantile: quantile as f64 / 100.0,
            close_quantile: int("cbtclosequantile", 99, quantile, 99) as f64 / 100.0,
            min_timeout: Duration::from_millis(to_u64(min_timeout)),
            initial_timeout: Duration::from_millis(to_u64(int(
                "cbtinitialtimeout",
                i64::try_from(d.initial_timeout.as_millis()).unwrap_or(60_000),
                min_timeout,
                i64::from(i32::MAX),
            ))),
        }
    }
}

/// One recorded build: its time, or given up at the usage timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Record {
    Built(u32),
    Abandoned,
}

/// The estimator: recorded builds and the timeouts they give.
#[derive(Debug, Clone)]
pub struct BuildTimes {
    params: BuildTimeParams,
    /// The last [`MAX_RECORDED`] builds, oldest first.
    records: VecDeque<Record>,
    /// The last `recent_count` outcomes: true for a timeout.
    recent: VecDeque<bool>,
    /// The usage timeout for 3 hops.
    timeout: Duration,
    /// The close timeout for 3 hops.
    close: Duration,
    /// Times the history was reset (§2.4.5).
    resets: u32,
}

impl BuildTimes {
    /// An estimator with nothing recorded: the initial timeout.
    pub fn new(params: BuildTimeParams) -> Self {
        Self {
            params,
            records: VecDeque::new(),
            recent: VecDeque::new(),
            timeout: params.initial_timeout,
            close: params.initial_timeout,
            resets: 0,
        }
    }

    /// New consensus parameters: the timeouts are computed again;
    /// `cbtdisabled` discards the history (§2.4.6).
    pub fn set_params(&mut self, params: BuildTimeParams) {
        if params == self.params {
            return;
        }
        self.params = params;
        if params.disabled {
            self.records.clear();
            self.recent.clear();
        }
        while self.recent.len() > params.recent_count {
            self.recent.pop_front();
        }
        self.timeout = params.initial_timeout;
        self.recompute();
    }

    /// The parameters in force.
    pub fn params(&self) -> BuildTimeParams {
        self.params
    }

    /// The usage timeout of a 3-hop circuit.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The close timeout of a 3-hop circuit (§2.4.4): at least the
    /// initial timeout.
    pub fn close_timeout(&self) -> Duration {
        self.close
    }

    /// The usage timeout for a circuit of `hops` hops (§2.4.3, scaled by
    /// Actions(N) = N(N+1)/2 over Actions(3)).
    pub fn timeout_for_hops(&self, hops: usize) -> Duration {
        let actions = |n: u32| n * (n + 1) / 2;
        let n = u32::try_from(hops.max(1)).unwrap_or(u32::MAX / 4).min(1000);
        self.timeout * actions(n) / actions(3)
    }

    /// Builds recorded (built and abandoned).
    pub fn recorded(&self) -> usize {
        self.records.len()
    }

    /// True once enough builds are known for a learned timeout.
    pub fn is_learned(&self) -> bool {
        !self.params.disabled && self.built_count() >= self.params.min_circs
    }

    /// Times the history was discarded because most builds timed out.
    pub fn resets(&self) -> u32 {
        self.resets
    }

    /// A 3-hop build completed after `took` (§2.4.2: only 3-hop circuits
    /// are recorded; the caller passes the first three hops' time).
    pub fn note_built(&mut self, took: Duration) {
        if self.params.disabled {
            return;
        }
        let ms = u32::try_from(took.as_millis()).unwrap_or(u32::MAX);
        self.push(Record::Built(ms));
        self.note_outcome(false);
        self.recompute();
    }

    /// A build was given up at the usage timeout after `hops_done` hops.
    /// It counts in the curve's tail (C-tor records it as abandoned and
    /// counts it at the longest time seen, so the curve is not fitted to
    /// the fast builds only), and, if it completed a hop, as a timeout
    /// among the recent outcomes (§2.4.5).
    pub fn note_timed_out(&mut self, hops_done: usize) {
        if self.params.disabled {
            return;
        }
        self.push(Record::Abandoned);
        if hops_done >= 1 {
            self.note_outcome(true);
        }
        self.recompute();
    }

    /// The recorded builds as text, oldest first, one per line: a build
    /// time in milliseconds or `abandoned` (what a client saves in its
    /// state directory, as C-tor saves its histogram in its state file, so
    /// a restart does not start learning again).
    pub fn to_text(&self) -> String {
        let mut out = String::from(
            "# Braid: circuit build times (path-spec 2.4), oldest first: milliseconds, or abandoned\n",
        );
        for r in &self.records {
            match r {
                Record::Built(ms) => out.push_str(&format!("{ms}\n")),
                Record::Abandoned => out.push_str("abandoned\n"),
            }
        }
        out
    }

    /// An estimator from [`Self::to_text`]'s text: lines that are neither
    /// a number nor `abandoned` are skipped (a damaged file costs only its
    /// bad lines), at most the last [`MAX_RECORDED`] are kept, and the
    /// timeouts are computed from them. Returns the estimator and the
    /// number of lines skipped.
    pub fn from_text(text: &str, params: BuildTimeParams) -> (Self, usize) {
        let mut b = Self::new(params);
        let mut skipped = 0;
        if params.disabled {
            return (b, 0);
        }
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line {
                "abandoned" => b.push(Record::Abandoned),
                _ => match line.parse::<u32>() {
                    Ok(ms) => b.push(Record::Built(ms)),
                    Err(_) => skipped += 1,
                },
            }
        }
        b.recompute();
        (b, skipped)
    }

    fn push(&mut self, r: Record) {
        if self.records.len() == MAX_RECORDED {
            self.records.pop_front();
        }
        self.records.push_back(r);
    }

    /// §2.4.5: too many of the recent builds timed out: the network
    /// changed; discard the history and start from the initial timeout
    /// (doubled if the timeout was already at least that).
    fn note_outcome(&mut self, timed_out: bool) {
        self.recent.push_back(timed_out);
        while self.recent.len() > self.params.recent_count {
            self.recent.pop_front();
        }
        let timeouts = self.recent.iter().filter(|t| **t).count();
        if timeouts >= self.params.max_timeouts {
            let doubled = self.timeout >= self.params.initial_timeout;
            self.records.clear();
            self.recent.clear();
            self.resets += 1;
            self.timeout = if doubled {
                self.timeout.saturating_mul(2)
            } else {
                self.params.initial_timeout
            };
            self.close = self.close.max(self.timeout);
        }
    }

    fn built_count(&self) -> usize {
        self.records
            .iter()
            .filter(|r| matches!(r, Record::Built(_)))
            .count()
    }

    /// §2.4.3: Xm from the modes, alpha by maximum likelihood, the
    /// timeouts from the Pareto quantile function.
    fn recompute(&mut self) {
        if !self.is_learned() {
            // Not enough data (or a reset's doubled value): keep what is set.
            self.close = self.close.max(self.timeout);
            return;
        }
        let built: Vec<u32> = self
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Built(ms) => Some(*ms),
                Record::Abandoned => None,
            })
            .collect();
        let abandoned = self.records.len() - built.len();
        let max_ms = built.iter().copied().max().unwrap_or(0);
        let xm = mode_average(&built, self.params.num_modes).max(1.0);
        // alpha = n / (Σ ln(max(Xm, x_i)) − n ln Xm); abandoned builds
        // count at the longest time seen.
        let n = (built.len() + abandoned) as f64;
        let sum_ln: f64 = built
            .iter()
            .map(|&x| f64::from(x).max(xm).ln())
            .sum::<f64>()
            + abandoned as f64 * f64::from(max_ms).max(xm).ln();
        let denom = sum_ln - n * xm.ln();
        let quantile = |q: f64| -> f64 {
            if denom <= 0.0 {
                // Every build at Xm: no tail to fit.
                return xm;
            }
            let alpha = n / denom;
            xm / (1.0 - q).powf(1.0 / alpha)
        };
        let max = f64::from(max_ms.max(1));
        let min = self.params.min_timeout.as_secs_f64() * 1000.0;
        let timeout_ms = quantile(self.params.quantile).min(max).max(min);
        let close_ms = quantile(self.params.close_quantile)
            .min(2.0 * max)
            .max(self.params.initial_timeout.as_secs_f64() * 1000.0);
        self.timeout = Duration::from_secs_f64(timeout_ms / 1000.0);
        self.close = Duration::from_secs_f64(close_ms / 1000.0);
    }
}

/// The average of the midpoints of the `modes` fullest 10 ms bins,
/// weighted by their counts; ties go to the earlier bin (§2.4.3).
fn mode_average(times: &[u32], modes: usize) -> f64 {
    let mut bins: std::collections::BTreeMap<u32, u64> = std::collections::BTreeMap::new();
    for &t in times {
        *bins.entry(t / BIN_MS).or_default() += 1;
    }
    let mut by_count: Vec<(u32, u64)> = bins.into_iter().collect();
    // Fullest first; among equals, the earlier bin (sort is stable).
    by_count.sort_by_key(|b| std::cmp::Reverse(b.1));
    by_count.truncate(modes.max(1));
    let top = &by_count;
    let total: u64 = top.iter().map(|(_, c)| c).sum();
    if total == 0 {
        return 0.0;
    }
    let weighted: f64 = top
        .iter()
        .map(|&(bin, c)| (f64::from(bin * BIN_MS) + f64::from(BIN_MS) / 2.0) * c as f64)
        .sum();
    weighted / total as f64
}

#[cfg(test)]
#[path = "build_timeout_tests.rs"]
mod tests;
