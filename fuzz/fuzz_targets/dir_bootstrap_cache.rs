//! The bootstrap state machine (`braid_dir::DirBootstrap`) on a virtual
//! clock: cache files and answers chosen by the input from the recorded
//! private network's documents (as they are, forged, truncated, with a
//! byte changed, of the wrong kind, one certificate only, a tampered
//! microdescriptor), arbitrary text, empty bodies and failed fetches, each
//! arriving after its own latency, or for a kind the input makes
//! persistent, the same answer every time; the clock starts up to 26 hours
//! either side of the recorded consensus' lifetime and runs for up to two
//! days.
//!
//! Invariants:
//! - never more than `MAX_PER_SECOND` requests in one virtual second (the
//!   bootstrap once asked the next source at once for ever when a
//!   consensus's signatures failed: more than 1,000 at one instant);
//! - a wake-up time (`poll_timeout`) is never in the past once
//!   `poll_request` has nothing (a driver would spin);
//! - only the recorded consensus, which the recorded authorities signed, is
//!   ever adopted or stored, and only within a day of its validity; only
//!   recorded certificates are stored.
#![no_main]

mod recorded;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use braid_dir::{Authority, DirBootstrap, DirConfig, DirEvent, DocKind, RequestId};
use libfuzzer_sys::fuzz_target;
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};

const CONSENSUS: &str = include_str!("../../crates/dir/testdata/private-net/consensus-microdesc");
const MICRODESCS: &str = include_str!("../../crates/dir/testdata/private-net/microdescs");

/// The bound per virtual second. With one signed consensus, three
/// certificates and eleven microdescriptors in this world, and every
/// failure holding its document back for at least a second (dir-spec §5.5,
/// C-tor's base delay): consensus requests at most 3 (the fetch at once
/// after adopting a consensus that expired, then "not newer" waits for the
/// next §5.1 window, which may start within the second); certificate
/// requests at most 1 + 3 (one per new certificate); microdescriptor
/// requests at most 4 + 11 (four in flight, then one per new
/// microdescriptor). 22 in all.
const MAX_PER_SECOND: usize = 22;

/// Requests per run. Each recorded consensus or certificate answer costs
/// three to six RSA checks, slow under coverage instrumentation.
const MAX_REQUESTS: usize = 24;

/// Reads the input as a stream of choices; once it runs out, choices come
/// from a generator seeded with the input, so a short input (libFuzzer
/// starts with a few bytes) still drives a long, varied run.
struct Input<'a>(&'a [u8], StdRng);

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Self {
        let seed = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
        Self(data, StdRng::seed_from_u64(seed))
    }

    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => self.1.random(),
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn text(&mut self) -> String {
        let len = usize::from(self.u16() % 2048);
        if self.0.is_empty() {
            // Lines of keywords and junk.
            let words = [
                "network-status-version 3 microdesc\n",
                "onion-key\n",
                "dir-key-certificate-version 3\n",
                "directory-signature ",
                "-----BEGIN SIGNATURE-----\n",
                "\n",
                "x",
            ];
            return (0..len % 64)
                .map(|_| words[usize::from(self.u8()) % words.len()])
                .collect();
        }
        let (t, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        String::from_utf8_lossy(t).into_owned()
    }
}

/// The first certificate of the recorded three.
fn first_cert() -> &'static str {
    let second = recorded::CERTS
        .get(1..)
        .and_then(|t| t.find("dir-key-certificate-version"))
        .map_or(recorded::CERTS.len(), |i| i + 1);
    recorded::CERTS.get(..second).unwrap_or(recorded::CERTS)
}

fn recorded_doc(kind: DocKind) -> &'static str {
    match kind {
        DocKind::Consensus => CONSENSUS,
        DocKind::AuthorityCert => recorded::CERTS,
        DocKind::Microdesc => MICRODESCS,
    }
}

