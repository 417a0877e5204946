//! The board's firmware, as Phidgets document it, without I/O and without a
//! clock of its own: [`Firmware`] takes requests and `now`, and says what the
//! board answers and what its relays do.
//!
//! - 1017_1 (HID): an 8-byte output report on endpoint 0x01 sets every relay
//!   from byte 0 (bit i = relay i); input reports echo that mask.
//! - 1017_2 (vendor protocol): control transfers, bmRequestType 0x41,
//!   bRequest 0x00, wValue = (packet type << 8) | channel: 0xFA channel
//!   reset, 0x0A set state (`ff` on, `00` off), 0xF6 enable failsafe (ms, 2
//!   bytes big-endian), 0xF7 reset failsafe. Device requests: 0x41/0x04
//!   wValue 0x2000 (open) and 0x2100 (close), and a 1-byte read 0xC1/0x03
//!   answering the relay mask.
//! - The 1017_2's failsafe, per channel: any valid command to the channel
//!   resets its timer; when it runs out the relay is de-energised, the trip
//!   is reported (IN packet `0d <channel>`), and the channel ignores every
//!   command until a channel reset (the library's close and reopen).

use std::time::{Duration, Instant};

use crate::control::{Model, Plugged};
use crate::descriptors;

pub const CHANNELS: usize = 8;

/// A control transfer's setup packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    pub request_type: u8,
    pub request: u8,
    pub value: u16,
    pub index: u16,
    pub length: u16,
}

/// The board did not take the request (a STALL on the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall(pub String);

/// One channel's failsafe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failsafe {
    Off,
    Armed { time: Duration, deadline: Instant },
    Tripped,
}

impl Failsafe {
    pub fn name(&self) -> &'static str {
        match self {
            Failsafe::Off => "off",
            Failsafe::Armed { .. } => "armed",
            Failsafe::Tripped => "tripped",
        }
    }
}

/// Vendor packet types (the high byte of wValue).
const PKT_SET_STATE: u8 = 0x0A;
const PKT_ENABLE_FAILSAFE: u8 = 0xF6;
const PKT_RESET_FAILSAFE: u8 = 0xF7;
const PKT_CHANNEL_RESET: u8 = 0xFA;

/// The packet a 1017_2 sends when a channel's failsafe trips.
pub const TRIP_PACKET: u8 = 0x0D;

#[derive(Debug, Clone)]
pub struct Firmware {
    pub board: Plugged,
    pub relays: [bool; CHANNELS],
    pub failsafe: [Failsafe; CHANNELS],
    /// Valid commands taken since power-up.
    pub commands: u64,
    /// Per channel: the last command while armed, and the longest gap
    /// between two such commands (reset when the channel is armed).
    last_fed: [Option<Instant>; CHANNELS],
    longest_gap: [Duration; CHANNELS],
}

impl Firmware {
    /// A board just powered up: every relay off, no failsafe.
    pub fn new(board: Plugged) -> Self {
        Self {
            board,
            relays: [false; CHANNELS],
            failsafe: [Failsafe::Off; CHANNELS],
            commands: 0,
            last_fed: [None; CHANNELS],
            longest_gap: [Duration::ZERO; CHANNELS],
        }
    }

    pub fn relay_mask(&self) -> u8 {
        self.relays
            .iter()
            .enumerate()
            .fold(0u8, |mask, (i, on)| mask | (u8::from(*on) << i))
    }

    /// A control transfer. Returns the data sent back for an IN request
    /// (empty for an OUT request, all of whose data was taken).
    pub fn control(&mut self, setup: Setup, data: &[u8], now: Instant) -> Result<Vec<u8>, Stall> {
        let unknown = || Stall(format!("unknown request {setup:?} data {data:02x?}"));
        match (setup.request_type, setup.request) {
            // GET_DESCRIPTOR, standard, to the device: strings.
            (0x80, 0x06) if setup.value >> 8 == 0x03 => {
                let mut s =
                    descriptors::string(&self.board, setup.value as u8).ok_or_else(unknown)?;
                s.truncate(setup.length as usize);
                Ok(s)
            }
            // GET_DESCRIPTOR, standard, to the interface: the HID report.
            (0x81, 0x06) if setup.value == 0x2200 && self.board.model == Model::Hid1017_1 => {
                let mut d = descriptors::HID_REPORT_DESCRIPTOR.to_vec();
                d.truncate(setup.length as usize);
                Ok(d)
            }
            (0x41, 0x00) if self.board.model == Model::Vendor1017_2 => {
                self.channel_packet(setup, data, now).ok_or_else(unknown)?;
                self.commands += 1;
                Ok(Vec::new())
            }
            (0x41, 0x04) if self.board.model == Model::Vendor1017_2 => match setup.value {
                0x2000 | 0x2100 => {
                    self.commands += 1;
                    Ok(Vec::new())
                }
                _ => Err(unknown()),
            },
            (0xC1, 0x03) if self.board.model == Model::Vendor1017_2 => {
                let mut answer = vec![self.relay_mask()];
                answer.truncate(setup.length as usize);
                Ok(answer)
            }
            _ => Err(unknown()),
        }
    }

