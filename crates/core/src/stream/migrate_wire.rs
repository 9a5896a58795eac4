//! The wire format of live stream migration (Braid proposal 001 §4), shared
//! by the client's streams ([`super::StreamMap`]) and the exit's
//! ([`crate::exit::ExitStreamMap`]).
//!
//! Five relay commands in Braid's range (proposal 001 §4.1): tor-cell does
//! not know them, so they travel as [`AnyRelayMsg::Unrecognized`] and are
//! only ever sent on a circuit whose exit lists `BraidMigrate=1` (proposal
//! 001 §2.1). On a Conflux set they are sequenced like BEGIN and DATA
//! ([`crate::conflux::is_multiplexed`]): a MIGRATE_MARK must follow the
//! last DATA before it whichever leg either went on.
//!
//! The token is a capability (§4.1): [`StreamToken`]'s `Debug` never shows
//! it, so no log line can.

use std::fmt;

use rand::CryptoRng;
use tor_cell::relaycell::RelayCmd;
use tor_cell::relaycell::RelayMsg as _;
use tor_cell::relaycell::msg::{AnyRelayMsg, Unrecognized};
use zeroize::Zeroize as _;

/// RELAY_BRAID_STREAM_REGISTER (proposal 001 §4.1): the client asks for a
/// token, right after its BEGIN, on the same stream id. Empty body.
pub const CMD_REGISTER: u8 = 0xE0;
/// RELAY_BRAID_STREAM_TOKEN: the exit's answer after CONNECTED.
pub const CMD_TOKEN: u8 = 0xE1;
/// RELAY_BRAID_MIGRATE: the client takes a stream over on a new id.
pub const CMD_MIGRATE: u8 = 0xE2;
/// RELAY_BRAID_MIGRATED: the exit's answer on the new id.
pub const CMD_MIGRATED: u8 = 0xE3;
/// RELAY_BRAID_MIGRATE_MARK: after the sender's last byte on the old id.
pub const CMD_MARK: u8 = 0xE4;

/// Length of a token.
pub const TOKEN_LEN: usize = 32;

/// Bit 0 of FLAGS: the sender is done writing (proposal 001 §4.2).
const FLAG_DONE: u8 = 0x01;

/// True for the five commands of proposal 001 §4.
pub fn is_migrate_cmd(cmd: RelayCmd) -> bool {
    (CMD_REGISTER..=CMD_MARK).contains(&u8::from(cmd))
}

/// A stream's token (proposal 001 §4.1): 32 random bytes that let whoever
/// presents them at the exit take the stream over. Never logged: its
/// `Debug` and `Display` print nothing of it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StreamToken([u8; TOKEN_LEN]);

impl StreamToken {
    /// A fresh random token.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut b = [0u8; TOKEN_LEN];
        rng.fill_bytes(&mut b);
        Self(b)
    }

    /// A token from its bytes.
    pub fn from_bytes(b: [u8; TOKEN_LEN]) -> Self {
        Self(b)
    }

    /// Its bytes.
    pub fn as_bytes(&self) -> &[u8; TOKEN_LEN] {
        &self.0
    }
}

impl Drop for StreamToken {
    fn drop(&mut self) {
        // Forgotten means gone (proposal 001 §4.1).
        self.0.zeroize();
    }
}

impl fmt::Debug for StreamToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamToken(..)")
    }
}

/// RELAY_BRAID_MIGRATE's body (proposal 001 §4.2 step 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrate {
    /// The stream's token.
    pub token: StreamToken,
    /// Stream bytes the client received on the old id.
    pub recv_bytes: u64,
    /// Stream bytes the client sent on the old id.
    pub sent_bytes: u64,
    /// The client is done writing (FLAGS bit 0).
    pub done: bool,
}

/// RELAY_BRAID_MIGRATED's body (proposal 001 §4.2 step 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// Stream bytes the exit received on the old id.
    pub recv_bytes: u64,
    /// Stream bytes the exit sent on the old id.
    pub sent_bytes: u64,
    /// The destination is done writing (FLAGS bit 0).
    pub done: bool,
}

