//! The send side of a [`ConfluxSet`]: multiplexed messages out on the leg a
//! [`LegChooser`] picks or the caller names, with the CONFLUX_SWITCH a
//! change of leg needs (prop 329 §2.6, §2.8).

use std::time::Instant;

use tor_cell::relaycell::msg::{AnyRelayMsg, ConfluxSwitch};
use tor_cell::relaycell::{RelayCmd, RelayMsg as _};

use super::{ConfluxSet, LegState, Outgoing, SendOutcome};
use crate::conflux::choose::{LegCc, LegChooser};
use crate::conflux::error::ConfluxError;
use crate::conflux::seq::is_multiplexed;
use crate::ids::{LegId, StreamId};

impl ConfluxSet {
    /// Send a multiplexed message (prop 329 §2.8), on the leg `chooser`
    /// picks among the linked legs (with `cc`, the driver's congestion
    /// figures per leg). If the chooser holds, DATA is given back
    /// ([`SendOutcome::Blocked`]) and other commands go on the current leg
    /// (prop 329 §2.5).
    pub fn send(
        &mut self,
        chooser: &mut dyn LegChooser,
        cc: &[(LegId, LegCc)],
        stream: Option<StreamId>,
        msg: AnyRelayMsg,
        now: Instant,
    ) -> Result<SendOutcome, ConfluxError> {
        self.check_can_send(msg.cmd())?;
        self.resize_reorder(now, cc);
        let cmd = msg.cmd();
        if cmd == RelayCmd::DATA && (self.retransmit_full() || self.gap_pending) {
            // Braid proposal 001 §3.2: never drop what is unacknowledged.
            return Ok(SendOutcome::Blocked { stream, msg });
        }
        let mut infos = std::mem::take(&mut self.infos);
        self.fill_leg_infos(cc, &mut infos);
        if !self.resend.is_empty() {
            // A resumed leg takes nothing new before its resends.
            infos.retain(|i| !self.has_resend(i.leg));
        }
        if infos.is_empty() && self.resume.is_some() {
            // A resumable set between legs (all lost, or the only one
            // still resending): the message waits for one (Braid
            // proposal 001 §3.4); it is not an error.
            self.infos = infos;
            return Ok(SendOutcome::Blocked { stream, msg });
        }
        let current = self.send.current();
        let chosen = chooser
            .choose(&infos, current, cmd, now)
            .filter(|l| infos.iter().any(|i| i.leg == *l));
        let leg = match chosen {
            Some(l) => Ok(Some(l)),
            None if cmd == RelayCmd::DATA => Ok(None),
            None => match current.filter(|c| infos.iter().any(|i| i.leg == *c)) {
                Some(c) => Ok(Some(c)),
                None => infos
                    .iter()
                    .min_by_key(|i| (i.rtt().is_none(), i.rtt(), i.leg))
                    .map(|i| Some(i.leg))
                    .ok_or(ConfluxError::NotLinked),
            },
        };
        self.infos = infos;
        match leg? {
            Some(leg) => self.send_on(leg, stream, msg).map(SendOutcome::Sent),
            None => Ok(SendOutcome::Blocked { stream, msg }),
        }
    }

    /// Send a multiplexed message on `leg`, chosen by the caller. The
    /// returned [`Outgoing::leg`] may differ: when another leg is about to
    /// fall 2^31 sequence numbers behind, the message goes there instead
    /// (prop 329 §2.6).
    pub fn send_on(
        &mut self,
        leg: LegId,
        stream: Option<StreamId>,
        msg: AnyRelayMsg,
    ) -> Result<Outgoing, ConfluxError> {
        self.check_can_send(msg.cmd())?;
        if !self.legs.get(&leg).is_some_and(LegState::is_linked) {
            return Err(ConfluxError::NoSuchLeg { leg });
        }
        let leg = self.send.forced_leg(leg);
        let switch = self.send.on_send(leg)?;
        if let Some(seq) = self.send.leg_last_sent(leg) {
            self.keep_sent(leg, seq, stream, &msg);
        }
        let st = self.stats_mut(leg);
        st.msgs_sent += 1;
        st.switches_sent += u64::from(switch.is_some());
        if let AnyRelayMsg::Data(d) = &msg {
            st.data_bytes_sent += d.as_ref().len() as u64;
        }
        Ok(Outgoing {
            leg,
            switch: switch.map(ConfluxSwitch::new),
            stream,
            msg,
        })
    }

    /// Whether a multiplexed `cmd` may be sent now.
    fn check_can_send(&self, cmd: RelayCmd) -> Result<(), ConfluxError> {
        if self.closed.is_some() {
            return Err(ConfluxError::Closed);
        }
        if !is_multiplexed(cmd) {
            return Err(ConfluxError::NotMultiplexed { cmd });
        }
        if !self.linked {
            return Err(ConfluxError::NotLinked);
        }
        Ok(())
    }
}
