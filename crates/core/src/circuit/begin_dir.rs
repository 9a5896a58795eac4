//! One directory request over a one-hop circuit (tor-spec §6.2 BEGIN_DIR,
//! dir-spec §5): once the circuit is built, BEGIN_DIR on a stream; on
//! CONNECTED, the HTTP request as DATA; the answer gathered from DATA
//! cells until END, with a stream SENDME every 50 cells (tor-spec §7.4;
//! one-hop directory circuits never negotiate congestion control) and at
//! most `max_bytes` kept. Then the circuit is closed. Sans IO, as the
//! circuit it drives: the driver feeds cells and takes cells.

use std::time::Instant;

use thiserror::Error;
use tor_cell::chancell::msg::AnyChanMsg;
use tor_cell::relaycell::msg::{AnyRelayMsg, BeginDir, Data, EndReason, Sendme};

use super::client::ClientCircuit;
use super::error::CircError;
use super::event::{CircEvent, CloseReason};
use crate::ids::{HopNum, StreamId};

/// DATA cells between stream SENDMEs (tor-spec §7.4: the deliver window
/// starts at 500 and a SENDME adds 50).
pub const STREAM_SENDME_INC: u32 = 50;

/// Why a BEGIN_DIR fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BeginDirError {
    /// The circuit failed or closed before the answer ended.
    #[error("one-hop circuit: {0}")]
    Circuit(String),
    /// The relay ended the stream with a reason other than DONE.
    #[error("directory stream ended: {0}")]
    End(String),
    /// More than the caller's limit arrived.
    #[error("answer over {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The relay sent what a directory stream does not carry.
    #[error("protocol violation on the directory stream: {0}")]
    Protocol(String),
}

/// One BEGIN_DIR exchange on its own circuit.
#[derive(Debug)]
pub struct BeginDirFetch {
    circ: ClientCircuit,
    /// The only stream on its circuit (1).
    stream: Option<StreamId>,
    request: Vec<u8>,
    max_bytes: usize,
    answer: Vec<u8>,
    data_cells: u32,
    outcome: Option<Result<Vec<u8>, BeginDirError>>,
}

impl BeginDirFetch {
    /// Send `request` over BEGIN_DIR once `circ` (a one-hop circuit whose
    /// CREATE* is queued) is built, keeping at most `max_bytes` of answer.
    pub fn new(circ: ClientCircuit, request: Vec<u8>, max_bytes: usize) -> Self {
        Self {
            circ,
            stream: StreamId::new(1),
            request,
            max_bytes,
            answer: Vec::new(),
            data_cells: 0,
            outcome: None,
        }
    }

    /// A cell the channel received for this circuit.
    pub fn handle_cell(&mut self, now: Instant, cell: AnyChanMsg) {
        // An error closes the circuit; its event says why.
        let _ = self.circ.handle_cell(now, cell);
        self.events(now);
    }

    /// The channel closed.
    pub fn handle_channel_closed(&mut self, now: Instant) {
        self.circ.handle_channel_closed();
        self.events(now);
    }

    /// The next cell for the channel.
    pub fn poll_transmit(&mut self) -> Option<AnyChanMsg> {
        self.circ.poll_transmit()
    }

    /// The answer (every byte the relay sent, until END DONE), or why
    /// there is none, once known.
    pub fn take_outcome(&mut self) -> Option<Result<Vec<u8>, BeginDirError>> {
        self.outcome.take()
    }

    /// True once the outcome is known (taken or not).
    pub fn is_done(&self) -> bool {
        self.circ.is_closed()
    }

    fn finish(&mut self, outcome: Result<Vec<u8>, BeginDirError>) {
        if self.outcome.is_none() && !self.circ.is_closed() {
            self.outcome = Some(outcome);
            self.circ.close();
        } else if self.outcome.is_none() {
            self.outcome = Some(outcome);
        }
    }

    fn send(&mut self, msg: AnyRelayMsg, now: Instant) -> Result<(), BeginDirError> {
        self.circ
            .send_relay(HopNum(0), self.stream, msg, now)
            .map_err(|e: CircError| BeginDirError::Circuit(e.to_string()))
    }