/// One of the five messages, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrateMsg {
    /// STREAM_REGISTER.
    Register,
    /// STREAM_TOKEN.
    Token(StreamToken),
    /// MIGRATE.
    Migrate(Migrate),
    /// MIGRATED.
    Migrated(Migrated),
    /// MIGRATE_MARK.
    Mark,
}

/// A body of the wrong length: the sender broke proposal 001 §4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed Braid migration message {cmd:#04x}: {len} bytes (proposal 001 §4)")]
pub struct MalformedMigrateMsg {
    /// The command.
    pub cmd: u8,
    /// The body's length.
    pub len: usize,
}

impl MigrateMsg {
    /// The message, if `msg` is one of the five commands: `None` for any
    /// other message, an error for a body of the wrong length.
    pub fn parse(msg: &AnyRelayMsg) -> Option<Result<Self, MalformedMigrateMsg>> {
        let AnyRelayMsg::Unrecognized(u) = msg else {
            return None;
        };
        let cmd = u8::from(u.cmd());
        if !is_migrate_cmd(u.cmd()) {
            return None;
        }
        // tor-cell keeps the body private; its encoding is the body.
        let mut body = Vec::new();
        if msg.clone().encode_onto(&mut body).is_err() {
            return Some(Err(MalformedMigrateMsg { cmd, len: 0 }));
        }
        Some(Self::parse_body(cmd, &body))
    }

    /// Parse the body of command `cmd`.
    fn parse_body(cmd: u8, b: &[u8]) -> Result<Self, MalformedMigrateMsg> {
        let bad = MalformedMigrateMsg { cmd, len: b.len() };
        let u64_at = |at: usize| -> Option<u64> {
            let s: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
            Some(u64::from_be_bytes(s))
        };
        match cmd {
            CMD_REGISTER | CMD_MARK if b.is_empty() => Ok(if cmd == CMD_MARK {
                MigrateMsg::Mark
            } else {
                MigrateMsg::Register
            }),
            CMD_TOKEN => {
                let t: [u8; TOKEN_LEN] = b.try_into().map_err(|_| bad)?;
                Ok(MigrateMsg::Token(StreamToken(t)))
            }
            CMD_MIGRATE if b.len() == TOKEN_LEN + 17 => {
                let t: [u8; TOKEN_LEN] = b
                    .get(..TOKEN_LEN)
                    .and_then(|s| s.try_into().ok())
                    .ok_or(bad)?;
                let flags = *b.get(TOKEN_LEN + 16).ok_or(bad)?;
                Ok(MigrateMsg::Migrate(Migrate {
                    token: StreamToken(t),
                    recv_bytes: u64_at(TOKEN_LEN).ok_or(bad)?,
                    sent_bytes: u64_at(TOKEN_LEN + 8).ok_or(bad)?,
                    done: flags & FLAG_DONE != 0,
                }))
            }
            CMD_MIGRATED if b.len() == 17 => {
                let flags = *b.get(16).ok_or(bad)?;
                Ok(MigrateMsg::Migrated(Migrated {
                    recv_bytes: u64_at(0).ok_or(bad)?,
                    sent_bytes: u64_at(8).ok_or(bad)?,
                    done: flags & FLAG_DONE != 0,
                }))
            }
            _ => Err(bad),
        }
    }

