//! Column types as pandas infers them (an integer column with a gap is
//! float; a number column with one word in it is text, and the error says
//! which values made it so).

use super::files::{io_err, open_text_counted};
use super::numbers::{parse_float, parse_int};
use super::parse::{BlockParser, Fields};
use super::records::{sniff_delimiter, Dialect, Records};
use super::split::{count_newlines, Block, Splitter};
use super::{CsvOptions, CSV_INFER_ROWS};
use arrow::datatypes::{DataType, Field, Schema};
use std::io::BufRead;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// A column's type as inferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// Only missing cells so far.
    Empty,
    Int,
    Float,
    Bool,
    Text,
}

pub(super) fn parse_bool(cell: &[u8]) -> Option<bool> {
    match cell {
        b"True" | b"TRUE" | b"true" => Some(true),
        b"False" | b"FALSE" | b"false" => Some(false),
        _ => None,
    }
}

pub(super) fn kind_of(cell: &[u8], decimal: u8) -> Kind {
    if parse_int(cell).is_some() {
        Kind::Int
    } else if parse_float(cell, decimal).is_some() {
        Kind::Float
    } else if parse_bool(cell).is_some() {
        Kind::Bool
    } else {
        Kind::Text
    }
}

/// The type that holds both.
pub(super) fn widen(a: Kind, b: Kind) -> Kind {
    use Kind::*;
    match (a, b) {
        (x, y) if x == y => x,
        (Empty, x) | (x, Empty) => x,
        (Int, Float) | (Float, Int) => Float,
        _ => Text,
    }
}

/// Column names as pandas makes them: an empty name is `Unnamed: i`, a
/// repeated one gets `.1`, `.2`, ….
pub(super) fn header_names(records: &Records) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::with_capacity(records.fields());
    for i in 0..records.fields() {
        let raw = std::str::from_utf8(records.field(i)).map_err(|_| format!("header field {} is not UTF-8", i + 1))?;
        let base = if raw.is_empty() { format!("Unnamed: {i}") } else { raw.to_string() };
        let mut name = base.clone();
        let mut k = 1;
        while names.contains(&name) {
            name = format!("{base}.{k}");
            k += 1;
        }
        names.push(name);
    }
    Ok(names)
}

/// A file opened at its header: the dialect, the column names and the
/// records after the header.
pub(super) struct Opened {
    pub(super) dialect: Dialect,
    pub(super) names: Vec<String>,
    pub(super) records: Records,
}

pub(super) fn open_at_header(path: &Path, opts: &CsvOptions, count: Option<Arc<AtomicU64>>) -> Result<Opened, String> {
    opts.validate().map_err(|e| io_err(path, e))?;
    let mut text = open_text_counted(path, 0, count)?;
    let head = text.fill_buf().map_err(|e| io_err(path, e))?;
    let head = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let decimal = opts.decimal as u8;
    let delimiter = opts.delimiter.map_or_else(|| sniff_delimiter(head, decimal), |d| d as u8);
    let dialect = Dialect { delimiter, decimal, na: Arc::new(opts.na_set()) };
    let mut records = Records::new(text, dialect.core(), 0);
    if records.next().map_err(|e| io_err(path, e))?.is_none() {
        return Err(io_err(path, "no header line (the file holds no text)"));
    }
    let names = header_names(&records).map_err(|e| io_err(path, e))?;
    Ok(Opened { dialect, names, records })
}

/// The first [`CSV_INFER_ROWS`] records of a file after its header:
/// the dialect, the column names, and the blocks of records.
fn first_records(path: &Path, opts: &CsvOptions) -> Result<(Dialect, Vec<String>, Splitter), String> {
    let Opened { dialect, names, records } = open_at_header(path, opts, None)?;
    let (offset, line) = (records.offset, records.core.line());
    let limit = Some(CSV_INFER_ROWS as u64);
    let splitter = Splitter::new(Box::new(records.text), dialect.delimiter, 1 << 15, offset, line, 0, limit, false);
    Ok((dialect, names, splitter))
}

