//! Command-line syntax.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Braid: a Tor implementation built around Conflux multipath.
#[derive(Debug, Parser)]
#[command(name = "braid", version, about)]
pub(crate) struct Cli {
    /// More log output (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Launch, inspect and stop a private Tor network of C-tor relays on 127.0.0.1.
    #[command(subcommand)]
    Testnet(TestnetCmd),
    /// The main job: a private network, a download through a Conflux set, a per-leg report.
    Demo(Box<DemoArgs>),
    /// Bootstrap the directory (verified consensus, certificates,
    /// microdescriptors) and print a summary with three sample paths.
    Dir(DirArgs),
    /// A SOCKS5/SOCKS4a proxy, and optionally an HTTP CONNECT proxy, on
    /// Braid's own client (public network by default).
    Proxy(ProxyArgs),
    /// Per-tunnel and per-leg figures of a running `braid proxy --metrics`.
    Status(StatusArgs),
    /// The connected streams of a running `braid proxy --metrics` and
    /// their tunnels; `braid streams migrate APP` moves one to another
    /// tunnel of its isolation key to the same exit (exits with
    /// BraidMigrate=1).
    Streams(StreamsArgs),
    /// Benchmarks against the C-tor client on private networks.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// A Braid relay: its keys, its server descriptor, running it.
    #[command(subcommand)]
    Relay(RelayCmd),
}

#[derive(Debug, Subcommand)]
pub(crate) enum RelayCmd {
    /// Load the relay's keys from a C-tor style keys directory (or make
    /// and store a new identity there if it is empty; renew the signing
    /// key near its expiry) and print the fingerprints.
    Keys {
        /// The keys directory (C-tor's DataDirectory/keys).
        #[arg(long)]
        dir: PathBuf,
    },
    /// Build and sign the relay's server descriptor from a relay file
    /// (`[braid_relay]` and `[[authority]]` tables) and print it, or upload it
    /// to every authority.
    Descriptor(RelayDescriptorArgs),
    /// Run the relay in the foreground: listen on the ORPort, carry
    /// circuits (and exit streams if the relay file says so), publish the
    /// descriptor to every authority. Stops on SIGINT or SIGTERM.
    Run(RelayRunArgs),
}

/// `braid relay run`.
#[derive(Debug, Args)]
pub(crate) struct RelayRunArgs {
    /// The relay file (`[braid_relay]` and `[[authority]]` tables).
    #[arg(long)]
    pub(crate) config: PathBuf,
}

