//! The Parquet page format as the page readers (`binary_pages`,
//! `float_pages`) need it: opening a flat column chunk,
//! the layout of its data pages (v1 and v2), and the RLE / bit-packing
//! hybrid of its definition levels and dictionary indices — read in pieces
//! that may stop inside a run and resume, or run by run. Parquet format
//! specification (parquet-format, `Encodings.md` and `README.md`, "Data
//! Pages").

use bytes::Bytes;
use parquet::basic::{Compression, Encoding, Type as PhysicalType};
use parquet::column::page::{Page, PageReader};
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::reader::ChunkReader;
use parquet::file::serialized_reader::SerializedPageReader;
use std::ops::Range;
use std::sync::Arc;

/// Why a page reader stopped: a page it does not decode (a legal page of
/// another encoding or level layout: the column's remaining rows go to
/// arrow-rs), or damaged data (an error for the user).
#[derive(Debug, Clone, PartialEq)]
pub enum PageError {
    Unsupported(String),
    Damaged(String),
}

impl From<String> for PageError {
    fn from(s: String) -> Self {
        PageError::Damaged(s)
    }
}

impl From<&str> for PageError {
    fn from(s: &str) -> Self {
        PageError::Damaged(s.to_string())
    }
}

/// A Parquet error as a user reads it: the crate's message without its
/// prefix, a checksum mismatch said plainly.
pub fn parquet_message(e: &parquet::errors::ParquetError) -> String {
    use parquet::errors::ParquetError as E;
    match e {
        E::General(m) if m.contains("CRC checksum mismatch") => {
            "a page's CRC-32 checksum does not match its bytes: the file is damaged".into()
        }
        E::General(m) | E::NYI(m) | E::EOF(m) | E::ArrowError(m) => m.clone(),
        E::External(x) => x.to_string(),
        other => other.to_string(),
    }
}

/// A column chunk's pages, decompressed. Snappy and zstd pages (the
/// common writers' defaults: pyarrow, Spark and DuckDB write Snappy, polars
/// zstd) are decompressed here, into a buffer that a finished page hands
/// back ([`recycle`](Self::recycle)): arrow-rs allocates and zeroes a new
/// buffer per page (~4% of a first pass of real values), and makes a zstd
/// compression and a decompression context for every column chunk (~4% of
/// a first pass of a polars file). Pages of other codecs come
/// decompressed from arrow-rs.
pub struct Pages {
    /// Snappy and zstd chunks: a reader of the chunk as if it were
    /// uncompressed (page headers parsed and checksums checked by arrow-rs,
    /// the bytes as stored).
    inner: Box<dyn PageReader>,
    codec: Option<Codec>,
    spare: Vec<u8>,
    /// The chunk's uncompressed size (all pages and their headers, as the
    /// footer says): an upper bound for the space a page's zstd frame
    /// header asks to reserve.
    reserve_limit: usize,
}

/// A codec gramfit decompresses itself.
enum Codec {
    Snappy(snap::raw::Decoder),
    Zstd(ZstdContext),
}

