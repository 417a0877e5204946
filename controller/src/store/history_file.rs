//! Reading `history.jsonl` at start, with bounded memory and time whatever
//! the file holds.
//!
//! The history grows by a line per switch for as long as the controller
//! runs, so it has no size limit like the other state files. Instead only
//! its tail is read (the records kept in memory fit well within it), line by
//! line, and a line longer than any record is skipped without being held in
//! memory: a runaway or misplaced file of a gigabyte costs a gigabyte of
//! reading at most, never a gigabyte of RAM.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

use super::{HISTORY_IN_MEMORY, OpenReport, RecordOnDisk, SwitchRecord};
use crate::Error;

/// At start, at most the last this-many bytes of the history are read. A
/// record is about 200 bytes: this holds several times the records kept in
/// memory.
const TAIL: u64 = 64 * 1024 * 1024;

/// No record of ours comes near this: a longer line is skipped.
const LINE_LIMIT: usize = 64 * 1024;

/// Reads the last records of the history at `path` (oldest first), at most
/// [`HISTORY_IN_MEMORY`] of them. A torn last line (what a crash mid-append
/// leaves) is cut off the file, so that the next append starts on a line of
/// its own. A directory in its place is set aside.
pub(super) fn load(path: &Path, report: &mut OpenReport) -> Result<VecDeque<SwitchRecord>, Error> {
    let store_err = |action: &'static str, source: std::io::Error| Error::StateFile {
        action,
        path: path.to_owned(),
        source,
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(VecDeque::new()),
        Err(e) => return Err(store_err("read", e)),
        Ok(meta) if !meta.is_file() => {
            let aside =
                delestage_runtime::files::set_aside(path).map_err(|e| store_err("set aside", e))?;
            report.problems.push(format!(
                "{} is not a file (a directory?); kept aside as {}, starting with no history",
                path.display(),
                aside.display()
            ));
            return Ok(VecDeque::new());
        }
        Ok(_) => {}
    }
    let mut file = File::open(path).map_err(|e| store_err("read", e))?;
    let len = file.metadata().map_err(|e| store_err("read", e))?.len();
    let start = len.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(start))
        .map_err(|e| store_err("read", e))?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    // Where the last complete line read ends: what a torn tail is cut to.
    let mut whole_up_to = start;
    if start > 0 {
        // The tail begins mid-line: skip to the next line.
        let skipped = read_line(&mut reader, 0).map_err(|e| store_err("read", e))?;
        whole_up_to += skipped.map_or(0, |l| l.len);
        report.problems.push(format!(
            "{} is {} MiB: only its last {} MiB were read (the older records stay in the file)",
            path.display(),
            len / (1024 * 1024),
            TAIL / (1024 * 1024)
        ));
    }

    let mut records = VecDeque::new();
    let mut unreadable = Unreadable::default();
    while let Some(line) = read_line(&mut reader, LINE_LIMIT).map_err(|e| store_err("read", e))? {
        if !line.complete {
            report.problems.push(format!(
                "{}: the last line was cut short (a crash while writing?); dropped {} bytes",
                path.display(),
                line.len
            ));
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| store_err("repair", e))?;
            file.set_len(whole_up_to)
                .and_then(|()| file.sync_all())
                .map_err(|e| store_err("repair", e))?;
            break;
        }
        let at = whole_up_to;
        whole_up_to += line.len;
        if line.too_long {
            unreadable.note(
                at,
                format!("a line of {} bytes, longer than any record", line.len),
            );
            continue;
        }
        if line.bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<RecordOnDisk>(&line.bytes)
            .map_err(|e| e.to_string())
            .and_then(RecordOnDisk::parse)
        {
            Ok(record) => {
                records.push_back(record);
                if records.len() > HISTORY_IN_MEMORY {
                    records.pop_front();
                }
            }
            Err(why) => unreadable.note(at, why),
        }
    }
    if let Some(problem) = unreadable.describe(path) {
        report.problems.push(problem);
    }
    Ok(records)
}

/// Lines skipped: counted, and the first one described (a file of garbage
/// must not turn into a million problem reports).
#[derive(Default)]
struct Unreadable {
    count: u64,
    first: Option<(u64, String)>,
}

impl Unreadable {
    fn note(&mut self, at: u64, why: String) {
        self.count += 1;
        self.first.get_or_insert((at, why));
    }

