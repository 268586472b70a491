//! Splitting a CSV text into records and fields (RFC 4180 quoting, by
//! `csv-core`), and guessing the delimiter from the header line.

use super::NaSet;
use std::io::BufRead;
use std::sync::Arc;

/// The delimiter of a file: given, or the most frequent of `,` `;` tab
/// `|` outside quotes in its header line (`,` when none occurs).
pub(super) fn sniff_delimiter(header: &[u8], decimal: u8) -> u8 {
    let candidates = [b',', b';', b'\t', b'|'];
    let mut counts = [0usize; 4];
    let mut quoted = false;
    for &b in header {
        match b {
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if !quoted => break,
            _ if !quoted => {
                if let Some(i) = candidates.iter().position(|&c| c == b) {
                    counts[i] += 1;
                }
            }
            _ => {}
        }
    }
    let best = (0..4).max_by_key(|&i| (counts[i], usize::from(i == 0))).expect("four candidates");
    if counts[best] == 0 {
        // A one-column file; with a decimal comma the separator is `;`.
        return if decimal == b',' { b';' } else { b',' };
    }
    candidates[best]
}

/// The options resolved for one file.
#[derive(Clone, Debug)]
pub(super) struct Dialect {
    pub(super) delimiter: u8,
    pub(super) decimal: u8,
    pub(super) na: Arc<NaSet>,
}

impl Dialect {
    pub(super) fn core(&self) -> csv_core::Reader {
        csv_core::ReaderBuilder::new().delimiter(self.delimiter).build()
    }
}

/// Records of a CSV text, one at a time, with the byte offset of the end
/// of the last complete (terminated) record.
pub(super) struct Records {
    pub(super) text: Box<dyn BufRead + Send>,
    pub(super) core: csv_core::Reader,
    pub(super) out: Vec<u8>,
    pub(super) ends: Vec<usize>,
    pub(super) nout: usize,
    pub(super) nends: usize,
    /// Text bytes consumed so far (from the start of the text).
    pub(super) offset: u64,
    /// The offset after the last terminated record.
    pub(super) complete: u64,
    /// The physical line (1-based) where the current record started.
    pub(super) line: u64,
    pub(super) done: bool,
}

/// A record as read: whether a line terminator ended it (the last record
/// of a file may have none).
#[derive(PartialEq, Eq)]
pub(super) enum Ended {
    Terminated,
    AtEof,
}

impl Records {
    pub(super) fn new(text: Box<dyn BufRead + Send>, core: csv_core::Reader, offset: u64) -> Records {
        Records {
            text,
            core,
            out: vec![0; 4096],
            ends: vec![0; 64],
            nout: 0,
            nends: 0,
            offset,
            complete: offset,
            line: 1,
            done: false,
        }
    }

    /// The next record (its fields through [`field`](Self::field)), or
    /// `None` at the end.
    pub(super) fn next(&mut self) -> std::io::Result<Option<Ended>> {
        if self.done {
            return Ok(None);
        }
        self.nout = 0;
        self.nends = 0;
        self.line = self.core.line();
        loop {
            let input = self.text.fill_buf()?;
            let eof = input.is_empty();
            let (res, nin, nout, nend) =
                self.core.read_record(input, &mut self.out[self.nout..], &mut self.ends[self.nends..]);
            self.text.consume(nin);
            self.offset += nin as u64;
            self.nout += nout;
            self.nends += nend;
            use csv_core::ReadRecordResult as R;
            match res {
                R::InputEmpty => {}
                R::OutputFull => {
                    let n = self.out.len() * 2;
                    self.out.resize(n, 0);
                }
                R::OutputEndsFull => {
                    let n = self.ends.len() * 2;
                    self.ends.resize(n, 0);
                }
                R::Record if eof => return Ok(Some(Ended::AtEof)),
                R::Record => {
                    self.complete = self.offset;
                    return Ok(Some(Ended::Terminated));
                }
                R::End => {
                    self.done = true;
                    return Ok(None);
                }
            }
        }
    }

    pub(super) fn fields(&self) -> usize {
        self.nends
    }

    pub(super) fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.out[start..self.ends[i]]
    }
}