impl Pages {
    fn open<R: ChunkReader + 'static>(file: Arc<R>, chunk: &ColumnChunkMetaData, rows: usize) -> Result<Pages, String> {
        let codec = match chunk.compression() {
            Compression::SNAPPY => Some(Codec::Snappy(snap::raw::Decoder::new())),
            Compression::ZSTD(_) => Some(Codec::Zstd(ZstdContext::take())),
            _ => None,
        };
        let raw;
        let meta = if codec.is_some() {
            raw = chunk
                .clone()
                .into_builder()
                .set_compression(Compression::UNCOMPRESSED)
                .build()
                .map_err(|e| parquet_message(&e))?;
            &raw
        } else {
            chunk
        };
        let inner = SerializedPageReader::new(file, meta, rows, None).map_err(|e| parquet_message(&e))?;
        let reserve_limit = usize::try_from(chunk.uncompressed_size()).unwrap_or(0);
        Ok(Pages { inner: Box::new(inner), codec, spare: Vec::new(), reserve_limit })
    }

    /// The next page, decompressed; `None` past the chunk's last page.
    pub fn next_page(&mut self) -> Result<Option<Page>, String> {
        let page = self.inner.get_next_page().map_err(|e| parquet_message(&e))?;
        if self.codec.is_none() {
            return Ok(page);
        }
        let Some(mut page) = page else { return Ok(None) };
        match &mut page {
            Page::DataPage { buf, .. } | Page::DictionaryPage { buf, .. } => *buf = self.decompress(buf, 0)?,
            Page::DataPageV2 { buf, def_levels_byte_len, rep_levels_byte_len, is_compressed, .. } => {
                // The levels are stored uncompressed, before the values.
                if *is_compressed {
                    *buf = self.decompress(buf, *def_levels_byte_len as usize + *rep_levels_byte_len as usize)?;
                    *is_compressed = false;
                }
            }
        }
        Ok(Some(page))
    }

    /// `stored[..prefix]` as it is, then the rest decompressed, in the
    /// spare buffer.
    fn decompress(&mut self, stored: &[u8], prefix: usize) -> Result<Bytes, String> {
        let Some(body) = stored.get(prefix..) else {
            return Err("levels past the end of the page".into());
        };
        let mut out = std::mem::take(&mut self.spare);
        match self.codec.as_mut().expect("a chunk gramfit decompresses") {
            Codec::Snappy(decoder) => snappy_into(decoder, &stored[..prefix], body, &mut out)?,
            Codec::Zstd(context) => {
                out.clear();
                out.extend_from_slice(&stored[..prefix]);
                // An empty body is a page of nulls only.
                if !body.is_empty() {
                    zstd_into(context.get(), body, &mut out, self.reserve_limit)?;
                }
            }
        }
        Ok(Bytes::from(out))
    }

    /// A finished page's buffer, for the next page (taken back without a
    /// copy when nothing else holds it).
    pub fn recycle(&mut self, buf: Bytes) {
        if self.codec.is_some() {
            let v = Vec::from(buf);
            if v.capacity() > self.spare.capacity() {
                self.spare = v;
            }
        }
    }
}

/// `prefix`, then a Snappy block (`body`) decompressed, in `out`: a
/// page's earlier buffer, zeroed only where it grows (the Snappy decoder
/// writes to an initialised slice).
fn snappy_into(decoder: &mut snap::raw::Decoder, prefix: &[u8], body: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let snappy_err = |e: snap::Error| format!("a Snappy page that does not decompress: {e}");
    // An empty body is a page of nulls only.
    let n = if body.is_empty() { 0 } else { snap::raw::decompress_len(body).map_err(snappy_err)? };
    let at = prefix.len();
    out.resize(at + n, 0);
    out[..at].copy_from_slice(prefix);
    if n > 0 {
        let wrote = decoder.decompress(body, &mut out[at..]).map_err(snappy_err)?;
        if wrote != n {
            return Err(format!("a Snappy page of {wrote} bytes where its header says {n}"));
        }
    }
    Ok(())
}

/// The zstd frames of a page (`body`) appended to `out`, in its spare
/// capacity (never zeroed). A frame that states its size (pyarrow's,
/// polars', arrow-rs's) is reserved for, and zstd decompresses it in one
/// shot; one that does not (streamed writers: parquet-mr) grows the buffer
/// as it streams. `reserve_limit` caps the space a frame header can ask
/// for (a damaged header is no allocation of its claim).
pub(crate) fn zstd_into(
    context: &mut zstd::zstd_safe::DCtx<'static>,
    body: &[u8],
    out: &mut Vec<u8>,
    reserve_limit: usize,
) -> Result<(), String> {
    use zstd::zstd_safe::{get_error_name, InBuffer, OutBuffer, ResetDirective};
    let zstd_err = |code: usize| format!("a zstd page that does not decompress: {}", get_error_name(code));
    // A context left mid-frame by an earlier damaged page starts afresh.
    context.reset(ResetDirective::SessionOnly).map_err(zstd_err)?;
    if let Ok(Some(n)) = zstd::zstd_safe::get_frame_content_size(body) {
        out.reserve(usize::try_from(n).unwrap_or(usize::MAX).min(reserve_limit));
    }
    let mut input = InBuffer::around(body);
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(1 << 16));
        }
        let (in_at, out_at) = (input.pos(), out.len());
        let hint = {
            let mut output = OutBuffer::around_pos(out, out_at);
            context.decompress_stream(&mut output, &mut input).map_err(zstd_err)?
        };
        if hint == 0 && input.pos() == body.len() {
            return Ok(());
        }
        // Room to write and nothing read or written: the frame stops short.
        if input.pos() == in_at && out.len() == out_at && out.len() < out.capacity() {
            return Err("a zstd page that does not decompress: its last frame is cut short".into());
        }
    }
}