    /// A vendor packet to one channel; `None` when the board does not know it.
    fn channel_packet(&mut self, setup: Setup, data: &[u8], now: Instant) -> Option<()> {
        let packet = (setup.value >> 8) as u8;
        let ch = usize::from(setup.value as u8);
        if ch >= CHANNELS {
            return None;
        }
        if packet == PKT_CHANNEL_RESET {
            self.relays[ch] = false;
            self.failsafe[ch] = Failsafe::Off;
            return Some(());
        }
        if self.failsafe[ch] == Failsafe::Tripped {
            // Deaf until the channel is reset; the command is still valid.
            return matches!(
                packet,
                PKT_SET_STATE | PKT_ENABLE_FAILSAFE | PKT_RESET_FAILSAFE
            )
            .then_some(());
        }
        match packet {
            PKT_SET_STATE => {
                self.relays[ch] = *data.first()? != 0;
                self.feed(ch, now);
            }
            PKT_ENABLE_FAILSAFE => {
                let ms = u16::from_be_bytes([*data.first()?, *data.get(1)?]);
                let time = Duration::from_millis(u64::from(ms));
                self.failsafe[ch] = Failsafe::Armed {
                    time,
                    deadline: now + time,
                };
                self.last_fed[ch] = Some(now);
                self.longest_gap[ch] = Duration::ZERO;
            }
            PKT_RESET_FAILSAFE => self.feed(ch, now),
            _ => return None,
        }
        Some(())
    }

    /// Any valid command resets an armed channel's timer.
    fn feed(&mut self, ch: usize, now: Instant) {
        if let Failsafe::Armed { time, .. } = self.failsafe[ch] {
            self.failsafe[ch] = Failsafe::Armed {
                time,
                deadline: now + time,
            };
            if let Some(last) = self.last_fed[ch] {
                self.longest_gap[ch] = self.longest_gap[ch].max(now.duration_since(last));
            }
            self.last_fed[ch] = Some(now);
        }
    }

    /// Per channel, the longest gap between two commands since it was
    /// armed, in ms.
    pub fn longest_gaps_ms(&self) -> [u64; CHANNELS] {
        self.longest_gap.map(|g| g.as_millis() as u64)
    }

    /// An output report (1017_1): byte 0 is the relay mask.
    pub fn output_report(&mut self, endpoint: u8, data: &[u8]) -> Result<(), Stall> {
        if self.board.model != Model::Hid1017_1 || endpoint != 0x01 {
            return Err(Stall(format!("no OUT endpoint {endpoint:#04x}")));
        }
        let mask = *data
            .first()
            .ok_or_else(|| Stall("empty output report".into()))?;
        for (i, relay) in self.relays.iter_mut().enumerate() {
            *relay = mask & (1 << i) != 0;
        }
        self.commands += 1;
        Ok(())
    }

    /// The 1017_1's input report: byte 0 echoes the relays.
    pub fn input_report(&self) -> Vec<u8> {
        let mut report = vec![0u8; usize::from(descriptors::REPORT_LEN)];
        report[0] = self.relay_mask();
        report
    }

    /// Trips every armed channel whose time has run out. Returns them.
    pub fn expire(&mut self, now: Instant) -> Vec<u8> {
        let mut tripped = Vec::new();
        for ch in 0..CHANNELS {
            if let Failsafe::Armed { deadline, .. } = self.failsafe[ch]
                && deadline <= now
            {
                self.failsafe[ch] = Failsafe::Tripped;
                self.relays[ch] = false;
                tripped.push(ch as u8);
            }
        }
        tripped
    }