    /// The relay message.
    pub fn to_msg(&self) -> AnyRelayMsg {
        let (cmd, body) = match self {
            MigrateMsg::Register => (CMD_REGISTER, Vec::new()),
            MigrateMsg::Mark => (CMD_MARK, Vec::new()),
            MigrateMsg::Token(t) => (CMD_TOKEN, t.0.to_vec()),
            MigrateMsg::Migrate(m) => {
                let mut b = Vec::with_capacity(TOKEN_LEN + 17);
                b.extend_from_slice(&m.token.0);
                b.extend_from_slice(&m.recv_bytes.to_be_bytes());
                b.extend_from_slice(&m.sent_bytes.to_be_bytes());
                b.push(if m.done { FLAG_DONE } else { 0 });
                (CMD_MIGRATE, b)
            }
            MigrateMsg::Migrated(m) => {
                let mut b = Vec::with_capacity(17);
                b.extend_from_slice(&m.recv_bytes.to_be_bytes());
                b.extend_from_slice(&m.sent_bytes.to_be_bytes());
                b.push(if m.done { FLAG_DONE } else { 0 });
                (CMD_MIGRATED, b)
            }
        };
        AnyRelayMsg::Unrecognized(Unrecognized::new(RelayCmd::from(cmd), body))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use rand::SeedableRng as _;
    use tor_bytes::Reader;

    use super::*;

    /// Through tor-cell's encoder and decoder, as on the wire.
    fn wire(m: &MigrateMsg) -> AnyRelayMsg {
        let msg = m.to_msg();
        let cmd = msg.cmd();
        let mut body = Vec::new();
        msg.encode_onto(&mut body).unwrap();
        AnyRelayMsg::decode_from_reader(cmd, &mut Reader::from_slice(&body)).unwrap()
    }

    #[test]
    fn every_message_round_trips_through_tor_cell() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let token = StreamToken::random(&mut rng);
        let all = [
            MigrateMsg::Register,
            MigrateMsg::Mark,
            MigrateMsg::Token(token.clone()),
            MigrateMsg::Migrate(Migrate {
                token,
                recv_bytes: 1 << 40,
                sent_bytes: 7,
                done: true,
            }),
            MigrateMsg::Migrated(Migrated {
                recv_bytes: 3,
                sent_bytes: u64::MAX,
                done: false,
            }),
        ];
        for m in all {
            let back = wire(&m);
            assert!(is_migrate_cmd(back.cmd()));
            assert_eq!(MigrateMsg::parse(&back), Some(Ok(m)));
        }
    }

    #[test]
    fn wrong_lengths_are_malformed_and_other_commands_are_not_ours() {
        let raw = |cmd: u8, len: usize| {
            AnyRelayMsg::Unrecognized(Unrecognized::new(RelayCmd::from(cmd), vec![0; len]))
        };
        for (cmd, len) in [
            (CMD_REGISTER, 1),
            (CMD_MARK, 3),
            (CMD_TOKEN, 31),
            (CMD_TOKEN, 33),
        ] {
            assert_eq!(
                MigrateMsg::parse(&raw(cmd, len)),
                Some(Err(MalformedMigrateMsg { cmd, len }))
            );
        }
        assert!(matches!(
            MigrateMsg::parse(&raw(CMD_MIGRATE, 48)),
            Some(Err(_))
        ));
        assert!(matches!(
            MigrateMsg::parse(&raw(CMD_MIGRATED, 18)),
            Some(Err(_))
        ));
        assert_eq!(MigrateMsg::parse(&raw(0xE5, 0)), None);
        assert_eq!(MigrateMsg::parse(&raw(0xDF, 0)), None);
        let data = tor_cell::relaycell::msg::Data::new(b"x").unwrap().into();
        assert_eq!(MigrateMsg::parse(&data), None);
    }

    #[test]
    fn a_token_never_shows_in_debug_output() {
        let t = StreamToken::from_bytes([0xAB; TOKEN_LEN]);
        let m = MigrateMsg::Migrate(Migrate {
            token: t.clone(),
            recv_bytes: 0,
            sent_bytes: 0,
            done: false,
        });
        for s in [
            format!("{t:?}"),
            format!("{m:?}"),
            format!("{:?}", MigrateMsg::Token(t)),
        ] {
            assert!(
                !s.to_lowercase().contains("ab, ") && !s.contains("171"),
                "{s}"
            );
        }
    }
}
