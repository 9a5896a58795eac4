//! Braid's Conflux client against C-tor exits on a private network: sets of
//! 2 and 3 legs link with a real exit, carry downloads byte for byte with
//! every leg used, and carry several streams at once. One network serves
//! every check; it is stopped by pid at the end (and by Drop on failure).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    reason = "tests"
)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use braid_client::socks::{IsolationKey, SocksServer};
use braid_client::{ClientConfig, TorClient};
use braid_testnet::download::fetch_file;
use braid_testnet::{NetworkConfig, launcher};
use common::{test_dir, wait_for_exits};

const BRAID: &str = env!("CARGO_BIN_EXE_braid");
const BASE: u16 = 29000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn braid_conflux_sets_link_with_c_tor_exits_and_carry_streams() {
    let mut config = NetworkConfig::new(test_dir("conflux"), BRAID);
    config.base_port = BASE;
    config.client = false;
    config.timeout = Duration::from_secs(180);
    let network = tokio::time::timeout(Duration::from_secs(240), launcher::up(&config))
        .await
        .expect("network start-up took more than 240 s")
        .unwrap();
    let dir = network.dir().to_path_buf();
    let files = network.manifest().fileserver.address;

    for legs in [2usize, 3] {
        let mut cfg = ClientConfig::load(&dir.join("network.toml")).unwrap();
        cfg.cache_dir = dir.join(format!("braid-cache-{legs}"));
        cfg.conflux_legs = Some(legs);
        let client = TorClient::bootstrap(cfg, Duration::from_secs(60), |_| {})
            .await
            .unwrap();
        let server = SocksServer::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let socks = server.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(Arc::new(client.clone()), async {
            let _ = stopped.await;
        }));

        wait_for_exits(files, socks).await;

        // One download, byte for byte.
        let size = 20_000_000;
        let d = fetch_file(files, Some((socks, None)), size, legs as u64)
            .await
            .unwrap();
        let tunnels = client.tunnels_for(&IsolationKey::default());
        assert_eq!(tunnels.len(), 1, "one set serves the default key");
        let t = &tunnels[0];
        assert_eq!(t.info().legs.len(), legs);
        let exits: Vec<&String> = t.info().legs.iter().map(|l| &l[2]).collect();
        assert!(
            exits.windows(2).all(|w| w[0] == w[1]),
            "legs share the exit"
        );
        let figures = t.leg_figures().await;
        assert_eq!(figures.len(), legs);
        let received: Vec<u64> = figures
            .iter()
            .map(|f| f.figures.as_ref().map_or(0, |f| f.data_received))
            .collect();
        let peak = t.reorder_peak().await.unwrap();
        println!(
            "{legs} legs ({}): {:.2} MB/s, first byte {} ms, DATA cells per leg {received:?}, reorder peak {peak} bytes",
            t.info().describe(),
            d.mb_per_s(),
            d.time_to_first_byte.as_millis()
        );
        assert!(
            received.iter().all(|r| *r > 0),
            "every leg carried data: {received:?}"
        );

        // Several streams at once on the same set.
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..8u64 {
            tasks.push(tokio::spawn(async move {
                fetch_file(files, Some((socks, None)), 1_000_000 + i * 777, 50 + i).await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        println!(
            "{legs} legs: 8 concurrent streams in {:.2} s",
            start.elapsed().as_secs_f64()
        );
        assert_eq!(client.tunnels_for(&IsolationKey::default()).len(), 1);

        let _ = stop.send(());
        serving.await.unwrap().unwrap();
    }
    network.down().unwrap();
}
