//! Tests of [`TorClient`] that need no network: guard confirmation by
//! Conflux legs, parallel channel connects, names refused before any
//! circuit.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use std::net::{Ipv4Addr, SocketAddrV4};

use braid_dir::{BandwidthWeights, RelayFlags};

use super::conflux::WeakClient;
use super::*;
use crate::socks::{Connector, SocksCommand, SocksRequest, SocksTarget};

fn id(n: u8) -> RelayId {
    RelayId::new([n; 20])
}

/// A client over `n` guard-flagged relays (ids 1..=n) and a cache in a
/// fresh folder named after `name`; no directory, no network.
fn client(name: &str, n: u8) -> (TorClient, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("braid-client-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let relays: Vec<Relay> = (1..=n)
        .map(|i| {
            let mut r = Relay::new(
                id(i),
                format!("g{i}"),
                SocketAddrV4::new(Ipv4Addr::new(10, i, 0, 1), 9001),
            );
            r.flags = GuardParams::default().required_flags | RelayFlags::RUNNING;
            r.weight = 100;
            r
        })
        .collect();
    let mut guards = GuardSet::new(GuardParams::default());
    guards.update_consensus(
        &relays,
        &BandwidthWeights::default(),
        SystemTime::now(),
        &mut rand::rng(),
    );
    let (_, netdir) = watch::channel(None);
    let config = ClientConfig {
        cache_dir: dir.clone(),
        ..ClientConfig::public()
    };
    let cache = DirCache::open(&dir).unwrap();
    let state = crate::state::StateDir::open(&dir.join("state"), "test").unwrap();
    let client = TorClient::with_parts(config, netdir, guards, Some(cache), Some(state));
    (client, dir)
}

/// The confirmed guards of the saved guard state.
fn saved_confirmed(dir: &std::path::Path) -> Vec<RelayId> {
    // The state directory is locked by the client: read its file.
    let text = std::fs::read_to_string(dir.join("state").join("guards.toml")).unwrap();
    let set = GuardSet::from_toml(&text, GuardParams::default()).unwrap();
    set.confirmed().to_vec()
}

#[test]
fn conflux_leg_guards_are_confirmed_and_saved() {
    let (client, dir) = client("legs", 8);
    // The guards of a two-leg set, picked as `build_conflux` does.
    let picked = client.conflux_guards(2, &[]);
    assert_eq!(picked.len(), 2);
    assert!(client.inner.guards.lock().unwrap().confirmed().is_empty());
    // The set reports each leg built (guard, middle, exit).
    for g in &picked {
        LegSource::leg_built(&client, &[*g, id(200), id(201)], Duration::from_millis(300));
    }
    let confirmed = client.inner.guards.lock().unwrap().confirmed().to_vec();
    assert_eq!(confirmed, picked);
    assert_eq!(saved_confirmed(&dir), picked);
    // A relaunched leg's guard, picked with the others excluded.
    let relaunch = client.conflux_guards(1, &picked);
    assert_eq!(relaunch.len(), 1);
    assert!(!picked.contains(&relaunch[0]));
    LegSource::leg_built(
        &client,
        &[relaunch[0], id(202), id(201)],
        Duration::from_millis(300),
    );
    let mut expected = picked.clone();
    expected.push(relaunch[0]);
    assert_eq!(saved_confirmed(&dir), expected);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A relay at a local port that takes TCP connections and never
/// answers the TLS handshake.
async fn silent_relay(n: u8) -> (Relay, tokio::net::TcpListener) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let std::net::SocketAddr::V4(addr) = listener.local_addr().unwrap() else {
        unreachable!("bound to an IPv4 address")
    };
    (Relay::new(id(n), format!("r{n}"), addr), listener)
}

#[tokio::test(start_paused = true)]
async fn channels_to_different_relays_connect_in_parallel() {
    let (client, dir) = client("channels", 2);
    let (r1, _l1) = silent_relay(1).await;
    let (r2, _l2) = silent_relay(2).await;
    let start = tokio::time::Instant::now();
    let (a, b) = tokio::join!(client.channel_to(&r1), client.channel_to(&r2));
    assert!(matches!(a, Err(TunnelError::Channel(ref e)) if e.is_timeout()));
    assert!(matches!(b, Err(TunnelError::Channel(ref e)) if e.is_timeout()));
    // Both connects ran at once: one timeout, not two in a row.
    assert_eq!(start.elapsed(), CHANNEL_TIMEOUT);
    assert_eq!(client.inner.connecting.active_keys(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn entry_nodes_guards_are_not_confirmed() {
    let (client, dir) = client("entry", 8);
    let mut config = client.inner.config.clone();
    config.nodes.entry = vec![braid_dir::NodeSpec::Id(id(1))];
    let client = TorClient::with_parts(
        config,
        client.inner.netdir.clone(),
        client.inner.guards.lock().unwrap().clone(),
        None,
        None,
    );
    LegSource::leg_built(
        &client,
        &[id(1), id(200), id(201)],
        Duration::from_millis(300),
    );
    assert!(client.inner.guards.lock().unwrap().confirmed().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn onion_and_exit_names_fail_before_any_circuit() {
    let (client, dir) = client("onion", 3);
    let key = IsolationKey::default();
    let target = |h: &str| Target {
        host: Host::Hostname(h.into()),
        port: 443,
    };
    let onion = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion";
    let t = std::time::Instant::now();
    let err = client.connect(target(onion), &key).await.unwrap_err();
    assert_eq!(err.reply, Socks5Reply::HostUnreachable);
    assert!(!err.circuit_failed);
    assert!(err.reason.contains("onion"), "{}", err.reason);
    let err = client
        .connect(target("a.relay.exit"), &key)
        .await
        .unwrap_err();
    assert_eq!(err.reply, Socks5Reply::GeneralFailure);
    assert!(err.reason.contains(".exit"), "{}", err.reason);
    assert!(t.elapsed() < Duration::from_millis(100));
    // Through the SOCKS connector too, for RESOLVE.
    let request = SocksRequest {
        command: SocksCommand::Resolve,
        target: SocksTarget::Hostname(onion.into(), 0),
        isolation: key.clone(),
    };
    let reply = Connector::resolve(&client, &request).await.unwrap_err();
    assert_eq!(reply, Socks5Reply::HostUnreachable);
    // An ordinary name goes for a circuit, which fails here: this client
    // has no directory.
    let err = client
        .connect(target("example.com"), &key)
        .await
        .unwrap_err();
    assert_eq!(err.reply, Socks5Reply::GeneralFailure);
    assert!(err.reason.contains("no directory"), "{}", err.reason);
    assert!(client.tunnels().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A Conflux set's leg source does not keep the client alive (its tunnel
/// task holds the source, and the client holds its spare tunnels: a
/// strong reference was a cycle that leaked the client, its channels and
/// its state directory's lock). Once the client is gone, no new legs.
#[tokio::test]
async fn a_sets_leg_source_holds_the_client_weakly() {
    let (client, dir) = client("weak", 8);
    let weak = Arc::downgrade(&client.inner);
    let source = WeakClient(weak.clone());
    drop(client);
    assert!(
        weak.upgrade().is_none(),
        "the leg source kept the client alive"
    );
    let err = source.new_leg(id(1), Vec::new()).await.unwrap_err();
    assert!(err.to_string().contains("the client is gone"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// path-spec §2.4 through the client: built legs' times teach the
/// timeout the next legs get (3-hop circuits only); a timed-out leg after
/// a hop counts; 1-hop times are not recorded.
#[test]
fn built_legs_teach_the_build_timeout() {
    let (client, dir) = client("cbt", 3);
    let source: &dyn LegSource = &client;
    assert_eq!(source.build_timeout(3), Some(Duration::from_secs(60)));
    for i in 0..100u64 {
        source.leg_built(
            &[id(1), id(200), id(201)],
            Duration::from_millis(200 + i % 50),
        );
        source.leg_built(&[id(1)], Duration::from_secs(5));
    }
    let (timeout, recorded, learned) = client.build_timeout_state();
    assert!(learned);
    assert_eq!(recorded, 100);
    assert!(timeout <= Duration::from_millis(250), "{timeout:?}");
    assert_eq!(source.build_timeout(3), Some(timeout));
    source.leg_timed_out(&[id(1), id(200), id(201)], 2);
    assert_eq!(client.build_timeout_state().1, 101);
    drop(client);
    // Saved in the state directory (every 20 records, the 101st among
    // them), and taken back by the next client.
    let text = std::fs::read_to_string(dir.join("state").join("build_times")).unwrap();
    let (saved, skipped) = braid_dir::build_timeout::BuildTimes::from_text(
        &text,
        braid_dir::build_timeout::BuildTimeParams::default(),
    );
    assert_eq!((saved.recorded(), skipped), (101, 0));
    let state = crate::state::StateDir::open(&dir.join("state"), "test").unwrap();
    let (_, netdir) = watch::channel(None);
    let again = TorClient::with_parts(
        ClientConfig::public(),
        netdir,
        GuardSet::new(GuardParams::default()),
        None,
        Some(state),
    );
    again.load_build_times();
    assert_eq!(again.build_timeout_state(), (saved.timeout(), 101, true));
    drop(again);
    let _ = std::fs::remove_dir_all(dir);
}
