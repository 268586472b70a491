//! The block reader (a serial [`Splitter`] scan, blocks parsed apart)
//! against `csv-core` reading the whole text record by record: the same
//! records, fields, offsets and ends on texts full of quotes, quoted
//! delimiters and newlines, CRLF, lone `\r`, blank lines and unterminated
//! last lines, cut into blocks of every size.

use super::records::Records;
use super::*;
use arrow::array::{Array, StringArray};
use arrow::datatypes::DataType;
use proptest::prelude::*;

/// The records of `text` (after its header) as `csv-core` reads them, and
/// the offset after the last terminated record.
fn reference(text: &[u8], limit: Option<u64>, hold_tail: bool) -> (Vec<Vec<String>>, ReadEnd) {
    let core = csv_core::ReaderBuilder::new().build();
    let mut r = Records::new(Box::new(std::io::Cursor::new(text.to_vec())), core, 0);
    r.next().unwrap().expect("a header");
    let mut out = Vec::new();
    let mut unterminated = false;
    let mut pending = false;
    let mut end_offset = None;
    loop {
        if limit.is_some_and(|l| out.len() as u64 >= l) {
            break;
        }
        let Some(ended) = r.next().unwrap() else { break };
        if ended == records::Ended::AtEof {
            unterminated = true;
            if hold_tail {
                pending = true;
                break;
            }
            end_offset = Some(r.offset);
        }
        out.push((0..r.fields()).map(|i| String::from_utf8_lossy(r.field(i)).into_owned()).collect());
        if ended == records::Ended::AtEof {
            break;
        }
    }
    let end = ReadEnd {
        complete_offset: r.complete,
        end_offset: end_offset.unwrap_or(r.complete),
        records: out.len() as u64,
        unterminated_tail: unterminated,
        tail_pending: pending,
    };
    (out, end)
}

/// The same text through the block reader, every column as text.
fn blocks_of(text: &[u8], width: usize, per_block: usize, batch: usize, from: ReadFrom) -> (Vec<Vec<String>>, ReadEnd) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.csv");
    std::fs::write(&p, text).unwrap();
    let opts = CsvOptions { delimiter: Some(','), na_values: Some(Vec::new()), ..Default::default() };
    let fields: Vec<Field> = (0..width).map(|i| Field::new(format!("c{i}"), DataType::Utf8, true)).collect();
    let schema = Schema::new(fields);
    let mut src = blocks(&p, &opts, &schema, &[], per_block, from, None).unwrap();
    let mut out = Vec::new();
    while let Some(block) = src.splitter.next_block().unwrap() {
        assert_eq!(block.first_record, from.records_before + out.len() as u64);
        let mut parser = BlockParser::new(block, b',');
        while let Some(b) = parser.next_batch(&src.projection, batch).unwrap() {
            for row in 0..b.num_rows() {
                let mut rec = Vec::new();
                for c in b.columns() {
                    let s = c.as_any().downcast_ref::<StringArray>().unwrap();
                    if s.is_valid(row) {
                        rec.push(s.value(row).to_string());
                    }
                }
                out.push(rec);
            }
        }
    }
    (out, src.splitter.end().expect("an end"))
}

fn text() -> impl Strategy<Value = Vec<u8>> {
    let cell = prop_oneof![
        4 => "[a-c0-9 ]{0,4}",
        2 => "\"[a-c,\r\n]{0,4}\"",
        1 => "\"[a\"]{0,3}\"[b\"]{0,2}",
        1 => "[a\"]{1,3}",
    ];
    let sep = prop_oneof![8 => Just(","), 2 => Just("\n"), 1 => Just("\r\n"), 1 => Just("\r"), 1 => Just("\n\n")];
    proptest::collection::vec((cell, sep), 0..40).prop_map(|parts| {
        let mut t = b"c0,c1,c2,c3\n".to_vec();
        for (c, s) in parts {
            t.extend_from_slice(c.as_bytes());
            t.extend_from_slice(s.as_bytes());
        }
        t
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn blocks_read_what_csv_core_reads(
        t in text(), per_block in 1usize..6, batch in 1usize..4, limit in proptest::option::of(0u64..12),
        hold_tail: bool,
    ) {
        let (all, _) = reference(&t, None, false);
        let width = all.iter().map(Vec::len).max().unwrap_or(1).max(4);
        let mut t = t;
        if width > 4 {
            // A header as wide as the widest record.
            let header: Vec<String> = (0..width).map(|i| format!("c{i}")).collect();
            let body = t.split_off(12);
            t = format!("{}\n", header.join(",")).into_bytes();
            t.extend_from_slice(&body);
        }
        let (want, want_end) = reference(&t, limit, hold_tail);
        let from = ReadFrom { limit, hold_tail, ..Default::default() };
        let (got, got_end) = blocks_of(&t, width, per_block, batch, from);
        prop_assert_eq!(got.len(), want.len());
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(got_end, want_end);
        // Read on from where a read with a limit stopped.
        if limit.is_some() && !want_end.unterminated_tail {
            let on = ReadFrom { offset: want_end.complete_offset, records_before: want_end.records, ..Default::default() };
            let (rest, rest_end) = blocks_of(&t, width, per_block, batch, on);
            let (all, all_end) = reference(&t, None, false);
            prop_assert_eq!(want.len() + rest.len(), all.len());
            prop_assert_eq!(rest_end, all_end);
        }
    }
}
