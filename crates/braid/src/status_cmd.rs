//! `braid status`: what a running `braid proxy --metrics ADDR` reports of
//! its tunnels and their legs, as a table (or its JSON as it is).

use std::time::Duration;

use braid_client::FetchError;
use braid_client::metrics::TunnelStatusView;

use crate::cli::StatusArgs;

/// Errors of `braid status`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StatusError {
    #[error("cannot reach the proxy's metrics port: {0}")]
    Fetch(#[from] FetchError),
    #[error("the proxy's /status is not what this braid expects: {0}")]
    Json(#[from] serde_json::Error),
}

/// Largest /status answer read.
const MAX_STATUS: usize = 4 << 20;

pub(crate) async fn run(args: StatusArgs) -> Result<(), StatusError> {
    let body =
        braid_client::http::get(args.metrics, "/status", MAX_STATUS, Duration::from_secs(10))
            .await?;
    if args.json {
        print(&body);
        return Ok(());
    }
    let tunnels: Vec<TunnelStatusView> = serde_json::from_str(&body)?;
    print(&render(&tunnels));
    Ok(())
}

#[allow(clippy::print_stdout, reason = "the command's output")]
fn print(text: &str) {
    println!("{}", text.trim_end());
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// The table: one block per tunnel, one row per leg.
fn render(tunnels: &[TunnelStatusView]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if tunnels.is_empty() {
        out.push_str("no tunnels\n");
        return out;
    }
    for t in tunnels {
        let _ = write!(
            out,
            "tunnel {} ({}, {}), {} streams",
            t.id, t.kind, t.status, t.streams
        );
        if let (Some(now), Some(peak), Some(limit)) =
            (t.reorder_bytes, t.reorder_peak_bytes, t.reorder_limit_bytes)
        {
            let _ = write!(
                out,
                ", reorder queue {now} B (peak {peak} B, limit {limit} B)"
            );
        }
        out.push('\n');
        let resume = t.resume.describe();
        if !resume.is_empty() {
            let _ = writeln!(out, "  {resume}");
        }
        let _ = writeln!(
            out,
            "  {:>3}  {:<40} {:>6} {:>8} {:>8} {:>6} {:>8} {:>12} {:>10} {:>6} {:>9}",
            "leg",
            "path",
            "state",
            "rtt ms",
            "min ms",
            "cwnd",
            "inflight",
            "bytes in",
            "bytes out",
            "share",
            "switches"
        );
        for l in &t.legs {
            let state = match (l.open, l.replacement) {
                (true, false) => "open",
                (true, true) => "open*",
                (false, _) => "closed",
            };
            let switches = match (l.switches_sent, l.switches_received) {
                (Some(s), Some(r)) => format!("{s}/{r}"),
                _ => "-".into(),
            };
            let _ = writeln!(
                out,
                "  {:>3}  {:<40} {:>6} {:>8} {:>8} {:>6} {:>8} {:>12} {:>10} {:>5.1}% {:>9}",
                l.leg,
                l.path.join(" > "),
                state,
                opt(l.rtt_ms.map(|v| format!("{v:.1}"))),
                opt(l.link_rtt_ms.map(|v| format!("{v:.1}"))),
                opt(l.cwnd),
                opt(l.inflight),
                l.bytes_received,
                l.bytes_sent,
                l.share * 100.0,
                switches,
            );
        }
    }
    let mut total = braid_client::metrics::ResumeView::default();
    for t in tunnels {
        total.add(&t.resume);
    }
    let total = total.describe();
    if tunnels.len() > 1 && !total.is_empty() {
        let _ = writeln!(out, "all tunnels: {total}");
    }
    out.push_str("(open*: a replacement leg; switches: sent/received)\n");
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn renders_a_conflux_set_with_a_replacement_leg() {
        let json = r#"[{"id":3,"kind":"conflux","status":"open","streams":1,
            "reorder_bytes":0,"reorder_peak_bytes":1200,"reorder_limit_bytes":524288,
            "legs":[
              {"leg":0,"path":["g0","m0","x"],"open":false,"replacement":false,"rtt_ms":20.0,
               "min_rtt_ms":18.0,"link_rtt_ms":31.5,"cwnd":124,"inflight":0,"bytes_received":500,"bytes_sent":0,
               "share":0.25,"switches_sent":0,"switches_received":1},
              {"leg":1,"path":["g1","m1","x"],"open":true,"replacement":true,"rtt_ms":null,
               "min_rtt_ms":null,"link_rtt_ms":null,"cwnd":null,"inflight":null,"bytes_received":1500,"bytes_sent":0,
               "share":0.75,"switches_sent":1,"switches_received":2}]}]"#;
        let tunnels: Vec<TunnelStatusView> = serde_json::from_str(json).unwrap();
        let text = render(&tunnels);
        assert!(
            text.contains("tunnel 3 (conflux, open), 1 streams, reorder queue 0 B (peak 1200 B")
        );
        assert!(text.contains("g0 > m0 > x"));
        assert!(text.contains("closed"));
        assert!(text.contains("31.5"));
        assert!(text.contains("open*"));
        assert!(text.contains("75.0%"));
        assert!(text.contains("1/2"));
        assert!(!text.contains("resumption"), "nothing to say: {text}");
        assert_eq!(render(&[]), "no tunnels\n");
    }

    #[test]
    fn renders_resumption_figures_and_totals() {
        let one = |id: u64, resumptions: u64, peak: u64, last: f64| {
            let bound = peak * 3;
            format!(
                r#"{{"id":{id},"kind":"conflux","status":"open","streams":1,
                "reorder_bytes":null,"reorder_peak_bytes":null,"reorder_limit_bytes":null,"legs":[],
                "resume":{{"resumable":true,"resumptions":{resumptions},"cells_resent":0,
                "cells_resent_by_peer":359,"retransmit_bytes":0,"retransmit_peak_bytes":{peak},
                "retransmit_peak_bound_bytes":{bound},
                "legs_lost":1,"last_recovery_ms":{last},"max_recovery_ms":{last},
                "migrations_done":2,"migrations_refused":0,"migrations_aborted":0}}}}"#
            )
        };
        let json = format!("[{},{}]", one(1, 1, 5000, 250.0), one(2, 2, 9000, 400.0));
        let tunnels: Vec<TunnelStatusView> = serde_json::from_str(&json).unwrap();
        let text = render(&tunnels);
        assert!(
            text.contains("1 resumption(s), cells resent 0 by us / 359 by the peer"),
            "{text}"
        );
        assert!(text.contains("recovery last 250 ms max 250 ms"), "{text}");
        assert!(
            text.contains("all tunnels: resumable yes, 3 resumption(s), cells resent 0 by us / 718 by the peer, retransmit 0 B (peak 9000 B, windows 27000 B), 2 leg(s) lost, recovery last 400 ms max 400 ms, migrations 4 done"),
            "{text}"
        );
    }
}
