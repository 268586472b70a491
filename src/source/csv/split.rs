//! Cutting a CSV text into blocks of whole records, so that blocks can be
//! parsed in parallel while one thread reads (and decompresses) the text.
//!
//! Where a record ends depends on the quoting state, so the cut points
//! come from one serial scan — but a cheap one: outside quotes it jumps
//! from one `"`, `\n` or `\r` to the next (`memchr3`), inside quotes to
//! the next `"`. It follows `csv-core`'s reader exactly (the parsers of
//! the blocks use `csv-core` or agree with it, and a differential test
//! holds them to it): a record ends at `\r` or `\n` outside quotes; lines
//! holding only terminators are no records; a `"` opens a quoted field
//! only at the start of a field (elsewhere it is a literal character);
//! inside quotes `""` is a quote and any other `"` closes the field.
//!
//! Invariants of a [`Block`]: it starts at a record boundary (a fresh
//! `csv-core` reader parses it as the file's reader would), holds exactly
//! `records` records, and the text offsets and line numbers it carries are
//! those of the whole text.

use super::ReadEnd;
use memchr::{memchr, memchr3};
use std::io::Read;

/// Bytes read from the text at a time.
const READ_SIZE: usize = 1 << 20;

/// A run of whole records of a CSV text.
#[derive(Debug)]
pub struct Block {
    pub text: Vec<u8>,
    /// Records of the file before the block's first (after the header).
    pub first_record: u64,
    /// Physical line (1-based) of the block's first byte.
    pub first_line: u64,
    /// Records in the block.
    pub records: usize,
    /// The block's last record has no line terminator (the file's last).
    pub unterminated: bool,
}

/// Where a scan stands between bytes.
#[derive(Clone, Copy, Debug)]
struct ScanState {
    /// Inside a quoted field.
    quoted: bool,
    /// A record has begun (some byte other than a terminator was seen
    /// since the last record ended).
    in_record: bool,
    /// The previous byte was the delimiter: a `"` now opens a quoted
    /// field.
    after_delimiter: bool,
}

/// Blocks of a CSV text from a record boundary (after the header, or at
/// a saved offset).
pub struct Splitter {
    text: Box<dyn Read + Send>,
    delimiter: u8,
    /// Records per block (the last may hold fewer).
    per_block: usize,
    /// Records left to read under a limit.
    remaining: Option<u64>,
    /// Leave an unterminated last record unread.
    hold_tail: bool,
    /// Text from the current block's start; `buf[..scanned]` is scanned.
    buf: Vec<u8>,
    scanned: usize,
    state: ScanState,
    /// Records ending in `buf[..scanned]`, and where the last ends.
    records: usize,
    last_end: usize,
    /// Newlines in `buf[..scanned]` and in `buf[..last_end]`.
    lines: u64,
    lines_at_end: u64,
    /// Text offset of `buf[0]`, records and line there.
    offset: u64,
    first_record: u64,
    first_line: u64,
    eof: bool,
    /// Set once the text is read to its end (or the limit).
    end: Option<ReadEnd>,
}

