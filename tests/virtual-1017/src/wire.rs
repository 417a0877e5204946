//! The messages on the "USB cable" between the library side (in the program
//! that loads our libusb) and a board process: one message per Unix
//! seqpacket datagram, little-endian fields.
//!
//! Requests carry a sequence number and get exactly one [`Reply`] — unless
//! the board is stalled, when it answers nothing and the caller times out,
//! as on a real bus. The board also sends, unasked, input packets to the
//! connection that claimed its interface, and [`ToHost::Gone`] when it is
//! unplugged.

use crate::firmware::Setup;

/// libusb's error codes, which is what a status carries.
pub const LIBUSB_SUCCESS: i32 = 0;
pub const LIBUSB_ERROR_IO: i32 = -1;
pub const LIBUSB_ERROR_INVALID_PARAM: i32 = -2;
pub const LIBUSB_ERROR_NO_DEVICE: i32 = -4;
pub const LIBUSB_ERROR_NOT_FOUND: i32 = -5;
pub const LIBUSB_ERROR_BUSY: i32 = -6;
pub const LIBUSB_ERROR_TIMEOUT: i32 = -7;
pub const LIBUSB_ERROR_PIPE: i32 = -9;
pub const LIBUSB_ERROR_NOT_SUPPORTED: i32 = -12;
pub const LIBUSB_ERROR_OTHER: i32 = -99;

/// Largest datagram either side sends.
pub const MAX_MESSAGE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToBoard {
    /// Who are you? Answered with the board process's instance id, which
    /// changes at every plug.
    Hello,
    Control {
        seq: u32,
        setup: Setup,
        data: Vec<u8>,
    },
    InterruptOut {
        seq: u32,
        endpoint: u8,
        data: Vec<u8>,
    },
    Claim {
        seq: u32,
    },
    Release {
        seq: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToHost {
    Hello {
        instance: u64,
    },
    /// The answer to request `seq`: a libusb status (for OUT transfers, the
    /// bytes taken), and the data of an IN transfer.
    Reply {
        seq: u32,
        status: i32,
        data: Vec<u8>,
    },
    /// An input packet, to the connection that claimed the interface.
    In {
        endpoint: u8,
        data: Vec<u8>,
    },
    /// An input transfer failed (the `io-error` fault).
    InError,
    /// The board was unplugged.
    Gone,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl ToBoard {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ToBoard::Hello => vec![0x05],
            ToBoard::Control { seq, setup, data } => {
                let mut m = vec![0x01];
                m.extend_from_slice(&seq.to_le_bytes());
                m.extend_from_slice(&[setup.request_type, setup.request]);
                m.extend_from_slice(&setup.value.to_le_bytes());
                m.extend_from_slice(&setup.index.to_le_bytes());
                m.extend_from_slice(&setup.length.to_le_bytes());
                m.extend_from_slice(data);
                m
            }
            ToBoard::InterruptOut {
                seq,
                endpoint,
                data,
            } => {
                let mut m = vec![0x02];
                m.extend_from_slice(&seq.to_le_bytes());
                m.push(*endpoint);
                m.extend_from_slice(data);
                m
            }
            ToBoard::Claim { seq } => [&[0x03][..], &seq.to_le_bytes()].concat(),
            ToBoard::Release { seq } => [&[0x04][..], &seq.to_le_bytes()].concat(),
        }
    }

    pub fn decode(m: &[u8]) -> Option<Self> {
        Some(match *m.first()? {
            0x05 => ToBoard::Hello,
            0x01 => ToBoard::Control {
                seq: u32_at(m, 1)?,
                setup: Setup {
                    request_type: *m.get(5)?,
                    request: *m.get(6)?,
                    value: u16_at(m, 7)?,
                    index: u16_at(m, 9)?,
                    length: u16_at(m, 11)?,
                },
                data: m.get(13..)?.to_vec(),
            },
            0x02 => ToBoard::InterruptOut {
                seq: u32_at(m, 1)?,
                endpoint: *m.get(5)?,
                data: m.get(6..)?.to_vec(),
            },
            0x03 => ToBoard::Claim { seq: u32_at(m, 1)? },
            0x04 => ToBoard::Release { seq: u32_at(m, 1)? },
            _ => return None,
        })
    }

    /// The request's sequence number (none for Hello).
    pub fn seq(&self) -> Option<u32> {
        match self {
            ToBoard::Hello => None,
            ToBoard::Control { seq, .. }
            | ToBoard::InterruptOut { seq, .. }
            | ToBoard::Claim { seq }
            | ToBoard::Release { seq } => Some(*seq),
        }
    }
}

impl ToHost {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ToHost::Hello { instance } => [&[0x85][..], &instance.to_le_bytes()].concat(),
            ToHost::Reply { seq, status, data } => {
                [&[0x81][..], &seq.to_le_bytes(), &status.to_le_bytes(), data].concat()
            }
            ToHost::In { endpoint, data } => [&[0x90, *endpoint][..], data].concat(),
            ToHost::InError => vec![0x92],
            ToHost::Gone => vec![0x91],
        }
    }

    pub fn decode(m: &[u8]) -> Option<Self> {
        Some(match *m.first()? {
            0x85 => ToHost::Hello {
                instance: u64::from_le_bytes(m.get(1..9)?.try_into().ok()?),
            },
            0x81 => ToHost::Reply {
                seq: u32_at(m, 1)?,
                status: u32_at(m, 5)? as i32,
                data: m.get(9..)?.to_vec(),
            },
            0x90 => ToHost::In {
                endpoint: *m.get(1)?,
                data: m.get(2..)?.to_vec(),
            },
            0x92 => ToHost::InError,
            0x91 => ToHost::Gone,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let setup = Setup {
            request_type: 0x41,
            request: 0,
            value: 0x0A03,
            index: 0,
            length: 1,
        };
        for m in [
            ToBoard::Hello,
            ToBoard::Control {
                seq: 7,
                setup,
                data: vec![0xff],
            },
            ToBoard::InterruptOut {
                seq: 8,
                endpoint: 1,
                data: vec![1, 0, 0, 0, 0, 0, 0, 0],
            },
            ToBoard::Claim { seq: 9 },
            ToBoard::Release { seq: 10 },
        ] {
            assert_eq!(ToBoard::decode(&m.encode()), Some(m));
        }
        for m in [
            ToHost::Hello {
                instance: u64::MAX - 3,
            },
            ToHost::Reply {
                seq: 1,
                status: LIBUSB_ERROR_PIPE,
                data: vec![],
            },
            ToHost::Reply {
                seq: 2,
                status: 0,
                data: vec![4, 3, 9, 4],
            },
            ToHost::In {
                endpoint: 0x81,
                data: vec![0x0d, 2],
            },
            ToHost::InError,
            ToHost::Gone,
        ] {
            assert_eq!(ToHost::decode(&m.encode()), Some(m));
        }
    }
}
