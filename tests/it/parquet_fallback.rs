//! Legal Parquet the page readers do not decode goes to arrow-rs, never to
//! an error: a dictionary that falls back to PLAIN pages mid-chunk (with
//! the chunk's encoding statistics absent, or saying "dictionary only"
//! against the pages), and v1 pages whose definition levels use the
//! deprecated BIT_PACKED encoding (written here byte by byte: no writer on
//! PyPI makes them). The rows read equal arrow-rs's, value for value.

use crate::common::tempdir;
use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch};
use arrow::compute::{cast, concat};
use arrow::datatypes::{DataType, Field, Schema};
use gramfit::source::{self, Input, SourceKind};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataWriter};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use std::path::Path;
use std::sync::Arc;

fn values(n: usize) -> (ArrayRef, ArrayRef) {
    // Many distinct doubles (the dictionary overflows) and a 0/1 column
    // whose dictionary holds one value before the second one makes it
    // overflow too.
    let x: Float64Array = (0..n).map(|r| (r % 11 != 3).then_some((r * 37 % 1000) as f64 * 0.125 - 3.0)).collect();
    let f: Int64Array = (0..n).map(|r| (r % 13 != 5).then_some(i64::from(r >= n / 3 && r % 2 == 0))).collect();
    (Arc::new(x), Arc::new(f))
}

fn write_overflowing(path: &Path, n: usize, v2: bool) {
    let (x, f) = values(n);
    let schema =
        Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, true), Field::new("f", DataType::Int64, true)]));
    let props = WriterProperties::builder()
        .set_writer_version(if v2 { WriterVersion::PARQUET_2_0 } else { WriterVersion::PARQUET_1_0 })
        .set_compression(Compression::SNAPPY)
        // x's dictionary overflows after its first write batch (64 rows),
        // f's once its second value comes (row 1000).
        .set_column_dictionary_page_size_limit("x".into(), 400)
        .set_column_dictionary_page_size_limit("f".into(), 16)
        .set_write_batch_size(64)
        .set_data_page_row_count_limit(100)
        .build();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema.clone(), Some(props)).unwrap();
    w.write(&RecordBatch::try_new(schema, vec![x, f]).unwrap()).unwrap();
    w.close().unwrap();
}

/// Rewrite a file's footer with `edit` applied to every column chunk's
/// metadata (the pages stay where they are).
fn rewrite_footer(
    path: &Path,
    edit: impl Fn(
        parquet::file::metadata::ColumnChunkMetaDataBuilder,
    ) -> parquet::file::metadata::ColumnChunkMetaDataBuilder,
) {
    let bytes = std::fs::read(path).unwrap();
    let meta = parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&bytes::Bytes::from(bytes.clone()))
        .unwrap();
    let footer_len = u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap()) as usize;
    let data = &bytes[..bytes.len() - 8 - footer_len];
    let groups = meta
        .row_groups()
        .iter()
        .map(|rg| {
            let cols = rg.columns().iter().map(|c| edit(c.clone().into_builder()).build().unwrap()).collect();
            rg.clone().into_builder().set_column_metadata(cols).build().unwrap()
        })
        .collect();
    let meta: ParquetMetaData = meta.into_builder().set_row_groups(groups).build();
    let mut out = data.to_vec();
    ParquetMetaDataWriter::new(&mut out, &meta).finish().unwrap();
    std::fs::write(path, out).unwrap();
}

/// Every batch of a file's row groups as gramfit reads it (with the page
/// readers on or off), concatenated per column as Int64/Float64; and the
/// columns that were still read from pages when each row group began.
fn read(path: &Path, pages: bool, batch: usize) -> (Vec<ArrayRef>, Vec<Vec<String>>) {
    let input = Input::new(path.into(), SourceKind::Parquet);
    let meta = source::parquet_metadata(&input).unwrap();
    let cols = vec!["x".to_string(), "f".to_string()];
    let binary = if pages { cols.clone() } else { vec![] };
    let mut parts: Vec<Vec<ArrayRef>> = vec![vec![], vec![]];
    let mut opened = Vec::new();
    for rg in 0..meta.metadata().num_row_groups() {
        let r = source::parquet_row_group(&input, &meta, rg, &cols, &binary, pages, batch).unwrap();
        opened.push(r.page_decoded().iter().map(|s| s.to_string()).collect());
        for b in r {
            let b = b.unwrap();
            parts[0].push(Arc::clone(b.column(0)));
            // Bits come as booleans; arrow-rs's fallback as integers.
            parts[1].push(cast(b.column(1), &DataType::Int64).unwrap());
        }
    }
    let out =
        parts.iter().map(|p| concat(&p.iter().map(|a| a.as_ref()).collect::<Vec<&dyn Array>>()).unwrap()).collect();
    (out, opened)
}