impl Splitter {
    /// Blocks of `per_block` records of `text`, which starts at text
    /// offset `offset` on line `line` (1-based) after `records_before`
    /// records, at a record boundary.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        text: Box<dyn Read + Send>,
        delimiter: u8,
        per_block: usize,
        offset: u64,
        line: u64,
        records_before: u64,
        limit: Option<u64>,
        hold_tail: bool,
    ) -> Splitter {
        Splitter {
            text,
            delimiter,
            per_block: per_block.max(1),
            remaining: limit.map(|l| l.saturating_sub(records_before)),
            hold_tail,
            buf: Vec::with_capacity(2 * READ_SIZE),
            scanned: 0,
            state: ScanState { quoted: false, in_record: false, after_delimiter: false },
            records: 0,
            last_end: 0,
            lines: 0,
            lines_at_end: 0,
            offset,
            first_record: records_before,
            first_line: line,
            eof: false,
            end: None,
        }
    }

    /// Where the read ended, once [`next_block`](Self::next_block) has
    /// returned `None`.
    pub fn end(&self) -> Option<ReadEnd> {
        self.end
    }

    /// The next block, or `None` at the end of the text (or the limit).
    pub fn next_block(&mut self) -> std::io::Result<Option<Block>> {
        if self.end.is_some() {
            return Ok(None);
        }
        loop {
            let target = match self.remaining {
                Some(r) => (r.min(self.per_block as u64)) as usize,
                None => self.per_block,
            };
            if target == 0 {
                return Ok(self.finish_at_limit());
            }
            self.scan(target);
            if self.records == target {
                return Ok(Some(self.cut(false)));
            }
            if self.eof {
                return Ok(self.finish_at_eof());
            }
            self.read_more()?;
        }
    }

    fn read_more(&mut self) -> std::io::Result<()> {
        let len = self.buf.len();
        self.buf.resize(len + READ_SIZE, 0);
        let n = loop {
            match self.text.read(&mut self.buf[len..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(len + n);
        self.eof = n == 0;
        Ok(())
    }

    /// Scan on until `target` records end or the bytes run out (or a
    /// closing quote's meaning waits for the next byte).
    fn scan(&mut self, target: usize) {
        let buf = &self.buf[..];
        let d = self.delimiter;
        let mut i = self.scanned;
        let mut st = self.state;
        while i < buf.len() && self.records < target {
            if st.quoted {
                let Some(k) = memchr(b'"', &buf[i..]) else {
                    self.lines += count_newlines(&buf[i..]);
                    i = buf.len();
                    break;
                };
                let j = i + k;
                self.lines += count_newlines(&buf[i..j]);
                match buf.get(j + 1) {
                    // `""` inside quotes is one quote.
                    Some(b'"') => i = j + 2,
                    Some(_) => {
                        st.quoted = false;
                        st.after_delimiter = false;
                        i = j + 1;
                    }
                    None if self.eof => {
                        st.quoted = false;
                        i = j + 1;
                    }
                    None => {
                        // Wait for the byte after the quote.
                        i = j;
                        break;
                    }
                }
                continue;
            }
            let Some(k) = memchr3(b'"', b'\n', b'\r', &buf[i..]) else {
                if i < buf.len() {
                    st.in_record = true;
                    st.after_delimiter = buf[buf.len() - 1] == d;
                }
                i = buf.len();
                break;
            };
            let j = i + k;
            if k > 0 {
                st.in_record = true;
                st.after_delimiter = buf[j - 1] == d;
            }
            match buf[j] {
                b'"' => {
                    // A quote opens a field only where a field starts.
                    st.quoted = !st.in_record || st.after_delimiter;
                    st.in_record = true;
                    st.after_delimiter = false;
                }
                c => {
                    if c == b'\n' {
                        self.lines += 1;
                    }
                    if st.in_record {
                        st.in_record = false;
                        self.records += 1;
                        self.last_end = j + 1;
                        self.lines_at_end = self.lines;
                    }
                    st.after_delimiter = false;
                }
            }
            i = j + 1;
        }
        self.scanned = i;
        self.state = st;
    }

    /// The records scanned so far as a block (with an unterminated last
    /// one when `tail`); the rest of the text stays for the next.
    fn cut(&mut self, tail: bool) -> Block {
        let at = if tail { self.buf.len() } else { self.last_end };
        let records = self.records + usize::from(tail);
        // Room for a block like this one and a read: a block's buffer is
        // its text and a little more, not the largest buffer so far.
        let mut rest = Vec::with_capacity(at + READ_SIZE);
        rest.extend_from_slice(&self.buf[at..]);
        let mut text = std::mem::replace(&mut self.buf, rest);
        text.truncate(at);
        let block =
            Block { text, first_record: self.first_record, first_line: self.first_line, records, unterminated: tail };
        self.offset += at as u64;
        self.first_record += records as u64;
        self.first_line += if tail { self.lines } else { self.lines_at_end };
        if let Some(r) = &mut self.remaining {
            *r -= records as u64;
        }
        // The scan stopped at the cut: nothing after it is scanned.
        self.scanned = 0;
        self.lines -= if tail { self.lines } else { self.lines_at_end };
        self.records = 0;
        self.last_end = 0;
        self.lines_at_end = 0;
        block
    }

    fn finish_at_limit(&mut self) -> Option<Block> {
        let at = self.offset + self.last_end as u64;
        self.end = Some(ReadEnd {
            complete_offset: at,
            end_offset: at,
            records: self.first_record,
            unterminated_tail: false,
            tail_pending: false,
        });
        None
    }

    /// At the end of the text: the records scanned, and a last record
    /// without a terminator read as a record or left pending.
    fn finish_at_eof(&mut self) -> Option<Block> {
        let tail = self.state.in_record || self.state.quoted;
        let complete = self.offset + self.last_end as u64;
        let take_tail = tail && !self.hold_tail;
        let block = (self.records > 0 || take_tail).then(|| self.cut(take_tail));
        self.end = Some(ReadEnd {
            complete_offset: complete,
            end_offset: if take_tail { self.offset } else { complete },
            records: self.first_record,
            unterminated_tail: tail,
            tail_pending: tail && self.hold_tail,
        });
        block
    }
}

/// The `\n` bytes in `b` (line numbers of messages).
pub(super) fn count_newlines(b: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', b).count() as u64
}