    fn events(&mut self, now: Instant) {
        while let Some(ev) = self.circ.poll_event() {
            let result = match ev {
                CircEvent::Built { .. } => self.send(BeginDir::default().into(), now),
                CircEvent::StreamMsg { stream, msg, .. } if Some(stream) == self.stream => {
                    self.stream_msg(msg, now)
                }
                CircEvent::StreamMsg { stream, .. } => Err(BeginDirError::Protocol(format!(
                    "a message on stream {stream}, which we did not open"
                ))),
                CircEvent::BuildFailed { reason } | CircEvent::Closed { reason } => {
                    let why = match reason {
                        CloseReason::Local => "closed before the answer ended".to_owned(),
                        other => other.to_string(),
                    };
                    Err(BeginDirError::Circuit(why))
                }
                CircEvent::HopAdded { .. } | CircEvent::CircMsg { .. } => Ok(()),
            };
            if let Err(e) = result {
                self.finish(Err(e));
            }
        }
    }

    fn stream_msg(&mut self, msg: AnyRelayMsg, now: Instant) -> Result<(), BeginDirError> {
        match msg {
            AnyRelayMsg::Connected(_) => {
                let request = std::mem::take(&mut self.request);
                for chunk in request.chunks(Data::MAXLEN) {
                    let data =
                        Data::new(chunk).map_err(|e| BeginDirError::Protocol(e.to_string()))?;
                    self.send(data.into(), now)?;
                }
                Ok(())
            }
            AnyRelayMsg::Data(d) => {
                let bytes: &[u8] = d.as_ref();
                if self.answer.len().saturating_add(bytes.len()) > self.max_bytes {
                    return Err(BeginDirError::TooLarge {
                        limit: self.max_bytes,
                    });
                }
                self.answer.extend_from_slice(bytes);
                self.data_cells += 1;
                if self.data_cells.is_multiple_of(STREAM_SENDME_INC)
                    && !self.circ.cc_enabled(HopNum(0))
                {
                    self.send(Sendme::new_empty().into(), now)?;
                }
                Ok(())
            }
            AnyRelayMsg::End(e) if e.reason() == EndReason::DONE => {
                let answer = std::mem::take(&mut self.answer);
                self.finish(Ok(answer));
                Ok(())
            }
            AnyRelayMsg::End(e) => Err(BeginDirError::End(e.reason().to_string())),
            other => Err(BeginDirError::Protocol(format!(
                "unexpected {} on a directory stream",
                tor_cell::relaycell::RelayMsg::cmd(&other)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        reason = "tests"
    )]

    use rand::SeedableRng as _;
    use rand::rngs::StdRng;
    use tor_cell::chancell::msg::{CreatedFast, Relay};
    use tor_cell::relaycell::msg::{Connected, End};
    use tor_cell::relaycell::{
        AnyRelayMsgOuter, RelayCellFormat, RelayCmd, RelayMsg as _, StreamId as CellStreamId,
    };

    use super::*;
    use crate::circuit::CircParams;
    use crate::crypto::{RelayHop, Tor1Keys, fast};
    use crate::ids::CircId;

    /// The relay's end of a one-hop circuit made with CREATE_FAST.
    struct Relay1 {
        hop: RelayHop,
        rng: StdRng,
    }

    impl Relay1 {
        /// Answer the CREATE_FAST.
        fn accept(cell: AnyChanMsg) -> (Self, AnyChanMsg) {
            let AnyChanMsg::CreateFast(c) = cell else {
                panic!("not CREATE_FAST: {cell:?}")
            };
            let mut rng = StdRng::seed_from_u64(2);
            let (keygen, reply) = fast::server_handshake(&mut rng, c.handshake()).unwrap();
            let hop = RelayHop::new(&Tor1Keys::derive(keygen).unwrap());
            (Self { hop, rng }, CreatedFast::new(reply.to_vec()).into())
        }

        /// What the client sent in a RELAY cell.
        fn read(&mut self, cell: AnyChanMsg) -> (u16, AnyRelayMsg) {
            let AnyChanMsg::Relay(r) = cell else {
                panic!("not RELAY: {cell:?}")
            };
            let mut body = r.into_relay_body();
            self.hop.decrypt_outbound(&mut body).expect("recognized");
            let msg = AnyRelayMsgOuter::decode_singleton(RelayCellFormat::V0, body).unwrap();
            (
                CellStreamId::get_or_zero(msg.stream_id()),
                msg.msg().clone(),
            )
        }

        fn send(&mut self, stream: u16, msg: AnyRelayMsg) -> AnyChanMsg {
            let mut body = AnyRelayMsgOuter::new(CellStreamId::new(stream), msg)
                .encode(RelayCellFormat::V0, &mut self.rng)
                .unwrap();
            self.hop.originate_inbound(&mut body);
            AnyChanMsg::Relay(Relay::from_raw(*body))
        }
    }

    fn start(max: usize) -> (BeginDirFetch, Relay1, Instant) {
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(1);
        let circ = ClientCircuit::new_fast(
            CircId::new(0x8000_0001).unwrap(),
            CircParams::default(),
            &mut rng,
            now,
        );
        let mut f = BeginDirFetch::new(circ, b"GET /tor/keys/all HTTP/1.0\r\n\r\n".to_vec(), max);
        let (mut relay, created) = Relay1::accept(f.poll_transmit().unwrap());
        f.handle_cell(now, created);
        let (stream, begin) = relay.read(f.poll_transmit().unwrap());
        assert_eq!((stream, begin.cmd()), (1, RelayCmd::BEGIN_DIR));
        let connected = relay.send(1, Connected::new_empty().into());
        f.handle_cell(now, connected);
        let (_, data) = relay.read(f.poll_transmit().unwrap());
        let AnyRelayMsg::Data(d) = data else {
            panic!("{data:?}")
        };
        assert_eq!(d.as_ref(), b"GET /tor/keys/all HTTP/1.0\r\n\r\n");
        (f, relay, now)
    }

    /// CREATE_FAST, BEGIN_DIR, the request, 120 DATA cells with a stream
    /// SENDME after the 50th and the 100th, END DONE: the answer whole,
    /// and a DESTROY.
    #[test]
    fn a_fetch_over_create_fast_and_begin_dir() {
        let (mut f, mut relay, now) = start(1 << 20);
        let mut sent = Vec::new();
        // SENDMEs on the stream, and on the circuit (stream 0).
        let mut sendmes = [0_u32; 2];
        for i in 0..120_u32 {
            let chunk = vec![u8::try_from(i % 251).unwrap(); 400];
            sent.extend_from_slice(&chunk);
            let cell = relay.send(1, Data::new(&chunk).unwrap().into());
            f.handle_cell(now, cell);
            while let Some(c) = f.poll_transmit() {
                let (stream, msg) = relay.read(c);
                assert_eq!(msg.cmd(), RelayCmd::SENDME);
                sendmes[usize::from(stream)] += 1;
            }
            assert_eq!(sendmes, [(i + 1) / 100, (i + 1) / 50]);
        }
        assert!(f.take_outcome().is_none());
        let end = relay.send(1, End::new_with_reason(EndReason::DONE).into());
        f.handle_cell(now, end);
        assert_eq!(f.take_outcome(), Some(Ok(sent)));
        assert!(matches!(f.poll_transmit(), Some(AnyChanMsg::Destroy(_))));
        assert!(f.is_done());
    }

    #[test]
    fn too_much_an_end_and_a_destroy_are_errors() {
        let (mut f, mut relay, now) = start(1000);
        for _ in 0..3 {
            let cell = relay.send(1, Data::new(&[b'x'; 400]).unwrap().into());
            f.handle_cell(now, cell);
        }
        assert_eq!(
            f.take_outcome(),
            Some(Err(BeginDirError::TooLarge { limit: 1000 }))
        );
        assert!(matches!(f.poll_transmit(), Some(AnyChanMsg::Destroy(_))));

        let (mut f, mut relay, now) = start(1000);
        let end = relay.send(1, End::new_with_reason(EndReason::NOTDIRECTORY).into());
        f.handle_cell(now, end);
        assert!(matches!(f.take_outcome(), Some(Err(BeginDirError::End(_)))));

        let (mut f, _, now) = start(1000);
        f.handle_cell(now, tor_cell::chancell::msg::Destroy::new(0.into()).into());
        assert!(matches!(
            f.take_outcome(),
            Some(Err(BeginDirError::Circuit(_)))
        ));
        let (mut f, _, now) = start(1000);
        f.handle_channel_closed(now);
        assert!(matches!(
            f.take_outcome(),
            Some(Err(BeginDirError::Circuit(_)))
        ));

        // CREATED2 does not answer CREATE_FAST.
        let mut rng = StdRng::seed_from_u64(3);
        let id = CircId::new(0x8000_0002).unwrap();
        let circ = ClientCircuit::new_fast(id, CircParams::default(), &mut rng, now);
        let mut f = BeginDirFetch::new(circ, b"GET / HTTP/1.0\r\n\r\n".to_vec(), 10);
        assert!(matches!(f.poll_transmit(), Some(AnyChanMsg::CreateFast(_))));
        let created2 = tor_cell::chancell::msg::Created2::new(vec![0; 64]);
        f.handle_cell(now, created2.into());
        let e = f.take_outcome().unwrap().unwrap_err();
        assert!(e.to_string().contains("CREATED2"), "{e}");
    }
}