/// `braid relay descriptor`.
#[derive(Debug, Args)]
pub(crate) struct RelayDescriptorArgs {
    /// The relay file.
    #[arg(long)]
    pub(crate) config: PathBuf,
    /// Upload it to every authority (POST /tor/) and check each serves it
    /// back, instead of printing it.
    #[arg(long)]
    pub(crate) publish: bool,
    /// Seconds each upload may take.
    #[arg(long, default_value_t = 30)]
    pub(crate) timeout: u64,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCmd {
    /// One circuit: Braid's client and the C-tor client (Conflux off),
    /// alternating, unshaped and shaped; a table and a JSON file.
    Single(BenchSingleArgs),
    /// Conflux: each leg alone, Braid's Conflux with each scheduler, and
    /// the C-tor client's Conflux, over shaped middles (scenarios uniform,
    /// bw-1-3, rtt-1-5, 3-legs), bulk downloads and uploads, then short
    /// uploads; tables, a JSON file and an SVG plot.
    Conflux(BenchConfluxArgs),
    /// Relay: a Braid exit against a C-tor exit on one network, the
    /// C-tor client pinned to each in turn: bulk downloads (MB/s, first
    /// byte, exit CPU per 100 MB, exit peak RSS), then a load run of
    /// concurrent bulk and small streams through each exit, Braid with
    /// KIST on and off; a table with the targets and a JSON file.
    Relay(BenchRelayArgs),
    /// Soak: `braid proxy` (Conflux sets) under a steady mix of uploads,
    /// bulk downloads and small exchanges for many minutes while a live
    /// leg's middle is killed (and restarted) every minute; samples the
    /// proxy's RSS, open descriptors and tunnels every second and reports
    /// their slopes, the streams completed and failed, and why.
    Soak(BenchSoakArgs),
    /// Resumption: the busy leg's middle killed at a random point of a
    /// download and of an upload, many times, through the Braid exit
    /// (resumption) and a C-tor exit (the stream resets): completion,
    /// time against the usual, the client's stall, cells resent and the
    /// retransmit peak; a table and a JSON file.
    Resume(BenchResumeArgs),
    /// Directory: bootstrap time and bytes, cold (empty cache), warm
    /// (cache of a moment ago) and by diff (cache two consensus periods
    /// old), Braid's client beside the C-tor client on one network; a
    /// table and a JSON file.
    Dir(BenchDirArgs),
}

/// `braid bench dir`.
#[derive(Debug, Args)]
pub(crate) struct BenchDirArgs {
    /// Working directory (the network and bench-dir.json go here).
    #[arg(long)]
    pub(crate) dir: PathBuf,
    /// Runs of each case per client.
    #[arg(long, default_value_t = 3)]
    pub(crate) runs: usize,
    /// Relays besides the authorities and exits (more relays, more
    /// microdescriptors).
    #[arg(long, default_value_t = 8)]
    pub(crate) relays: usize,
    /// First port of the network's port block.
    #[arg(long, default_value_t = 23000)]
    pub(crate) base_port: u16,
}

/// `braid bench resume`.
#[derive(Debug, Args)]
pub(crate) struct BenchResumeArgs {
    /// Working directory (the network and bench-resume.json go here).
    #[arg(long)]
    pub(crate) dir: PathBuf,
    /// Bytes per transfer (suffixes as in 20MB).
    #[arg(long, default_value = "20MB")]
    pub(crate) size: String,
    /// Runs each way per exit kind.
    #[arg(long, default_value_t = 5)]
    pub(crate) runs: usize,
    /// The exits: the Braid exit, the C-tor exits, or both in turn.
    #[arg(long, value_enum, default_value_t = BenchExit::Both)]
    pub(crate) exit: BenchExit,
    /// The relays' links, `NAME:RATE[:DELAY]` (`relays`: every relay that
    /// is no exit).
    #[arg(long, default_value = "relays:4MiB:10ms")]
    pub(crate) shape: String,
    /// First port of the network's port block; the proxies use base+600
    /// and up.
    #[arg(long, default_value_t = 22000)]
    pub(crate) base_port: u16,
    /// The proxies and the Braid exit log at debug level
    /// (`net/proxy-braid.log`, `net/proxy-tor.log`,
    /// `net/nodes/braidexit0/braid.log`).
    #[arg(long)]
    pub(crate) debug_logs: bool,
}

/// `braid bench soak`.
#[derive(Debug, Args)]
pub(crate) struct BenchSoakArgs {
    /// Working directory (the network and bench-soak.json go here).
    #[arg(long)]
    pub(crate) dir: PathBuf,
    /// How long the load runs.
    #[arg(long, default_value_t = 30.0)]
    pub(crate) minutes: f64,
    /// Concurrent streams (a fifth upload, two fifths bulk downloads, two
    /// fifths small exchanges).
    #[arg(long, default_value_t = 50)]
    pub(crate) streams: usize,
    /// Bytes per bulk transfer.
    #[arg(long, default_value_t = 5_000_000)]
    pub(crate) bulk_bytes: u64,
    /// Seconds between kills of a live leg's middle (0: none).
    #[arg(long, default_value_t = 60)]
    pub(crate) kill_every: u64,
    /// The proxy's exits: the Braid exit (resumption) or the C-tor exits.
    #[arg(long, value_enum, default_value_t = BenchExit::Braid)]
    pub(crate) exit: BenchExit,
    /// First port of the network's port block; the proxy uses base+600
    /// (SOCKS) and base+601 (metrics).
    #[arg(long, default_value_t = 21000)]
    pub(crate) base_port: u16,
    /// The proxy and the Braid relays log at debug level (their logs:
    /// `net/network.log`, `net/nodes/<name>/braid.log`), to explain a
    /// failure afterwards.
    #[arg(long)]
    pub(crate) debug_logs: bool,
}

/// `braid bench relay`.
#[derive(Debug, Args)]
pub(crate) struct BenchRelayArgs {
    /// Working directory (the network and bench-relay.json go here).
    #[arg(long)]
    pub(crate) dir: PathBuf,
    /// Bytes per bulk download (suffixes as in 50MB).
    #[arg(long, default_value = "50MB")]
    pub(crate) size: String,
    /// Bulk downloads per exit, and load runs per exit.
    #[arg(long, default_value_t = 3)]
    pub(crate) reps: usize,
    /// The link of the load run's middle relay, `RATE[:DELAY]`: the
    /// bottleneck behind the exits, where their queues build.
    #[arg(long, default_value = "2MiB:10ms")]
    pub(crate) shape: String,
    /// The link of the bulk downloads' middle relay, `RATE[:DELAY]`;
    /// default unshaped (the exits' CPU is the limit).
    #[arg(long)]
    pub(crate) bulk_shape: Option<String>,
    /// tor's BandwidthRate for every exit, C-tor's and Braid's alike
    /// (default: none, 1 GiB/s for both).
    #[arg(long)]
    pub(crate) exit_bandwidth: Option<String>,
    /// Concurrent streams of a load run, each on its own circuit: bulk
    /// and small alternately (the first bulk).
    #[arg(long, default_value_t = 20)]
    pub(crate) load_streams: usize,
    /// Bytes of each bulk stream of a load run.
    #[arg(long, default_value = "10MB")]
    pub(crate) load_bulk_size: String,
    /// Bytes of each small stream of a load run.
    #[arg(long, default_value = "20kB")]
    pub(crate) load_small_size: String,
    /// Milliseconds from a load run's start (every bulk stream starts
    /// then) to its first small stream, and between small streams.
    #[arg(long, default_value_t = 500)]
    pub(crate) small_gap_ms: u64,
    /// First port of the network's port block.
    #[arg(long, default_value_t = 26000)]
    pub(crate) base_port: u16,
    /// The JSON file (default DIR/bench-relay.json).
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
}

/// `braid bench conflux`.
#[derive(Debug, Args)]
pub(crate) struct BenchConfluxArgs {
    /// Working directory (one network per scenario; results go here).
    #[arg(long)]
    pub(crate) dir: PathBuf,
    /// Bytes per transfer (suffixes as in 20MB).
    #[arg(long, default_value = "20MB")]
    pub(crate) size: String,
    /// Transfers per client, direction and scenario.
    #[arg(long, default_value_t = 3)]
    pub(crate) reps: usize,
    /// Which transfers to measure: downloads (split across the legs by
    /// the exit), uploads (split by Braid's scheduler), or both.
    #[arg(long, value_enum, default_value_t = BenchDirection::Both)]
    pub(crate) direction: BenchDirection,
    /// Bytes per short upload (suffixes as in 1MB).
    #[arg(long, default_value = "1MB")]
    pub(crate) short_size: String,
    /// Short uploads per client and scenario, after the bulk transfers,
    /// timed from CONNECTED to the server's answer: where the schedulers'
    /// handling of a transfer's end shows. 0: none.
    #[arg(long, default_value_t = 10)]
    pub(crate) short_reps: usize,
    /// Run only these scenarios (repeatable): uniform, bw-1-3, rtt-1-5,
    /// 3-legs. Default: all four.
    #[arg(long)]
    pub(crate) scenario: Vec<String>,
    /// Whose exit the sets end at: the network's C-tor exit (LowRTT
    /// places downloads), the Braid exit (Braid's schedulers), or each in
    /// turn (a network per scenario and exit).
    #[arg(long, value_enum, default_value_t = BenchExit::Both)]
    pub(crate) exit: BenchExit,
    /// First port of the networks' port blocks; the proxies use
    /// base+600 and up.
    #[arg(long, default_value_t = 30000)]
    pub(crate) base_port: u16,
    /// The JSON file (default DIR/bench-conflux.json).
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// The SVG plot (default DIR/bench-conflux.svg).
    #[arg(long)]
    pub(crate) svg: Option<PathBuf>,
}

/// The exits of `braid bench conflux`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BenchExit {
    /// The C-tor exit.
    Tor,
    /// The Braid exit.
    Braid,
    /// Both, one after the other.
    Both,
}

