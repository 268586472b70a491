//! Opening a CSV file: its compression by content (gzip, zstd, bzip2, xz),
//! and a byte counter under the decoder so that a read can say where in
//! the file it stopped.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How a CSV file is compressed, from its first bytes (so that a
/// mislabelled file still reads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

/// The compression suffixes recognised in file names.
pub const COMPRESSED_SUFFIXES: [&str; 7] = [".gz", ".gzip", ".zst", ".zstd", ".bz2", ".xz", ".lzma"];

pub(super) fn io_err(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", path.display())
}

pub fn compression_of(path: &Path) -> Result<Compression, String> {
    let mut head = [0u8; 6];
    let mut f = File::open(path).map_err(|e| io_err(path, e))?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]).map_err(|e| io_err(path, e))? {
            0 => break,
            k => n += k,
        }
    }
    Ok(match &head[..n] {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        [b'B', b'Z', b'h', ..] => Compression::Bzip2,
        [0xfd, b'7', b'z', b'X', b'Z', 0x00] => Compression::Xz,
        _ => Compression::None,
    })
}

/// A CSV file's text, decompressed on the fly (multi-member gzip and
/// concatenated zstd, bzip2 and xz streams included, as `cat a.gz b.gz`
/// and appending writers make), from text offset `skip` (plain files seek
/// there; compressed ones are decompressed and the bytes passed over),
/// adding the bytes read from the file (compressed, as stored) to `count`
/// as they are read (for progress).
pub fn open_text_counted(
    path: &Path,
    skip: u64,
    count: Option<Arc<AtomicU64>>,
) -> Result<Box<dyn BufRead + Send>, String> {
    let compression = compression_of(path)?;
    let mut f = File::open(path).map_err(|e| io_err(path, e))?;
    if compression == Compression::None && skip > 0 {
        f.seek(SeekFrom::Start(skip)).map_err(|e| io_err(path, e))?;
        return Ok(Box::new(BufReader::with_capacity(1 << 20, Counted::new(f, count))));
    }
    let raw = BufReader::with_capacity(1 << 20, Counted::new(f, count));
    let mut text: Box<dyn BufRead + Send> = match compression {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(BufReader::with_capacity(1 << 20, flate2::bufread::MultiGzDecoder::new(raw))),
        Compression::Zstd => {
            let d = zstd::stream::read::Decoder::with_buffer(raw).map_err(|e| io_err(path, e))?;
            Box::new(BufReader::with_capacity(1 << 20, d))
        }
        Compression::Bzip2 => Box::new(BufReader::with_capacity(1 << 20, bzip2::bufread::MultiBzDecoder::new(raw))),
        Compression::Xz => Box::new(BufReader::with_capacity(1 << 20, lzma_rust2::XzReader::new(raw, true))),
    };
    if skip > 0 {
        let passed = std::io::copy(&mut (&mut text).take(skip), &mut std::io::sink()).map_err(|e| io_err(path, e))?;
        if passed < skip {
            return Err(io_err(path, format!("the text ends at byte {passed}, before offset {skip}")));
        }
    }
    Ok(text)
}

/// A reader that adds the bytes it reads to a shared counter.
pub struct Counted<R> {
    pub(super) inner: R,
    pub(super) count: Option<Arc<AtomicU64>>,
}

impl<R> Counted<R> {
    pub fn new(inner: R, count: Option<Arc<AtomicU64>>) -> Self {
        Counted { inner, count }
    }

    pub fn inner_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(c) = &self.count {
            c.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}