fn same(a: &ArrayRef, b: &ArrayRef) -> bool {
    a.to_data() == b.to_data()
}

#[test]
fn a_dictionary_falling_back_to_plain_pages_is_read_on_by_arrow_rs() {
    let tmp = tempdir();
    for v2 in [false, true] {
        for stats in ["absent", "dictionary only"] {
            let path = tmp.path().join(format!("overflow-{v2}-{}.parquet", stats.len()));
            write_overflowing(&path, 3000, v2);
            rewrite_footer(&path, |c| match stats {
                "absent" => c.clear_page_encoding_stats(),
                _ => c.set_page_encoding_stats_mask(parquet::basic::EncodingMask::new_from_encodings(
                    [Encoding::RLE_DICTIONARY].iter(),
                )),
            });
            let (want, _) = read(&path, false, 1000);
            for batch in [1, 7, 64, 100, 999, 4000] {
                let (got, opened) = read(&path, true, batch);
                // The page readers took both columns and stepped aside at
                // the first PLAIN page.
                assert_eq!(opened[0], ["x", "f"], "v2 {v2}, stats {stats}");
                assert!(same(&got[0], &want[0]), "x: v2 {v2}, stats {stats}, batch {batch}");
                assert!(same(&got[1], &want[1]), "f: v2 {v2}, stats {stats}, batch {batch}");
            }
            // A fit whose chunks join batches from both sides of the
            // switch (bits, then integers) equals the reference path's.
            let fit = |batch: &str, direct: bool| {
                let mut c = std::process::Command::new(crate::common::bin());
                c.args(["fit", path.to_str().unwrap(), "-f", "x ~ f", "--format", "json", "-q", "--batch-size", batch]);
                if !direct {
                    c.env("GRAMFIT_NO_DIRECT", "1");
                }
                let out = c.output().unwrap();
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
            };
            let reference = fit("8192", false);
            for batch in ["7", "1000"] {
                let d =
                    crate::common::json_differences(&reference, &fit(batch, true), 1e-11, &["fitted_at", "elapsed_s"]);
                assert!(d.is_empty(), "batch {batch}: {d:?}");
                assert_eq!(reference["params"], fit(batch, false)["params"]);
            }
        }
    }
}

/// Thrift compact protocol, as much as a page header needs.
#[derive(Default)]
struct Compact {
    out: Vec<u8>,
    last: Vec<i16>,
}

impl Compact {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }
    fn field(&mut self, id: i16, kind: u8) {
        let last = self.last.last_mut().unwrap();
        self.out.push((((id - *last) as u8) << 4) | kind);
        *last = id;
    }
    fn i32(&mut self, id: i16, v: i32) {
        self.field(id, 5);
        self.varint(((v << 1) ^ (v >> 31)) as u32 as u64);
    }
    fn begin(&mut self, id: Option<i16>) {
        if let Some(id) = id {
            self.field(id, 12);
        }
        self.last.push(0);
    }
    fn end(&mut self) {
        self.out.push(0);
        self.last.pop();
    }
}

/// A v1 page header: dictionary (`dict`) or data page of `num_values`.
fn page_header(dict: bool, size: usize, num_values: i32, def_encoding: Encoding) -> Vec<u8> {
    let mut c = Compact::default();
    c.begin(None);
    c.i32(1, if dict { 2 } else { 0 });
    c.i32(2, size as i32);
    c.i32(3, size as i32);
    if dict {
        c.begin(Some(7));
        c.i32(1, num_values);
        c.i32(2, 0); // PLAIN
        c.end();
    } else {
        c.begin(Some(5));
        c.i32(1, num_values);
        c.i32(2, 8); // RLE_DICTIONARY
        #[allow(deprecated)]
        c.i32(3, if def_encoding == Encoding::BIT_PACKED { 4 } else { 3 });
        c.i32(4, 3); // RLE (no repetition levels)
        c.end();
    }
    c.end();
    c.out
}

