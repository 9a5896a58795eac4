#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use super::*;
use braid_dir::serve::DocType;

fn snapshot() -> Snapshot {
    Snapshot {
        uptime: Duration::from_millis(12_500),
        node: NodeFigures {
            client_channels: 2,
            relay_channels: 3,
            blocked_channels: 1,
            circuits: 7,
            exit_streams: 4,
            queued_bytes: 5140,
            writer_cells: 9,
            stats: NodeStats {
                circuits_created: 11,
                creates_refused: 1,
                extends: 6,
                circuits_closed: 4,
                oom_closed: 2,
                sets_created: 3,
                legs_linked: 7,
                links_refused: 1,
                oom_sets_closed: 0,
                padding_sent: 13,
            },
            kist_interval: Some(Duration::from_millis(10)),
            kist: KistStats {
                runs: 100,
                limits: 150,
                fallbacks: 5,
                limit_bytes: 1_000_000,
                limited: 12,
                cells: 1800,
            },
            kist_pending: 1,
            consensus_valid_after: Some(
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            ),
            sets: vec![SetFigures {
                legs: 2,
                circuits: Vec::new(),
                scheduler: "ecf",
                reorder_bytes: 996,
                reorder_peak_bytes: 4980,
                backlog_bytes: 65_536,
                streams: 3,
                last_seq_sent: 900,
                last_seq_delivered: 12,
                closed: false,
                resumable: true,
                resumptions: 2,
                resent: 300,
                retransmit_bytes: 5940,
                retransmit_peak_bytes: 118_800,
                retransmit_peak_bound_bytes: 147_312,
            }],
        },
        read: 123_456,
        written: 654_321,
        memory_limit: 1 << 30,
        consensus_ok: 2,
        consensus_failed: 3,
        dir: Some(DirFigures {
            answers: vec![(DocType::Consensus, 200, 4), (DocType::Microdescs, 404, 1)],
            bytes: 9000,
            closed: 2,
            open: 3,
            md_fetches: (5, 1),
            microdescs: (8, 4000),
            certs: 3,
            consensus_valid_after: Some(
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_100),
            ),
        }),
    }
}

#[test]
fn every_figure_is_in_the_text() {
    let text = prometheus(&snapshot());
    for line in [
        "braid_relay_uptime_seconds 12.5",
        "braid_relay_channels{peer=\"client\"} 2",
        "braid_relay_channels{peer=\"relay\"} 3",
        "braid_relay_channels_blocked 1",
        "braid_relay_circuits 7",
        "braid_relay_exit_streams 4",
        "braid_relay_read_bytes_total 123456",
        "braid_relay_written_bytes_total 654321",
        "braid_relay_queued_bytes 5140",
        "braid_relay_memory_limit_bytes 1073741824",
        "braid_relay_writer_queued_cells 9",
        "braid_relay_circuits_created_total 11",
        "braid_relay_creates_refused_total 1",
        "braid_relay_extends_total 6",
        "braid_relay_circuits_closed_total 4",
        "braid_relay_oom_closed_total 2",
        "braid_relay_padding_cells_total 13",
        "braid_relay_conflux_sets{scheduler=\"ecf\"} 1",
        "braid_relay_conflux_sets{scheduler=\"minrtt\"} 0",
        "braid_relay_conflux_legs 2",
        "braid_relay_conflux_reorder_bytes 996",
        "braid_relay_conflux_reorder_peak_bytes 4980",
        "braid_relay_conflux_backlog_bytes 65536",
        "braid_relay_conflux_resumable_sets 1",
        "braid_relay_conflux_resumptions 2",
        "braid_relay_conflux_resent_cells 300",
        "braid_relay_conflux_retransmit_bytes 5940",
        "braid_relay_conflux_retransmit_peak_bytes 118800",
        "braid_relay_conflux_retransmit_peak_bound_bytes 147312",
        "braid_relay_conflux_sets_created_total 3",
        "braid_relay_conflux_legs_linked_total 7",
        "braid_relay_conflux_links_refused_total 1",
        "braid_relay_conflux_oom_sets_closed_total 0",
        "braid_relay_kist_enabled 1",
        "braid_relay_kist_run_interval_seconds 0.01",
        "braid_relay_kist_runs_total 100",
        "braid_relay_kist_limits_total 150",
        "braid_relay_kist_fallback_limits_total 5",
        "braid_relay_kist_limit_bytes_total 1000000",
        "braid_relay_kist_channels_limited_total 12",
        "braid_relay_kist_cells_total 1800",
        "braid_relay_kist_pending_channels 1",
        "braid_relay_consensus_fetches_total{result=\"ok\"} 2",
        "braid_relay_consensus_fetches_total{result=\"failed\"} 3",
        "braid_relay_consensus_valid_after_seconds 1700000000",
        "braid_relay_dir_answers_total{doc=\"consensus\",status=\"200\"} 4",
        "braid_relay_dir_answers_total{doc=\"microdescs\",status=\"404\"} 1",
        "braid_relay_dir_answer_bytes_total 9000",
        "braid_relay_dir_closed_total 2",
        "braid_relay_dir_streams 3",
        "braid_relay_dir_microdesc_fetches_total{result=\"ok\"} 5",
        "braid_relay_dir_microdesc_fetches_total{result=\"failed\"} 1",
        "braid_relay_dir_cached_microdescs 8",
        "braid_relay_dir_cached_microdescs_bytes 4000",
        "braid_relay_dir_cached_certificates 3",
        "braid_relay_dir_consensus_valid_after_seconds 1700000100",
    ] {
        assert!(text.contains(&format!("{line}\n")), "{line} in\n{text}");
    }
    // Every sample line belongs to a declared family.
    let declared: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        assert!(declared.contains(&name), "{line}");
    }
}