    fn describe(&self, path: &Path) -> Option<String> {
        let (at, why) = self.first.as_ref()?;
        Some(format!(
            "{}: {} unreadable line(s) skipped; the first, at byte {at}: {why}",
            path.display(),
            self.count
        ))
    }
}

/// One line as read.
struct Line {
    /// Its first `limit` bytes at most, without the newline.
    bytes: Vec<u8>,
    /// Its whole length in the file, newline included.
    len: u64,
    /// It ended with a newline (rather than at the end of the file).
    complete: bool,
    /// It was longer than `limit`: `bytes` holds only its start.
    too_long: bool,
}

/// Reads the next line, holding at most `limit` bytes of it; `None` at the
/// end of the file.
fn read_line(reader: &mut impl BufRead, limit: usize) -> std::io::Result<Option<Line>> {
    let mut line = Line {
        bytes: Vec::new(),
        len: 0,
        complete: false,
        too_long: false,
    };
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok((line.len > 0).then_some(line));
        }
        let newline = available.iter().position(|b| *b == b'\n');
        let chunk = &available[..newline.unwrap_or(available.len())];
        let room = limit.saturating_sub(line.bytes.len());
        if chunk.len() > room {
            line.too_long = true;
        }
        line.bytes
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len() + usize::from(newline.is_some());
        line.len += used as u64;
        reader.consume(used);
        if newline.is_some() {
            line.complete = true;
            return Ok(Some(line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_whole_cut_at_the_limit_or_torn() {
        let text = b"short\nthis one is long\ntorn";
        let mut reader = BufReader::with_capacity(4, &text[..]);
        let first = read_line(&mut reader, 8).expect("read").expect("line");
        assert_eq!(
            (
                first.bytes.as_slice(),
                first.len,
                first.complete,
                first.too_long
            ),
            (&b"short"[..], 6, true, false)
        );
        let second = read_line(&mut reader, 8).expect("read").expect("line");
        assert_eq!(
            (
                second.bytes.as_slice(),
                second.len,
                second.complete,
                second.too_long
            ),
            (&b"this one"[..], 17, true, true)
        );
        let third = read_line(&mut reader, 8).expect("read").expect("line");
        assert_eq!((third.len, third.complete), (4, false));
        assert!(read_line(&mut reader, 8).expect("read").is_none());
    }

    #[test]
    fn a_huge_history_costs_reading_its_tail_not_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("history.jsonl");
        // A gigabyte of zeros with no newline (sparse, so cheap to make),
        // then one good record.
        let file = File::create(&path).expect("create");
        file.set_len(1 << 30).expect("grow");
        drop(file);
        let record = super::super::tests::record(
            "heater",
            1,
            false,
            crate::policy::Reason::ShedForLevel(crate::model::SignalLevel::Red),
        );
        let mut line = serde_json::to_vec(&RecordOnDisk::from(&record)).expect("json");
        line.push(b'\n');
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        std::io::Write::write_all(&mut file, b"\n").expect("end the zeros");
        std::io::Write::write_all(&mut file, &line).expect("append");
        drop(file);

        let mut report = OpenReport::default();
        let records = load(&path, &mut report).expect("load");
        assert_eq!(records, VecDeque::from([record]));
        let all = report.problems.join("\n");
        assert!(all.contains("only its last 64 MiB were read"), "{all}");
    }

    #[test]
    fn a_garbage_line_longer_than_any_record_is_skipped_and_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("history.jsonl");
        let mut text = vec![b'x'; 3 * LINE_LIMIT];
        text.extend_from_slice(b"\nnot json\n");
        std::fs::write(&path, &text).expect("write");
        let mut report = OpenReport::default();
        assert!(load(&path, &mut report).expect("load").is_empty());
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert!(
            report.problems[0].contains("2 unreadable line(s)"),
            "{:?}",
            report.problems
        );
        assert!(
            report.problems[0].contains("longer than any record"),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn a_directory_in_place_of_the_history_is_set_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("history.jsonl");
        std::fs::create_dir(&path).expect("mkdir");
        let mut report = OpenReport::default();
        assert!(load(&path, &mut report).expect("load").is_empty());
        assert!(!path.exists());
        assert!(
            report.problems[0].contains("kept aside"),
            "{:?}",
            report.problems
        );
    }
}