#[test]
fn bit_packed_definition_levels_go_to_arrow_rs() {
    let tmp = tempdir();
    let path = tmp.path().join("bit-packed.parquet");
    let n = 1000usize;
    let dict: Vec<f64> = (0..7).map(|k| k as f64 * 0.5 - 1.0).collect();
    let defined = |r: usize| !r.is_multiple_of(5);
    let index = |r: usize| (r * 3) % 7;
    // The template: arrow-rs writes the same column (its footer is kept).
    let expected: Float64Array = (0..n).map(|r| defined(r).then(|| dict[index(r)])).collect();
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, true)]));
    let props = WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::UNCOMPRESSED)
        .set_statistics_enabled(EnabledStatistics::None)
        .build();
    let mut w = ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema.clone(), Some(props)).unwrap();
    w.write(&RecordBatch::try_new(schema, vec![Arc::new(expected.clone())]).unwrap()).unwrap();
    w.close().unwrap();
    // The pages, by hand: a PLAIN dictionary, then one data page whose
    // definition levels are BIT_PACKED (one bit per slot, least
    // significant first, as arrow-rs reads them; no length prefix) and
    // whose indices are 3-bit bit-packed groups of 8.
    let dict_page: Vec<u8> = dict.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut levels = vec![0u8; n.div_ceil(8)];
    for r in (0..n).filter(|&r| defined(r)) {
        levels[r / 8] |= 1 << (r % 8);
    }
    let idx: Vec<usize> = (0..n).filter(|&r| defined(r)).map(index).collect();
    let groups = idx.len().div_ceil(8);
    let mut packed = vec![0u8; groups * 3];
    for (i, &v) in idx.iter().enumerate() {
        for b in 0..3 {
            if v >> b & 1 == 1 {
                packed[(i * 3 + b) / 8] |= 1 << ((i * 3 + b) % 8);
            }
        }
    }
    let mut data_page = levels;
    data_page.push(3);
    let mut g = (groups as u64) << 1 | 1;
    while g >= 0x80 {
        data_page.push((g as u8) | 0x80);
        g >>= 7;
    }
    data_page.push(g as u8);
    data_page.extend(packed);
    let mut file = b"PAR1".to_vec();
    file.extend(page_header(true, dict_page.len(), dict.len() as i32, Encoding::PLAIN));
    file.extend(&dict_page);
    let data_offset = file.len();
    #[allow(deprecated)]
    file.extend(page_header(false, data_page.len(), n as i32, Encoding::BIT_PACKED));
    file.extend(&data_page);
    let chunk_len = (file.len() - 4) as i64;
    let template = std::fs::read(&path).unwrap();
    let meta =
        parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&bytes::Bytes::from(template)).unwrap();
    let groups: Vec<_> = meta
        .row_groups()
        .iter()
        .map(|rg| {
            #[allow(deprecated)]
            let col = rg.columns()[0]
                .clone()
                .into_builder()
                .set_dictionary_page_offset(Some(4))
                .set_data_page_offset(data_offset as i64)
                .set_total_compressed_size(chunk_len)
                .set_total_uncompressed_size(chunk_len)
                .set_num_values(n as i64)
                .set_encodings(vec![Encoding::PLAIN, Encoding::BIT_PACKED, Encoding::RLE_DICTIONARY])
                .clear_page_encoding_stats()
                .set_offset_index_offset(None)
                .set_offset_index_length(None)
                .set_column_index_offset(None)
                .set_column_index_length(None)
                .build()
                .unwrap();
            rg.clone()
                .into_builder()
                .set_column_metadata(vec![col])
                .set_total_byte_size(chunk_len)
                .set_file_offset(4)
                .build()
                .unwrap()
        })
        .collect();
    let meta = meta.into_builder().set_row_groups(groups).build();
    ParquetMetaDataWriter::new(&mut file, &meta).finish().unwrap();
    std::fs::write(&path, &file).unwrap();

    let input = Input::new(path.clone(), SourceKind::Parquet);
    let pmeta = source::parquet_metadata(&input).unwrap();
    for batch in [1, 100, 333, 1000, 5000] {
        let r = source::parquet_row_group(&input, &pmeta, 0, &["x".into()], &[], true, batch).unwrap();
        assert_eq!(r.page_decoded(), ["x"], "the float page reader opened the chunk");
        let got: Vec<ArrayRef> = r.map(|b| Arc::clone(b.unwrap().column(0))).collect();
        let got = concat(&got.iter().map(|a| a.as_ref()).collect::<Vec<&dyn Array>>()).unwrap();
        assert_eq!(got.to_data(), expected.to_data(), "batch {batch}");
        // A function read beside the column is taken of what arrow-rs
        // decoded: each value's, NaN at a null.
        let f = gramfit::elementary::Function::Ln;
        let r = source::parquet_row_group(&input, &pmeta, 0, &["x".into()], &[], true, batch)
            .unwrap()
            .with_functions(&[("x".into(), f)]);
        let got: Vec<ArrayRef> = r.map(|b| Arc::clone(b.unwrap().column(1))).collect();
        let got = concat(&got.iter().map(|a| a.as_ref()).collect::<Vec<&dyn Array>>()).unwrap();
        let got = got.as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(got.nulls(), expected.nulls(), "batch {batch}");
        for r in 0..n {
            let want = if expected.is_null(r) { f64::NAN } else { f.of(expected.value(r)) };
            assert!(got.value(r).to_bits() == want.to_bits() || (want.is_nan() && got.value(r).is_nan()), "row {r}");
        }
    }
    // And the whole fit runs (arrow-rs for the column from its first page).
    let out = crate::common::gramfit(["fit", path.to_str().unwrap(), "-f", "x ~ 1", "--format", "json", "-q"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["nobs"], 800);
}