/// Fold the records of `splitter`'s blocks: each block into a fresh
/// state (`make`) by `visit(state, fields, line)` on one of the machine's
/// threads, the blocks' states handed to `merge` in file order — the same
/// as one fold over all records when `merge` combines states as `visit`
/// would have. (`line`: where the record starts, computed when asked.)
fn fold_records<S: Send>(
    path: &Path,
    delimiter: u8,
    splitter: &mut Splitter,
    make: impl Fn() -> S + Sync,
    visit: impl Fn(&mut S, &Fields<'_>, &dyn Fn() -> u64) + Sync,
    mut merge: impl FnMut(S),
) -> Result<(), String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let fold_block = |block: Block| -> Result<S, String> {
        let mut state = make();
        let first_line = block.first_line;
        let mut parser = BlockParser::new(block, delimiter);
        let mut on_record = |fields: &Fields<'_>, text: &[u8], start: usize| {
            visit(&mut state, fields, &|| first_line + count_newlines(&text[..start]));
            Ok(())
        };
        parser.visit(delimiter, usize::MAX, &mut on_record)?;
        Ok(state)
    };
    let (work_tx, work_rx) = crossbeam_channel::bounded::<(usize, Block)>(threads);
    let (res_tx, res_rx) = crossbeam_channel::unbounded::<(usize, Result<S, String>)>();
    let read = std::thread::scope(|s| {
        for _ in 0..threads {
            let (rx, tx, fold_block) = (work_rx.clone(), res_tx.clone(), &fold_block);
            s.spawn(move || {
                for (seq, block) in rx.iter() {
                    if tx.send((seq, fold_block(block))).is_err() {
                        return;
                    }
                }
            });
        }
        let mut seq = 0;
        let read = loop {
            match splitter.next_block() {
                Ok(Some(block)) => {
                    if work_tx.send((seq, block)).is_err() {
                        break Ok(());
                    }
                    seq += 1;
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(io_err(path, e)),
            }
        };
        drop(work_tx);
        read
    });
    drop(res_tx);
    read?;
    let mut states: std::collections::BTreeMap<usize, Result<S, String>> = res_rx.iter().collect();
    for (_, state) in std::mem::take(&mut states) {
        merge(state.map_err(|e| io_err(path, e))?);
    }
    Ok(())
}

/// The schema of a CSV file: its header's names and the types of their
/// values in the first [`CSV_INFER_ROWS`] rows (every field nullable).
pub fn infer_schema(path: &Path, opts: &CsvOptions) -> Result<Schema, String> {
    let (dialect, names, mut splitter) = first_records(path, opts)?;
    let width = names.len();
    let (mut kinds, mut missing) = (vec![Kind::Empty; width], vec![false; width]);
    let na = &dialect.na;
    let visit = |(kinds, missing): &mut (Vec<Kind>, Vec<bool>), fields: &Fields<'_>, _: &dyn Fn() -> u64| {
        for (j, k) in kinds.iter_mut().enumerate() {
            let Some(cell) = fields.get(j) else {
                missing[j] = true;
                continue;
            };
            if *k == Kind::Text {
                continue;
            }
            // An integer is no missing-value token unless some token reads
            // as a number (then the token list decides first).
            if !na.numeric && parse_int(cell).is_some() {
                *k = widen(*k, Kind::Int);
            } else if na.contains(cell) {
                missing[j] = true;
            } else {
                *k = widen(*k, kind_of(cell, dialect.decimal));
            }
        }
    };
    let make = || (vec![Kind::Empty; width], vec![false; width]);
    fold_records(path, dialect.delimiter, &mut splitter, make, visit, |(k, m)| {
        for j in 0..width {
            kinds[j] = widen(kinds[j], k[j]);
            missing[j] |= m[j];
        }
    })?;
    let fields: Vec<Field> = names
        .iter()
        .zip(kinds.iter().zip(&missing))
        .map(|(n, (k, &m))| {
            let t = match k {
                // pandas: an integer column with a gap, or one with no
                // value at all, is float64.
                Kind::Int if m => DataType::Float64,
                Kind::Int => DataType::Int64,
                Kind::Float | Kind::Empty => DataType::Float64,
                Kind::Bool => DataType::Boolean,
                Kind::Text => DataType::Utf8,
            };
            Field::new(n, t, true)
        })
        .collect();
    Ok(Schema::new(fields))
}