/// A document changed at one byte (kept valid UTF-8).
fn flip(doc: &str, at: u16, to: u8) -> String {
    let mut bytes = doc.as_bytes().to_vec();
    let i = usize::from(at) * 7 % bytes.len().max(1);
    if let Some(b) = bytes.get_mut(i) {
        *b = b' ' + to % 94;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The answer to a request of `kind`, as the input chooses.
fn answer(kind: DocKind, input: &mut Input<'_>) -> Result<String, String> {
    let doc = recorded_doc(kind);
    Ok(match input.u8() % 12 {
        0 | 1 => doc.to_owned(),
        2 => recorded_doc(match kind {
            DocKind::Consensus => DocKind::Microdesc,
            DocKind::AuthorityCert => DocKind::Consensus,
            DocKind::Microdesc => DocKind::AuthorityCert,
        })
        .to_owned(),
        // Signatures that fail.
        3 => CONSENSUS.replacen("Bandwidth=", "Bandwidth=9", 1),
        4 => {
            let cut = usize::from(input.u16()) % doc.len().max(1);
            doc.get(..cut).unwrap_or("").to_owned()
        }
        5 => {
            let (at, to) = (input.u16(), input.u8());
            flip(doc, at, to)
        }
        6 => input.text(),
        7 => String::new(),
        8 => first_cert().to_owned(),
        9 => MICRODESCS.replacen("ntor-onion-key ", "ntor-onion-key A", 1),
        10 => return Err("503 Directory busy".into()),
        _ => return Err("connection refused".into()),
    })
}

/// An answer and its latency (0 to 6.5 s).
fn next_answer(kind: DocKind, input: &mut Input<'_>) -> (Result<String, String>, Duration) {
    let result = answer(kind, input);
    (result, Duration::from_millis(u64::from(input.u16()) / 10))
}

fn kind_index(kind: DocKind) -> usize {
    match kind {
        DocKind::Consensus => 0,
        DocKind::AuthorityCert => 1,
        DocKind::Microdesc => 2,
    }
}

fn secs(t: SystemTime, start: SystemTime) -> u64 {
    t.duration_since(start).map_or(0, |d| d.as_secs())
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let config = DirConfig {
        authorities: recorded::authorities()
            .into_iter()
            .enumerate()
            .map(|(i, v3ident)| Authority {
                nickname: format!("a{i}"),
                v3ident,
                dir_addr: SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16)),
            })
            .collect(),
        fallbacks: Vec::new(),
    };
    // The clock: up to 26 h before or after the recorded time.
    let offset = Duration::from_millis(u64::from(input.u16()) * 1428);
    let start = if input.u8() % 2 == 0 {
        recorded::during() + offset
    } else {
        recorded::during() - offset
    };
    let mut boot = DirBootstrap::new(&config, u64::from(input.u16()));

    // Cache files: each kind maybe, recorded or changed or arbitrary.
    for kind in [
        DocKind::AuthorityCert,
        DocKind::Consensus,
        DocKind::Microdesc,
    ] {
        match input.u8() % 4 {
            0 => {}
            1 => {
                let _ = boot.handle_cached(kind, recorded_doc(kind), start);
            }
            2 => {
                let (at, to) = (input.u16(), input.u8());
                let _ = boot.handle_cached(kind, &flip(recorded_doc(kind), at, to), start);
            }
            _ => {
                let text = input.text();
                let _ = boot.handle_cached(kind, &text, start);
            }
        }
    }

    // A persistent source: a kind whose every answer is the same, as a
    // source that keeps sending a forged consensus (issue 17's hang).
    let persistent = input.u8();
    let sticky: [Option<(Result<String, String>, Duration)>; 3] = [
        DocKind::Consensus,
        DocKind::AuthorityCert,
        DocKind::Microdesc,
    ]
    .map(|kind| (persistent & (1 << kind_index(kind)) != 0).then(|| next_answer(kind, &mut input)));

    let mut now = start;
    let end = start + Duration::from_secs(48 * 3600);
    let mut made: Vec<SystemTime> = Vec::new();
    let mut waiting: VecDeque<(SystemTime, RequestId, Result<String, String>)> = VecDeque::new();
    loop {
        while made.len() < MAX_REQUESTS
            && let Some(req) = boot.poll_request(now)
        {
            made.push(now);
            let (result, latency) = match &sticky[kind_index(req.kind)] {
                Some(same) => same.clone(),
                None => next_answer(req.kind, &mut input),
            };
            waiting.push_back((now + latency, req.id, result));
        }
        while let Some(ev) = boot.poll_event() {
            check_event(&ev, now);
        }
        let timeout = boot.poll_timeout();
        if made.len() < MAX_REQUESTS
            && let Some(t) = timeout
        {
            assert!(t > now, "wake-up in the past: {t:?} at {now:?}");
        }
        let next_answer = waiting.iter().map(|w| w.0).min();
        let next = match (made.len() < MAX_REQUESTS, timeout, next_answer) {
            (true, Some(t), Some(a)) => t.min(a),
            (true, Some(t), None) => t,
            (_, _, Some(a)) => a,
            _ => break,
        };
        if next > end {
            break;
        }
        now = now.max(next);
        let mut later = VecDeque::new();
        while let Some(w) = waiting.pop_front() {
            if w.0 <= now {
                boot.handle_response(w.1, w.2, now);
            } else {
                later.push_back(w);
            }
        }
        waiting = later;
        boot.handle_timeout(now);
    }
    while let Some(ev) = boot.poll_event() {
        check_event(&ev, now);
    }

    // Requests per virtual second.
    let mut per_second: Vec<u64> = made.iter().map(|t| secs(*t, start)).collect();
    per_second.sort_unstable();
    let mut run = 0;
    for (i, s) in per_second.iter().enumerate() {
        run = if i > 0 && per_second.get(i - 1) == Some(s) {
            run + 1
        } else {
            1
        };
        assert!(
            run <= MAX_PER_SECOND,
            "{run} requests in virtual second {s}: {made:?}"
        );
    }
});

/// What the bootstrap hands out is only ever what the recorded network
/// signed: the signed part of every stored document is the recorded one's
/// (what follows it, other signatures, may differ while a majority holds).
fn check_event(ev: &DirEvent, now: SystemTime) {
    match ev {
        DirEvent::Store {
            kind: DocKind::Consensus,
            text,
        } => {
            let signed = |t: &str| {
                t.find("directory-signature ")
                    .and_then(|i| t.get(..i))
                    .map(str::to_owned)
            };
            assert_eq!(
                signed(text),
                signed(CONSENSUS),
                "stored a consensus nobody signed"
            );
        }
        DirEvent::Store {
            kind: DocKind::AuthorityCert,
            text,
        } => {
            for cert in text.split("dir-key-certificate-version").skip(1) {
                let end = cert
                    .find("dir-key-certification\n")
                    .map_or(cert.len(), |i| i + 22);
                let signed = cert.get(..end).unwrap_or(cert);
                assert!(
                    recorded::CERTS.contains(signed),
                    "stored a certificate nobody signed"
                );
            }
        }
        DirEvent::NewConsensus { valid_after, .. } => {
            let day = Duration::from_secs(24 * 3600);
            assert!(
                *valid_after <= now + day,
                "adopted a consensus from beyond tomorrow"
            );
            // The recorded one: valid-after 2026-11-21 10:58:10.
            assert_eq!(
                valid_after.duration_since(SystemTime::UNIX_EPOCH).ok(),
                Some(Duration::from_secs(1_795_258_690))
            );
        }

        _ => {}
    }
}