/// A zstd decompression context, taken from this thread's spare ones and
/// given back when dropped: a context costs ~20 µs to make, and a first
/// pass opens a column chunk per column and row group.
pub(crate) struct ZstdContext(Option<zstd::zstd_safe::DCtx<'static>>);

thread_local! {
    static SPARE_ZSTD: std::cell::RefCell<Vec<zstd::zstd_safe::DCtx<'static>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl ZstdContext {
    pub(crate) fn take() -> ZstdContext {
        let spare = SPARE_ZSTD.try_with(|s| s.borrow_mut().pop()).ok().flatten();
        ZstdContext(Some(spare.unwrap_or_else(zstd::zstd_safe::DCtx::create)))
    }

    fn get(&mut self) -> &mut zstd::zstd_safe::DCtx<'static> {
        self.0.as_mut().expect("a context until dropped")
    }
}

impl Drop for ZstdContext {
    fn drop(&mut self) {
        if let Some(context) = self.0.take() {
            // A thread being torn down drops it instead.
            let _ = SPARE_ZSTD.try_with(|s| s.borrow_mut().push(context));
        }
    }
}

/// A page's buffer, moved out (held nowhere else, it goes back to
/// [`Pages::recycle`] without a copy).
pub fn into_buffer(page: Page) -> Bytes {
    match page {
        Page::DataPage { buf, .. } | Page::DataPageV2 { buf, .. } | Page::DictionaryPage { buf, .. } => buf,
    }
}

/// A flat column chunk of 8-byte values, its dictionary page (if any)
/// read: what both page readers (`binary_pages`, `float_pages`) start from.
pub struct FlatChunk {
    /// The data pages, next.
    pub pages: Pages,
    /// The dictionary's values (PLAIN, 8 bytes each), if the chunk has one.
    pub dict: Option<Bytes>,
    /// One definition level (nullable) or none.
    pub nullable: bool,
}

/// Which data pages a reader decodes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PageValues {
    /// Dictionary indices only (the chunk must have a dictionary page).
    Dictionary,
    /// Dictionary indices, PLAIN values and BYTE_STREAM_SPLIT values.
    Any,
    /// Booleans: PLAIN (bit-packed) or RLE values (no dictionary).
    Booleans,
}

impl PageValues {
    fn decodes(self, e: Encoding) -> bool {
        match self {
            PageValues::Booleans => matches!(e, Encoding::PLAIN | Encoding::RLE),
            _ => {
                matches!(e, Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY)
                    || (self == PageValues::Any && matches!(e, Encoding::PLAIN | Encoding::BYTE_STREAM_SPLIT))
            }
        }
    }
}

impl FlatChunk {
    /// The chunk, or `None` when it is not of `physical` type, not flat
    /// (repeated, or nested definition levels), has a data page that
    /// `values` does not decode by the chunk's page encoding statistics,
    /// lacks the dictionary page `PageValues::Dictionary` needs, or its
    /// dictionary page is not PLAIN 8-byte values. Without encoding
    /// statistics (older writers) the chunk is tried: a page of another
    /// kind met later makes the reader step aside
    /// ([`PageError::Unsupported`]).
    pub fn open<R: ChunkReader + 'static>(
        file: Arc<R>,
        chunk: &ColumnChunkMetaData,
        rows: usize,
        physical: PhysicalType,
        values: PageValues,
    ) -> Result<Option<FlatChunk>, String> {
        let descr = chunk.column_descr();
        let decodable = chunk.page_encoding_stats_mask().is_none_or(|m| m.encodings().all(|e| values.decodes(e)));
        let has_dict = chunk.dictionary_page_offset().is_some();
        if descr.physical_type() != physical
            || descr.max_rep_level() != 0
            || descr.max_def_level() > 1
            || (values == PageValues::Dictionary && !has_dict)
            || !decodable
        {
            return Ok(None);
        }
        let mut pages = Pages::open(file, chunk, rows)?;
        let dict = if has_dict {
            let Some(Page::DictionaryPage { buf, num_values, encoding, .. }) = pages.next_page()? else {
                return Ok(None);
            };
            if !matches!(encoding, Encoding::PLAIN | Encoding::PLAIN_DICTIONARY) || buf.len() != 8 * num_values as usize
            {
                return Ok(None);
            }
            Some(buf)
        } else {
            None
        };
        Ok(Some(FlatChunk { pages, dict, nullable: descr.max_def_level() == 1 }))
    }
}

