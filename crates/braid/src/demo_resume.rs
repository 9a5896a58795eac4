//! `braid demo`'s resumption run (Braid proposal 001 §3, issue 15): a
//! download through Braid's client on a 2-leg Conflux set to the Braid
//! exit, the middle of the leg carrying it killed (SIGKILL) a quarter of
//! the way in; the download completes, checked by SHA-256, and the report
//! shows the resumption: resumptions, cells resent, the retransmit
//! buffer's peak and the time from the leg's death to data flowing again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use braid_client::socks::{IsolationKey, SocksServer};
use braid_client::tunnel::TunnelHandle;
use braid_client::{ClientConfig, TorClient};
use braid_dir::restrict::NodeRestrictions;
use braid_testnet::download::{Download, fetch_file};

use crate::demo::{BRAID_CACHE, tunnel_table};

/// SOCKS credentials of the run: its isolation key.
const USER: &str = "resume";
const PASS: &str = "demo";
/// The longest the download may take, kill included.
const FETCH_LIMIT: Duration = Duration::from_secs(300);

/// The download through `exit` with the busy leg's middle killed once
/// `size / 4` bytes have come. Returns the download (SHA-256 verified) and
/// the report.
pub(crate) async fn killed_middle_download(
    dir: &std::path::Path,
    files: std::net::SocketAddr,
    size: u64,
    exit: &str,
) -> Result<(Download, String), String> {
    let mut config = ClientConfig::load(&dir.join("network.toml")).map_err(|e| e.to_string())?;
    config.cache_dir = dir.join(BRAID_CACHE);
    config.conflux_legs = Some(2);
    // The stream on the set from its first byte (with migration, a single
    // circuit would carry it while the set builds).
    config.migrate = false;
    config.nodes = NodeRestrictions::parse(&[], &[], &[exit]).map_err(|e| e.to_string())?;
    if !config.resume {
        return Err("resumption is off in the client's configuration".into());
    }
    let client = TorClient::bootstrap(config, Duration::from_secs(60), |_| {})
        .await
        .map_err(|e| e.to_string())?;
    let server = SocksServer::bind(([127, 0, 0, 1], 0).into())
        .await
        .map_err(|e| e.to_string())?;
    let socks = server.local_addr().map_err(|e| e.to_string())?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(Arc::new(client.clone()), async {
        let _ = stopped.await;
    }));
    let fetch = tokio::spawn(async move {
        fetch_file(files, Some((socks, Some((USER, PASS)))), size, 3)
            .await
            .map_err(|e| e.to_string())
    });
    let killed = kill_busy_middle(dir, &client, size / 4, &fetch).await;
    let abort = fetch.abort_handle();
    let result = match tokio::time::timeout(FETCH_LIMIT, fetch).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(format!("the download task: {e}")),
        Err(_) => {
            abort.abort();
            Err(format!("the download did not end within {FETCH_LIMIT:?}"))
        }
    };
    let report = match &killed {
        Ok(k) => report(k).await,
        Err(_) => String::new(),
    };
    let _ = stop.send(());
    let _ = serving.await;
    let killed = killed?;
    let d = result.map_err(|e| format!("{e} (after killing {})", killed.middle))?;
    Ok((d, report))
}

/// What was killed, and when.
struct Killed {
    tunnel: TunnelHandle,
    middle: String,
    leg: usize,
    after_bytes: u64,
    at: Instant,
}

/// Wait until the key's tunnel has received `after` bytes, then kill the
/// middle of its open leg that received the most.
async fn kill_busy_middle(
    dir: &std::path::Path,
    client: &TorClient,
    after: u64,
    fetch: &tokio::task::JoinHandle<Result<Download, String>>,
) -> Result<Killed, String> {
    let key = IsolationKey {
        username: USER.as_bytes().to_vec(),
        password: PASS.as_bytes().to_vec(),
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if fetch.is_finished() {
            return Err("the download ended before the kill".into());
        }
        if Instant::now() > deadline {
            return Err("no progress to kill a leg at".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Some(t) = client.tunnels_for(&key).into_iter().next() else {
            continue;
        };
        let Some(r) = t.report().await else {
            continue;
        };
        let got = r.data_bytes_received();
        if !r.conflux || got < after {
            continue;
        }
        if !r.resume.resumable {
            return Err("the set is not resumable (does the exit advertise BraidResume=1?)".into());
        }
        let Some((leg, l)) = r
            .legs
            .iter()
            .enumerate()
            .filter(|(_, l)| l.open)
            .max_by_key(|(_, l)| l.stats.map_or(0, |s| s.last_seq_recv))
        else {
            return Err("no open leg".into());
        };
        let middle = l
            .path
            .get(1)
            .cloned()
            .ok_or_else(|| "a leg without a middle".to_owned())?;
        let alive =
            braid_testnet::process::kill_recorded(dir, &middle).map_err(|e| e.to_string())?;
        if !alive {
            return Err(format!("{middle} was not running"));
        }
        crate::testnet_cmd::say(&format!(
            "killed {middle}, the middle of leg {} ({}), after {got} bytes",
            leg + 1,
            l.path.join(" > ")
        ));
        return Ok(Killed {
            tunnel: t,
            middle,
            leg: leg + 1,
            after_bytes: got,
            at: Instant::now(),
        });
    }
}

/// The tunnel's legs and its resumption figures.
async fn report(k: &Killed) -> String {
    let mut out = tunnel_table(&k.tunnel).await;
    let Some(r) = k.tunnel.report().await else {
        out.push_str("the tunnel is gone: no figures\n");
        return out;
    };
    let s = r.resume;
    let ms = |d: Option<Duration>| {
        d.map_or_else(
            || "-".into(),
            |d| format!("{:.0} ms", d.as_secs_f64() * 1000.0),
        )
    };
    out.push_str(&format!(
        "resumption: leg {} lost its middle {} after {} bytes; {} resumption(s), \
         {} cells resent by the exit ({} by us), our retransmit buffer's peak {} bytes, \
         data flowing again {} after the client saw the loss (max {}), {:.1} s from the \
         kill to the last byte; the set {}\n",
        k.leg,
        k.middle,
        k.after_bytes,
        s.resumptions,
        s.cells_resent_by_peer,
        s.cells_resent,
        s.retransmit_peak_bytes,
        ms(s.last_recovery),
        ms(s.max_recovery),
        k.at.elapsed().as_secs_f64(),
        if k.tunnel.is_closed() {
            "closed"
        } else {
            "lived through it"
        },
    ));
    out
}