#[test]
fn kist_off_and_no_consensus() {
    let mut s = snapshot();
    s.node.kist_interval = None;
    s.node.consensus_valid_after = None;
    s.dir = None;
    let text = prometheus(&s);
    assert!(!text.contains("braid_relay_dir_"));
    assert!(text.contains("braid_relay_kist_enabled 0\n"));
    assert!(!text.contains("braid_relay_kist_run_interval_seconds"));
    assert!(!text.contains("braid_relay_consensus_valid_after_seconds"));
}

#[test]
fn only_get_is_served() {
    assert_eq!(request_path("GET /metrics HTTP/1.1\r\n"), Some("/metrics"));
    assert_eq!(
        request_path("GET /metrics?x=1 HTTP/1.0\r\n"),
        Some("/metrics")
    );
    assert_eq!(request_path("POST /metrics HTTP/1.1\r\n"), None);
    assert_eq!(request_path(""), None);
}

/// Over HTTP: the node task's figures (answered here by a stand-in), a
/// 404 for other paths, a 503 once the node task is gone.
#[tokio::test]
async fn serves_the_node_figures() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (to_node, mut inbox) = mpsc::channel(4);
    let traffic = Arc::new(Traffic::default());
    traffic.read.store(77, Ordering::Relaxed);
    let sources = Sources {
        to_node,
        traffic,
        fetches: Arc::new(FetchStats::default()),
        started: Instant::now(),
        memory_limit: 1000,
        dir: None,
    };
    tokio::spawn(serve(listener, sources));
    let node = tokio::spawn(async move {
        let Some(ToNode::Figures(tx)) = inbox.recv().await else {
            panic!("not a figures request")
        };
        tx.send(NodeFigures {
            circuits: 5,
            ..NodeFigures::default()
        })
        .unwrap();
        // Then the node task ends.
    });
    let get = |path: &'static str| async move {
        crate::http::request(addr, "GET", path, None, 1 << 20, Duration::from_secs(5))
            .await
            .unwrap()
    };
    let a = get("/metrics").await;
    assert_eq!(a.status, 200);
    assert!(a.body.contains("braid_relay_circuits 5\n"), "{}", a.body);
    assert!(a.body.contains("braid_relay_read_bytes_total 77\n"));
    assert!(a.body.contains("braid_relay_memory_limit_bytes 1000\n"));
    assert_eq!(get("/status").await.status, 404);
    node.await.unwrap();
    assert_eq!(get("/metrics").await.status, 503);
}