/// Where a flat column's data page keeps its parts: `slots` values
/// (nulls included), the definition levels' bytes (nullable columns) and
/// the start of the values (dictionary indices: their bit width, then the
/// hybrid runs; or PLAIN or BYTE_STREAM_SPLIT values), as offsets into the
/// page buffer; the values' encoding, and the page's null count when its
/// header says it (v2).
pub struct DataPage {
    pub slots: usize,
    pub def: Option<Range<usize>>,
    pub values: usize,
    pub encoding: Encoding,
    pub nulls: Option<usize>,
}

impl DataPage {
    /// Dictionary indices (either name the format has given them).
    pub fn is_dictionary(&self) -> bool {
        matches!(self.encoding, Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY)
    }

    /// The error of a page whose values a reader does not decode: the
    /// column's remaining rows go to arrow-rs.
    pub fn unsupported(&self) -> PageError {
        // A writer whose dictionary grew too large falls back to PLAIN
        // pages inside the chunk (whatever its encoding statistics say).
        PageError::Unsupported(format!("a data page encoded as {}", self.encoding))
    }
}

/// The layout of a data page (v1: a 4-byte length before RLE definition
/// levels; v2: level lengths in the header). A page whose v1 definition
/// levels are not RLE (the deprecated BIT_PACKED) is
/// [`PageError::Unsupported`].
pub fn data_page(page: &Page, nullable: bool) -> Result<DataPage, PageError> {
    let (slots, encoding, def, values, nulls) = match page {
        Page::DataPage { buf, num_values, encoding, def_level_encoding, .. } => {
            if !nullable {
                (*num_values as usize, *encoding, None, 0, Some(0))
            } else {
                if *def_level_encoding != Encoding::RLE {
                    return Err(PageError::Unsupported(format!(
                        "definition levels encoded as {def_level_encoding}, not RLE"
                    )));
                }
                let len = buf.get(..4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
                match len {
                    Some(len) if 4 + len <= buf.len() => {
                        (*num_values as usize, *encoding, Some(4..4 + len), 4 + len, None)
                    }
                    _ => return Err(PageError::Damaged("definition levels past the end of the page".into())),
                }
            }
        }
        Page::DataPageV2 { buf, num_values, num_nulls, encoding, def_levels_byte_len, rep_levels_byte_len, .. } => {
            let (r, d) = (*rep_levels_byte_len as usize, *def_levels_byte_len as usize);
            if r + d > buf.len() {
                return Err(PageError::Damaged("levels past the end of the page".into()));
            }
            if num_nulls > num_values {
                return Err(PageError::Damaged(format!("{num_nulls} nulls in a page of {num_values} values")));
            }
            (*num_values as usize, *encoding, nullable.then_some(r..r + d), r + d, Some(*num_nulls as usize))
        }
        Page::DictionaryPage { .. } => return Err(PageError::Damaged("a second dictionary page".into())),
    };
    Ok(DataPage { slots, def, values, encoding, nulls })
}

/// ULEB-128 varint at `pos` (the hybrid's run headers).
#[inline(always)]
fn uleb128(data: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&b) = data.get(*pos) else {
            return Err("a run header past the end of the page".into());
        };
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("a run header longer than 64 bits".into())
}

/// A run of the hybrid encoding, as far as it has been read.
#[derive(Clone, Copy, Debug)]
enum RunState {
    /// `left` more copies of `value`.
    Repeat { value: u32, left: usize },
    /// A bit-packed run starting at byte `at` of the page, whose value
    /// `next` is the next to read; `left` values of it remain.
    Packed { at: usize, next: usize, left: usize },
}