/// The transfers of `braid bench conflux`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BenchDirection {
    /// Downloads from the file server only.
    Download,
    /// Uploads to the file server only.
    Upload,
    /// A download and an upload per client and repetition.
    Both,
}

/// `braid bench single`.
#[derive(Debug, Args)]
pub(crate) struct BenchSingleArgs {
    /// Working directory (networks and bench-single.json go here).
    #[arg(long)]
    pub(crate) dir: PathBuf,
    /// Bytes per download (suffixes as in 50MB).
    #[arg(long, default_value = "50MB")]
    pub(crate) size: String,
    /// Downloads per client and link setting.
    #[arg(long, default_value_t = 3)]
    pub(crate) reps: usize,
    /// The shaped setting, `NAME:RATE[:DELAY]`.
    #[arg(long, default_value = "relays:2MiB:10ms")]
    pub(crate) shape: String,
    /// Skip the unshaped setting.
    #[arg(long)]
    pub(crate) shaped_only: bool,
    /// First port of the networks' port blocks.
    #[arg(long, default_value_t = 19000)]
    pub(crate) base_port: u16,
}

/// `braid proxy`.
#[derive(Debug, Args)]
pub(crate) struct ProxyArgs {
    /// A network file (a private network's network.toml); default: the
    /// public Tor network.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Where to listen for SOCKS5 and SOCKS4a clients.
    #[arg(long, default_value = "127.0.0.1:9150")]
    pub(crate) socks: std::net::SocketAddr,
    /// Also listen for HTTP CONNECT clients here (C-tor's HTTPTunnelPort).
    #[arg(long, value_name = "ADDR")]
    pub(crate) http_connect: Option<std::net::SocketAddr>,
    /// Send tor's extended SOCKS5 error codes (prop 304, C-tor's
    /// `ExtendedErrors` SocksPort flag) to applications that know them.
    #[arg(long)]
    pub(crate) extended_errors: bool,
    /// Log the hosts and addresses applications connect to, and the
    /// applications' addresses (scrubbed by default, as C-tor's
    /// SafeLogging).
    #[arg(long)]
    pub(crate) unsafe_logging: bool,
    /// Give up bootstrapping after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub(crate) timeout: u64,
    /// Conflux tunnels with this many legs (2 to 8); 0 for single
    /// circuits. Overrides the config file's `[braid] conflux`/`legs`
    /// (default: 2-leg Conflux sets, as C-tor clients).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=8))]
    pub(crate) conflux_legs: Option<u8>,
    /// The directory cache (default: the config file's `[braid] cache_dir`,
    /// or ~/.cache/braid/public for the public network).
    #[arg(long, value_name = "DIR")]
    pub(crate) cache: Option<std::path::PathBuf>,
    /// The state directory: the guard set, private (0700) and locked by one
    /// proxy at a time (default: `[braid] state_dir`, or
    /// ~/.local/share/braid/public for the public network).
    #[arg(long, value_name = "DIR")]
    pub(crate) state: Option<std::path::PathBuf>,
    /// Guards only from these relays (nicknames or fingerprints, comma
    /// separated); replaces the file's `[braid] entry_nodes`.
    #[arg(long, value_delimiter = ',', value_name = "RELAYS")]
    pub(crate) entry_nodes: Vec<braid_dir::NodeSpec>,
    /// Middles only from these relays; replaces `[braid] middle_nodes`.
    #[arg(long, value_delimiter = ',', value_name = "RELAYS")]
    pub(crate) middle_nodes: Vec<braid_dir::NodeSpec>,
    /// Exits only from these relays; replaces `[braid] exit_nodes`.
    #[arg(long, value_delimiter = ',', value_name = "RELAYS")]
    pub(crate) exit_nodes: Vec<braid_dir::NodeSpec>,
    /// Serve per-tunnel and per-leg figures on this loopback address:
    /// Prometheus text at /metrics, JSON at /status (`braid status`).
    #[arg(long)]
    pub(crate) metrics: Option<std::net::SocketAddr>,
}