/// Why a column of numbers was inferred as text.
#[derive(Clone, Debug, PartialEq)]
pub enum TextInNumbers {
    /// Most cells are numbers; these (with their lines) are not.
    Mixed { column: String, values: Vec<(String, u64)> },
    /// The numbers are written with a decimal comma (`1234,56`) and the
    /// file is read with a decimal point: this cell, at this line.
    DecimalComma { column: String, example: (String, u64) },
}

/// For the text columns among `columns` of a file whose schema is
/// `schema`: the first that is really a column of numbers — most of its
/// non-missing cells are numbers ([`TextInNumbers::Mixed`], with its first
/// few other values), or numbers with the other decimal mark
/// ([`TextInNumbers::DecimalComma`]). Reads the first [`CSV_INFER_ROWS`]
/// rows.
pub fn text_in_numbers(
    path: &Path,
    opts: &CsvOptions,
    schema: &Schema,
    columns: &[String],
) -> Result<Option<TextInNumbers>, String> {
    let text_cols: Vec<usize> = columns
        .iter()
        .filter_map(|c| schema.index_of(c).ok())
        .filter(|&i| schema.field(i).data_type() == &DataType::Utf8)
        .collect();
    if text_cols.is_empty() {
        return Ok(None);
    }
    let (dialect, names, mut splitter) = first_records(path, opts)?;
    let other_mark = if dialect.decimal == b'.' { b',' } else { b'.' };
    let n = text_cols.len();
    // Per column: cells that are numbers, numbers with the other mark,
    // other cells, and the first few other values with their lines.
    type Counts = (Vec<u64>, Vec<u64>, Vec<u64>, Vec<Vec<(String, u64)>>);
    let make = || -> Counts { (vec![0; n], vec![0; n], vec![0; n], vec![Vec::new(); n]) };
    let visit = |(numeric, comma, other, bad): &mut Counts, fields: &Fields<'_>, line: &dyn Fn() -> u64| {
        for (k, &c) in text_cols.iter().enumerate() {
            let Some(cell) = fields.get(c) else { continue };
            if dialect.na.contains(cell) {
                continue;
            }
            if parse_float(cell, dialect.decimal).is_some() {
                numeric[k] += 1;
                continue;
            }
            other[k] += 1;
            if parse_float(cell, other_mark).is_some() {
                comma[k] += 1;
            }
            let v = String::from_utf8_lossy(cell).to_string();
            if bad[k].len() < 3 && !bad[k].iter().any(|(b, _)| *b == v) {
                bad[k].push((v, line()));
            }
        }
    };
    let (mut numeric, mut comma, mut other, mut bad) = make();
    fold_records(path, dialect.delimiter, &mut splitter, make, visit, |(nu, co, ot, ba)| {
        for k in 0..n {
            numeric[k] += nu[k];
            comma[k] += co[k];
            other[k] += ot[k];
            for (v, line) in &ba[k] {
                if bad[k].len() < 3 && !bad[k].iter().any(|(b, _)| b == v) {
                    bad[k].push((v.clone(), *line));
                }
            }
        }
    })?;
    for (k, &c) in text_cols.iter().enumerate() {
        let column = names[c].clone();
        let cells = numeric[k] + other[k];
        if other_mark == b',' && cells > 0 && 2 * (numeric[k] + comma[k]) > cells && comma[k] > 0 {
            let example = bad[k][0].clone();
            return Ok(Some(TextInNumbers::DecimalComma { column, example }));
        }
        if numeric[k] > other[k] && !bad[k].is_empty() {
            return Ok(Some(TextInNumbers::Mixed { column, values: std::mem::take(&mut bad[k]) }));
        }
    }
    Ok(None)
}