/// The hybrid-encoded values of bit width `width` in `range` of a page
/// buffer, read in pieces that may stop inside a run (a batch ends there)
/// and resume where they stopped. A clone reads the same values again.
#[derive(Clone, Debug)]
pub struct Hybrid {
    range: Range<usize>,
    pub width: usize,
    /// The next run header.
    pos: usize,
    /// The run being read, while values of it are left.
    run: Option<RunState>,
}

/// A piece of a run: `k` copies of a value, or `k` bit-packed values from
/// value `first` of the run starting at byte `at` (of the page buffer).
pub enum Piece {
    Repeat(u32, usize),
    Packed { at: usize, first: usize, k: usize },
}

impl Hybrid {
    pub fn new(range: Range<usize>, width: usize) -> Hybrid {
        Hybrid { pos: range.start, range, width, run: None }
    }

    /// The end of the region (a byte offset into the page buffer).
    pub fn end(&self) -> usize {
        self.range.end
    }

    /// At most `max` (> 0) next values, from the current run; a bit-packed
    /// piece's bytes are within the range.
    #[inline(always)]
    pub fn take(&mut self, buf: &[u8], max: usize) -> Result<Piece, String> {
        // A run partly read is kept; one read to its end is not.
        let run = match self.run.take() {
            Some(r) => r,
            None => self.next_run(buf)?,
        };
        Ok(match run {
            RunState::Repeat { value, left } => {
                let k = left.min(max);
                if k < left {
                    self.run = Some(RunState::Repeat { value, left: left - k });
                }
                Piece::Repeat(value, k)
            }
            RunState::Packed { at, next, left } => {
                let k = left.min(max);
                self.check_packed(at, next, k)?;
                if k < left {
                    self.run = Some(RunState::Packed { at, next: next + k, left: left - k });
                }
                Piece::Packed { at, first: next, k }
            }
        })
    }

    /// Values `first..first + k` of the bit-packed run at byte `at` lie
    /// within the region.
    #[inline(always)]
    fn check_packed(&self, at: usize, first: usize, k: usize) -> Result<(), String> {
        if (first + k) * self.width > (self.range.end - at) * 8 {
            return Err(format!("a bit-packed run of {k} values past the end of the page"));
        }
        Ok(())
    }

    /// The next run, read whole from its header.
    #[inline(always)]
    fn next_run(&mut self, buf: &[u8]) -> Result<RunState, String> {
        let data = &buf[..self.range.end];
        if self.pos >= self.range.end {
            return Err("the page's values ended early".into());
        }
        let header = uleb128(data, &mut self.pos)?;
        let len = usize::try_from(header >> 1).map_err(|_| "a run longer than memory")?;
        if header & 1 == 1 {
            // `len` groups of 8 values, `width` bytes per group.
            let at = self.pos;
            let bytes = len.checked_mul(self.width).ok_or("a run longer than memory")?;
            // The last run's bytes may stop after its last value used.
            self.pos = at.saturating_add(bytes).min(self.range.end);
            Ok(RunState::Packed { at, next: 0, left: len.saturating_mul(8) })
        } else {
            let nbytes = self.width.div_ceil(8);
            if self.range.end - self.pos < nbytes {
                return Err("a repeated value past the end of the page".into());
            }
            let value = (0..nbytes).fold(0u32, |v, i| v | u32::from(data[self.pos + i]) << (8 * i));
            self.pos += nbytes;
            Ok(RunState::Repeat { value, left: len })
        }
    }
}

/// All `count` values of a hybrid region, run by run (a whole page read at
/// once): [`Hybrid`]'s runs, each read to its end (a last bit-packed run's
/// padding left out).
pub struct Runs<'a> {
    buf: &'a [u8],
    hybrid: Hybrid,
    left: usize,
}

/// One run of [`Runs`].
pub enum Run<'a> {
    /// A value repeated `len` times.
    Repeat(u32, usize),
    /// `len` values packed at the run's bit width, least significant bit
    /// first, from the start of these bytes (which run on to the end of
    /// the region: a word may be read whole past the run's last value).
    Packed(&'a [u8], usize),
}