/// `braid status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The proxy's metrics address (`braid proxy --metrics`).
    #[arg(long, default_value = "127.0.0.1:9035")]
    pub(crate) metrics: std::net::SocketAddr,
    /// Print the proxy's JSON as it is.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `braid streams`.
#[derive(Debug, Args)]
pub(crate) struct StreamsArgs {
    /// The proxy's metrics address (`braid proxy --metrics`).
    #[arg(long, default_value = "127.0.0.1:9035", global = true)]
    pub(crate) metrics: std::net::SocketAddr,
    /// Print the proxy's JSON as it is.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Option<StreamsCmd>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum StreamsCmd {
    /// Move stream APP (the first column of `braid streams`) to another
    /// tunnel of its isolation key to the same exit, built if needed.
    Migrate {
        /// The stream's number.
        app: u64,
        /// Where to: `any` (a Conflux set first), `single` (a single
        /// circuit), `conflux` (a Conflux set), or a tunnel's number (the
        /// tunnel column of `braid streams`). Always a tunnel of the
        /// stream's isolation key to the same exit.
        #[arg(long, default_value = "any")]
        to: braid_client::client::MigrateTo,
    },
}

/// `braid dir`.
#[derive(Debug, Args)]
pub(crate) struct DirArgs {
    /// A network file (a private network's network.toml); default: the
    /// public Tor network.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// The cache directory (default: braid-cache beside the config file,
    /// or ~/.cache/braid/public).
    #[arg(long)]
    pub(crate) cache: Option<PathBuf>,
    /// Neither read nor write the cache.
    #[arg(long)]
    pub(crate) no_cache: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub(crate) timeout: u64,
    /// The exit port for the sample paths.
    #[arg(long, default_value_t = 443)]
    pub(crate) port: u16,
    /// Print only the summary, not the progress lines.
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TestnetCmd {
    /// Start a network and wait until it is ready for Conflux; it keeps running.
    Up(Box<UpArgs>),
    /// Show the processes and consensus of a network.
    Status {
        /// The network directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Stop every process of a network.
    Down {
        /// The network directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// (internal) Run the file server and link shapers of a network.
    #[command(hide = true)]
    Helper {
        /// The network directory.
        #[arg(long)]
        dir: PathBuf,
    },
}

impl TestnetCmd {
    pub(crate) fn is_helper(&self) -> bool {
        matches!(self, TestnetCmd::Helper { .. })
    }
}

/// How to build a network.
#[derive(Debug, Args)]
pub(crate) struct NetArgs {
    /// Non-exit relays (each voted Guard).
    #[arg(long)]
    pub(crate) relays: Option<usize>,
    /// Exit relays.
    #[arg(long)]
    pub(crate) exits: Option<usize>,
    /// Braid non-exit relays (braidrelay0, ...; each voted Guard), run by
    /// `braid relay run` beside the C-tor relays.
    #[arg(long)]
    pub(crate) braid_relays: Option<usize>,
    /// Braid exits (braidexit0, ...), connecting to 127.0.0.0/8 only.
    #[arg(long)]
    pub(crate) braid_exits: Option<usize>,
    /// Directory authorities.
    #[arg(long)]
    pub(crate) authorities: Option<usize>,
    /// First port of the block of ports the network uses.
    #[arg(long)]
    pub(crate) base_port: Option<u16>,
    /// A TOML scenario file (sizes, ports, link emulation).
    #[arg(long)]
    pub(crate) scenario: Option<PathBuf>,
    /// Link emulation `NAME:RATE[:DELAY]`, NAME a nickname or relays/exits/all,
    /// e.g. relays:1MiB:10ms (repeatable).
    #[arg(long = "shape", value_name = "NAME:RATE[:DELAY]")]
    pub(crate) shapes: Vec<String>,
    /// tor's own BandwidthRate for NAME (nickname or group), e.g. relays:1MB (repeatable).
    #[arg(long = "bandwidth", value_name = "NAME:RATE")]
    pub(crate) bandwidths: Vec<String>,
    /// The C-tor client's ConfluxClientUX (throughput, latency, ...).
    #[arg(long)]
    pub(crate) conflux_ux: Option<String>,
    /// Seconds start-up may take.
    #[arg(long, default_value_t = 180)]
    pub(crate) timeout: u64,
    /// tor's log level for every node.
    #[arg(long, default_value = "notice")]
    pub(crate) tor_log: String,
    /// The tor program.
    #[arg(long, default_value = "tor")]
    pub(crate) tor: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// The network directory (keys, torrc files, logs, network.toml).
    #[arg(long)]
    pub(crate) dir: PathBuf,
    /// Do not start the C-tor client.
    #[arg(long)]
    pub(crate) no_client: bool,
    #[command(flatten)]
    pub(crate) net: NetArgs,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// The network directory (default: braid-demo in the temporary directory).
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// Bytes to download (suffixes as in 20MB, 50MiB).
    #[arg(long, default_value = "20MB")]
    pub(crate) size: String,
    /// Leave the network running afterwards.
    #[arg(long)]
    pub(crate) keep: bool,
    /// No default link emulation (the default shapes every non-exit relay to
    /// 2 MiB/s and 10 ms each way, unless --shape or --scenario is given).
    #[arg(long)]
    pub(crate) no_shape: bool,
    #[command(flatten)]
    pub(crate) net: NetArgs,
}