    /// When the next failsafe runs out, if one is armed.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.failsafe
            .iter()
            .filter_map(|f| match f {
                Failsafe::Armed { deadline, .. } => Some(*deadline),
                _ => None,
            })
            .min()
    }

    /// `DIR/SERIAL.json`: `{"model", "serial", "version", "plugged",
    /// "relays": [8 booleans, channel 0 first], "failsafe": [8 of "off" |
    /// "armed" | "tripped"], "commands"}`.
    pub fn to_json(&self, plugged: bool) -> String {
        let relays: Vec<bool> = if plugged {
            self.relays.to_vec()
        } else {
            vec![false; CHANNELS]
        };
        let failsafe: Vec<&str> = if plugged {
            self.failsafe.iter().map(Failsafe::name).collect()
        } else {
            vec!["off"; CHANNELS]
        };
        // Written by hand to keep the documented key order.
        let json = |v: serde_json::Value| v.to_string();
        format!(
            r#"{{"model":{},"serial":{},"version":{},"plugged":{},"relays":{},"failsafe":{},"commands":{}}}"#,
            json(self.board.model.name().into()),
            self.board.serial,
            self.board.version,
            plugged,
            json(relays.into()),
            json(failsafe.into()),
            self.commands,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2() -> Firmware {
        Firmware::new(Plugged {
            model: Model::Vendor1017_2,
            serial: 1,
            version: 200,
        })
    }

    fn packet(packet: u8, ch: u8) -> Setup {
        Setup {
            request_type: 0x41,
            request: 0,
            value: (u16::from(packet) << 8) | u16::from(ch),
            index: 0,
            length: 0,
        }
    }

    #[test]
    fn a_set_state_switches_one_relay_and_counts() {
        let mut fw = v2();
        let now = Instant::now();
        fw.control(packet(PKT_SET_STATE, 3), &[0xff], now)
            .expect("set");
        assert_eq!(fw.relay_mask(), 0b1000);
        assert_eq!(fw.commands, 1);
        fw.control(packet(PKT_SET_STATE, 3), &[0x00], now)
            .expect("set");
        assert_eq!(fw.relay_mask(), 0);
    }

    #[test]
    fn an_armed_channel_trips_unless_fed_and_then_ignores_commands_until_reset() {
        let mut fw = v2();
        let t0 = Instant::now();
        let ms = |n| Duration::from_millis(n);
        fw.control(packet(PKT_SET_STATE, 2), &[0xff], t0)
            .expect("on");
        fw.control(packet(PKT_ENABLE_FAILSAFE, 2), &[0x01, 0xF4], t0)
            .expect("arm 500 ms");
        // Fed by a set state at 400 ms: nothing at 800 ms.
        fw.control(packet(PKT_SET_STATE, 2), &[0xff], t0 + ms(400))
            .expect("feed");
        assert!(fw.expire(t0 + ms(800)).is_empty());
        assert_eq!(fw.next_deadline(), Some(t0 + ms(900)));
        assert_eq!(fw.expire(t0 + ms(900)), vec![2]);
        assert!(!fw.relays[2]);
        assert_eq!(fw.failsafe[2], Failsafe::Tripped);
        // Deaf until reset.
        fw.control(packet(PKT_SET_STATE, 2), &[0xff], t0 + ms(950))
            .expect("taken");
        assert!(!fw.relays[2]);
        fw.control(packet(PKT_CHANNEL_RESET, 2), &[], t0 + ms(960))
            .expect("reset");
        fw.control(packet(PKT_SET_STATE, 2), &[0xff], t0 + ms(970))
            .expect("on again");
        assert!(fw.relays[2]);
        assert_eq!(fw.failsafe[2], Failsafe::Off);
    }

    #[test]
    fn the_hid_board_takes_a_mask_and_echoes_it() {
        let mut fw = Firmware::new(Plugged {
            model: Model::Hid1017_1,
            serial: 1,
            version: 100,
        });
        fw.output_report(0x01, &[0b1010_0001, 0, 0, 0, 0, 0, 0, 0])
            .expect("report");
        assert_eq!(fw.input_report()[0], 0b1010_0001);
        assert!(
            fw.control(packet(PKT_SET_STATE, 0), &[0xff], Instant::now())
                .is_err()
        );
    }

    #[test]
    fn json_has_the_documented_shape() {
        let fw = v2();
        let json: serde_json::Value = serde_json::from_str(&fw.to_json(true)).expect("json");
        assert_eq!(json["model"], "1017_2");
        assert_eq!(json["relays"].as_array().map(Vec::len), Some(8));
        assert_eq!(json["failsafe"][0], "off");
        assert_eq!(json["plugged"], true);
    }
}