impl<'a> Runs<'a> {
    pub fn new(buf: &'a [u8], width: usize, count: usize) -> Runs<'a> {
        Runs { buf, hybrid: Hybrid::new(0..buf.len(), width), left: count }
    }

    /// The next run (at most the values left), or `None` after the last.
    #[inline(always)]
    pub fn next_run(&mut self) -> Result<Option<Run<'a>>, String> {
        if self.left == 0 {
            return Ok(None);
        }
        let buf = self.buf;
        Ok(Some(match self.hybrid.next_run(buf)? {
            RunState::Repeat { value, left } => {
                let k = left.min(self.left);
                self.left -= k;
                Run::Repeat(value, k)
            }
            RunState::Packed { at, left, .. } => {
                let k = left.min(self.left);
                self.hybrid.check_packed(at, 0, k)?;
                self.left -= k;
                Run::Packed(&buf[at..], k)
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Values whose bytes compress (a repeating pattern and a counter).
    fn plain(n: usize) -> Vec<u8> {
        (0..n).flat_map(|i| ((i % 97) as f64 * 0.25 + (i / 1000) as f64).to_le_bytes()).collect()
    }

    /// A frame without its size in the header, as a streaming writer
    /// (parquet-mr's) makes it: written in pieces, never told the total.
    fn streamed_frame(data: &[u8]) -> Vec<u8> {
        let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        for piece in data.chunks(1000) {
            enc.write_all(piece).unwrap();
        }
        enc.finish().unwrap()
    }

    #[test]
    fn zstd_frames_with_and_without_their_size_decompress_after_a_prefix() {
        let data = plain(50_000);
        let sized = zstd::bulk::compress(&data, 3).unwrap();
        let streamed = streamed_frame(&data);
        assert_eq!(zstd::zstd_safe::get_frame_content_size(&sized).unwrap(), Some(data.len() as u64));
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&streamed).unwrap(),
            None,
            "the test needs a frame without its size"
        );
        let two = [&sized[..], &streamed[..]].concat();
        let mut context = ZstdContext::take();
        let mut out = Vec::new();
        for (body, want) in [(&sized, data.clone()), (&streamed, data.clone()), (&two, [&data[..], &data[..]].concat())]
        {
            // The buffer of an earlier, longer page: only its length is cleared.
            out.clear();
            out.extend_from_slice(b"levels");
            zstd_into(context.get(), body, &mut out, usize::MAX).unwrap();
            assert_eq!(&out[..6], b"levels");
            assert!(out[6..] == want[..], "{} bytes decompressed, {} expected", out.len() - 6, want.len());
        }
        // A reservation limit below the frame's size only slows it down.
        out.clear();
        zstd_into(context.get(), &sized, &mut out, 100).unwrap();
        assert!(out == data);
    }

    #[test]
    fn a_damaged_zstd_frame_is_an_error_and_the_context_reads_the_next_page() {
        let data = plain(20_000);
        let sized = zstd::bulk::compress(&data, 3).unwrap();
        let mut context = ZstdContext::take();
        let mut out = Vec::new();
        let cut = &sized[..sized.len() / 2];
        let err = zstd_into(context.get(), cut, &mut out, usize::MAX).unwrap_err();
        assert_eq!(err, "a zstd page that does not decompress: its last frame is cut short");
        let streamed = streamed_frame(&data);
        let err = zstd_into(context.get(), &streamed[..streamed.len() - 3], &mut out, usize::MAX).unwrap_err();
        assert_eq!(err, "a zstd page that does not decompress: its last frame is cut short");
        let mut bad_magic = sized.clone();
        bad_magic[0] ^= 0xff;
        let err = zstd_into(context.get(), &bad_magic, &mut out, usize::MAX).unwrap_err();
        assert!(err.starts_with("a zstd page that does not decompress: "), "{err}");
        // The context left mid-frame reads a whole page afresh.
        out.clear();
        zstd_into(context.get(), &sized, &mut out, usize::MAX).unwrap();
        assert!(out == data);
    }

    #[test]
    fn a_zstd_context_goes_back_to_its_thread_and_is_reused() {
        let spare = || SPARE_ZSTD.with(|s| s.borrow().len());
        let before = spare();
        let (a, b) = (ZstdContext::take(), ZstdContext::take());
        assert_eq!(spare(), before.saturating_sub(2));
        drop((a, b));
        assert_eq!(spare(), before.saturating_sub(2) + 2);
        let c = ZstdContext::take();
        assert_eq!(spare(), before.saturating_sub(2) + 1, "a spare context is taken, not made");
        drop(c);
    }
}
