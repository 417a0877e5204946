//! Frames: cutting the byte stream at STX / ETX (EOT interrupts a frame),
//! and a frame's body into groups.

use crate::group::{CR, Group, GroupError, LF, Mode};

/// Start of a frame.
pub const STX: u8 = 0x02;
/// End of a frame.
pub const ETX: u8 = 0x03;
/// End of transmission: the meter interrupts the frame under way.
pub const EOT: u8 = 0x04;

/// No real frame comes near this (a three-phase standard frame is under
/// 1 KiB): past it, the line is noise or the wrong speed.
pub const MAX_FRAME: usize = 4096;

/// What the splitter found in the bytes given to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split {
    /// A whole frame's body, between STX and ETX.
    Frame(Vec<u8>),
    /// A frame that began and did not end: a new STX, an EOT, or more
    /// bytes than any frame has.
    Cut,
}

/// Cuts a byte stream into frames. Bytes outside a frame (noise, the
/// middle of the frame under way when the reader opened the line) are
/// dropped.
#[derive(Debug, Default)]
pub struct FrameSplitter {
    body: Vec<u8>,
    in_frame: bool,
    /// Bytes seen outside any frame, since the start.
    pub noise: u64,
}

impl FrameSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next bytes off the line; returns what they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Split> {
        let mut out = Vec::new();
        for &b in bytes {
            match b {
                STX => {
                    if self.in_frame {
                        out.push(Split::Cut);
                    }
                    self.in_frame = true;
                    self.body.clear();
                }
                ETX if self.in_frame => {
                    self.in_frame = false;
                    out.push(Split::Frame(std::mem::take(&mut self.body)));
                }
                EOT if self.in_frame => {
                    self.in_frame = false;
                    self.body.clear();
                    out.push(Split::Cut);
                }
                _ if self.in_frame => {
                    if self.body.len() >= MAX_FRAME {
                        self.in_frame = false;
                        self.body.clear();
                        out.push(Split::Cut);
                    } else {
                        self.body.push(b);
                    }
                }
                _ => self.noise += 1,
            }
        }
        out
    }

    /// Forgets a frame under way (the line was reopened).
    pub fn reset(&mut self) {
        self.in_frame = false;
        self.body.clear();
    }
}

/// A frame's groups, and the ones dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// `None` when no group could be read.
    pub mode: Option<Mode>,
    pub groups: Vec<Group>,
    pub bad_groups: Vec<GroupError>,
}

impl Frame {
    /// A frame none of whose groups was dropped.
    pub fn is_clean(&self) -> bool {
        self.bad_groups.is_empty() && self.mode.is_some()
    }
}

/// The groups of a frame's body (between STX and ETX). The mode is the one
/// of the first group (standard groups hold a tab); a group of the other
/// mode is a bad group. Bytes between groups are a bad group too.
pub fn parse_frame(body: &[u8]) -> Frame {
    let mut frame = Frame {
        mode: None,
        groups: Vec::new(),
        bad_groups: Vec::new(),
    };
    let mut rest = body;
    while !rest.is_empty() {
        let Some(start) = rest.iter().position(|b| *b == LF) else {
            frame.bad_groups.push(GroupError::Shape);
            break;
        };
        if start > 0 {
            frame.bad_groups.push(GroupError::Shape);
        }
        let after = &rest[start + 1..];
        let Some(end) = after.iter().position(|b| *b == CR) else {
            frame.bad_groups.push(GroupError::Shape);
            break;
        };
        let content = &after[..end];
        rest = &after[end + 1..];
        if content.contains(&LF) {
            frame.bad_groups.push(GroupError::Shape);
            continue;
        }
        let mode = *frame.mode.get_or_insert(if content.contains(&b'\t') {
            Mode::Standard
        } else {
            Mode::Historic
        });
        match Group::parse(content, mode) {
            Ok(group) => frame.groups.push(group),
            Err(e) => frame.bad_groups.push(e),
        }
    }
    if frame.groups.is_empty() {
        frame.mode = None;
    }
    frame
}

/// A frame as sent: STX, the groups, ETX.
pub fn encode_frame(mode: Mode, groups: &[Group]) -> Vec<u8> {
    let mut out = vec![STX];
    for g in groups {
        out.extend_from_slice(&g.encode(mode));
    }
    out.push(ETX);
    out
}
