//! Categorical columns as level codes: any Arrow type a factor may come
//! as (strings, dictionaries, integers, booleans), its levels in order of
//! first appearance, nulls as `u32::MAX`.

use super::arrays::{bad_type, numeric_column};
use super::DesignError;
use crate::level::Level;
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, DictionaryArray, RecordBatch};
use arrow::buffer::Buffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int32Type, Int64Type};
use std::collections::HashMap;

/// A fast hasher for level lookups (the multiply-rotate hash of rustc's
/// `FxHasher`): level keys are short strings and integers from the data,
/// hashed once per row, where SipHash's resistance to crafted keys buys
/// nothing and cost a third of a clustered second pass.
#[derive(Default, Clone, Copy)]
pub struct LevelHasher(u64);

impl std::hash::Hasher for LevelHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn finish(&self) -> u64 {
        // The multiply mixes upward only: the low bits, which pick the
        // bucket, and the top seven, which the table compares before the
        // keys, would see little of keys that differ in their last bytes
        // ("B000123" vs "B000124", one word): 100,000 such levels shared
        // a few buckets. MurmurHash3's finalizer mixes both ends.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// A hash map keyed by level values (strings, level codes), with a fast
/// hasher: what a factor's levels are looked up in, row by row.
pub type LevelMap<K> = HashMap<K, u32, std::hash::BuildHasherDefault<LevelHasher>>;

/// The keys of a dictionary-coded string column without nulls, as `u32`,
/// and its dictionary. When the dictionary's values are distinct and none
/// is null, the keys are the column's codes in [`categorical_column`]
/// (whose level table then has one level per value).
pub fn dictionary_keys<'a>(batch: &'a RecordBatch, name: &str) -> Option<(&'a [u32], &'a ArrayRef)> {
    let d = batch.column_by_name(name)?.as_any().downcast_ref::<DictionaryArray<Int32Type>>()?;
    if d.null_count() != 0 || !matches!(d.values().data_type(), DataType::Utf8 | DataType::LargeUtf8) {
        return None;
    }
    let keys: &[i32] = d.keys().values();
    // SAFETY: i32 and u32 have the same size and alignment, and every bit
    // pattern is a u32 (keys are non-negative in a valid array).
    Some((unsafe { std::slice::from_raw_parts(keys.as_ptr().cast(), keys.len()) }, d.values()))
}

/// A yes/no (Boolean) column of a batch as bits that start at bit 0 of
/// byte 0 (a byte per 8 rows; bits past the last row are not defined):
/// its yes rows and, where some are missing, its missing rows. Its level
/// codes (no = 0, yes = 1) are made only when a consumer needs codes: the
/// in-place kernels read the bits.
#[derive(Clone, Debug)]
pub struct YesNo {
    yes: Buffer,
    missing: Option<Buffer>,
    rows: usize,
}

impl YesNo {
    pub fn of(a: &BooleanArray) -> YesNo {
        let missing = a.nulls().filter(|v| v.null_count() > 0).map(|v| (!v.inner()).sliced());
        YesNo { yes: a.values().sliced(), missing, rows: a.len() }
    }

    /// The yes rows' bits (missing rows: either).
    pub fn yes(&self) -> &[u8] {
        self.yes.as_slice()
    }

    /// The missing rows' bits (`None`: none missing).
    pub fn missing(&self) -> Option<&[u8]> {
        self.missing.as_ref().map(|m| m.as_slice())
    }

    /// Level codes, `u32::MAX` where missing (eight rows a lookup).
    pub fn codes(&self) -> Vec<u32> {
        crate::bits::yes_no_codes(self.yes(), self.missing(), self.rows)
    }

    /// Rows of each level (no, yes), missing ones not counted: popcounts.
    pub fn counts(&self) -> [u64; 2] {
        let n = self.rows;
        let yes = crate::bits::ones_in_first(self.yes(), self.missing(), n);
        let missing = self.missing().map_or(0, |m| crate::bits::ones_in_first(m, None, n));
        [n as u64 - missing - yes, yes]
    }

    /// The missing rows, in order.
    pub fn missing_rows(&self) -> Vec<usize> {
        let Some(m) = self.missing() else { return Vec::new() };
        let mut rows = Vec::new();
        for (c, &b) in m.iter().enumerate().take(self.rows.div_ceil(8)) {
            let mut b = b & crate::bits::row_mask(None, c, self.rows);
            while b != 0 {
                rows.push(8 * c + b.trailing_zeros() as usize);
                b &= b - 1;
            }
        }
        rows
    }
}

/// Level codes of a categorical column (`u32::MAX` = missing) and the
/// batch-local level table.
pub fn categorical_column(batch: &RecordBatch, name: &str) -> Result<(Vec<u32>, Vec<Level>), DesignError> {
    let arr = batch.column_by_name(name).ok_or_else(|| DesignError::NoColumn { column: name.into() })?;
    if arr.data_type() == &DataType::Boolean {
        return Ok((YesNo::of(arr.as_boolean()).codes(), vec![Level::Bool(false), Level::Bool(true)]));
    }
    let n = arr.len();
    let mut codes = vec![u32::MAX; n];
    let mut table: Vec<Level> = Vec::new();
    match arr.data_type() {
        t if t.is_integer() => {
            let a = cast(arr, &DataType::Int64).map_err(|_| bad_type(name, arr, "a category"))?;
            let a = a.as_primitive::<Int64Type>();
            let mut map: LevelMap<i64> = LevelMap::default();
            for (r, c) in codes.iter_mut().enumerate() {
                if a.is_valid(r) {
                    let v = a.value(r);
                    *c = *map.entry(v).or_insert_with(|| {
                        table.push(Level::Int(v));
                        (table.len() - 1) as u32
                    });
                }
            }
        }
        t if t.is_numeric() => {
            let v = numeric_column(batch, name)?;
            let mut map: LevelMap<u64> = LevelMap::default();
            for (r, c) in codes.iter_mut().enumerate() {
                let x = v[r];
                if !x.is_nan() {
                    let l = Level::float(x);
                    let bits = match l {
                        Level::Float(y) => y.to_bits(),
                        _ => unreachable!(),
                    };
                    *c = *map.entry(bits).or_insert_with(|| {
                        table.push(l);
                        (table.len() - 1) as u32
                    });
                }
            }
        }
        DataType::Dictionary(_, v) if matches!(v.as_ref(), DataType::Utf8 | DataType::LargeUtf8) => {
            // Code the dictionary's values once (a dictionary may repeat a
            // value: they share a level), then each row by its key.
            let dict = arr.as_any_dictionary();
            let values = cast(dict.values(), &DataType::Utf8).map_err(|_| bad_type(name, arr, "a category"))?;
            let values = values.as_string::<i32>();
            if values.len() > n {
                // A dictionary larger than the chunk (a column of 100,000
                // building ids: one dictionary per row group, shared by
                // its chunks): code only the keys the rows use.
                return Ok(code_used_keys(dict, values));
            }
            let mut map: LevelMap<&str> = LevelMap::default();
            let value_code: Vec<u32> = values
                .iter()
                .map(|v| match v {
                    None => u32::MAX,
                    Some(v) => *map.entry(v).or_insert_with(|| {
                        table.push(Level::Str(v.to_string()));
                        (table.len() - 1) as u32
                    }),
                })
                .collect();
            let nulls = arr.logical_nulls();
            let code_of = |k: usize| value_code.get(k).copied().unwrap_or(u32::MAX);
            if let Some(d) = arr.as_any().downcast_ref::<DictionaryArray<Int32Type>>() {
                // The usual keys (Parquet's dictionaries are read so): read
                // in place rather than widened into a new vector first.
                let keys = d.keys().values();
                // Distinct dictionary values (the usual case) code as their keys.
                let identity = value_code.iter().enumerate().all(|(i, &c)| c == i as u32);
                let len = value_code.len() as u32;
                match &nulls {
                    None if identity => codes
                        .iter_mut()
                        .zip(keys.iter())
                        .for_each(|(c, &k)| *c = if (k as u32) < len { k as u32 } else { u32::MAX }),
                    None => codes.iter_mut().zip(keys.iter()).for_each(|(c, &k)| *c = code_of(k as usize)),
                    Some(n) => {
                        for (r, (c, &k)) in codes.iter_mut().zip(keys.iter()).enumerate() {
                            if n.is_valid(r) {
                                *c = code_of(k as usize);
                            }
                        }
                    }
                }
            } else {
                let keys = dict.normalized_keys();
                for (r, c) in codes.iter_mut().enumerate() {
                    if nulls.as_ref().is_none_or(|n| n.is_valid(r)) {
                        *c = code_of(keys[r]);
                    }
                }
            }
        }
        _ => {
            let s = cast(arr, &DataType::Utf8).map_err(|_| bad_type(name, arr, "a category"))?;
            let a = s.as_string::<i32>();
            let mut map: LevelMap<&str> = LevelMap::default();
            // Runs of one level are common (sorted or grouped files): the
            // previous row's level is tried before the map.
            let mut prev: Option<(&str, u32)> = None;
            for (r, c) in codes.iter_mut().enumerate() {
                if a.is_valid(r) {
                    let v = a.value(r);
                    if let Some((pv, pc)) = prev {
                        if pv == v {
                            *c = pc;
                            continue;
                        }
                    }
                    *c = match map.get(v) {
                        Some(&k) => k,
                        None => {
                            table.push(Level::Str(v.to_string()));
                            let k = (table.len() - 1) as u32;
                            map.insert(v, k);
                            k
                        }
                    };
                    prev = Some((v, *c));
                }
            }
        }
    }
    Ok((codes, table))
}

/// Codes and levels of the rows of a dictionary column, coding each
/// dictionary value when a row first uses it (levels in order of first
/// use).
fn code_used_keys(
    dict: &dyn arrow::array::AnyDictionaryArray,
    values: &arrow::array::StringArray,
) -> (Vec<u32>, Vec<Level>) {
    const UNCODED: u32 = u32::MAX - 1;
    let keys = dict.normalized_keys();
    let nulls = dict.logical_nulls();
    let mut value_code = vec![UNCODED; values.len()];
    let mut map: LevelMap<&str> = LevelMap::default();
    let mut table: Vec<Level> = Vec::new();
    let mut codes = vec![u32::MAX; keys.len()];
    for (r, c) in codes.iter_mut().enumerate() {
        if nulls.as_ref().is_some_and(|n| n.is_null(r)) {
            continue;
        }
        let k = keys[r];
        if value_code[k] == UNCODED {
            value_code[k] = if values.is_null(k) {
                u32::MAX
            } else {
                let v = values.value(k);
                *map.entry(v).or_insert_with(|| {
                    table.push(Level::Str(v.to_string()));
                    (table.len() - 1) as u32
                })
            };
        }
        *c = value_code[k];
    }
    (codes, table)
}

pub(super) fn describe(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x > 0.0 {
        "+inf".into()
    } else {
        "-inf".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    /// A yes/no column's codes are its values (false 0, true 1) and
    /// missing where null, row by row, also in a slice that starts inside
    /// a byte and ends inside a word.
    #[test]
    fn boolean_codes_are_the_values_and_nulls_are_missing() {
        let values: Vec<Option<bool>> =
            (0..300).map(|r| if r % 7 == 3 { None } else { Some((r * 2_654_435_761usize) >> 7 & 1 == 1) }).collect();
        let full = arrow::array::BooleanArray::from(values.clone());
        for (at, len) in [(0, 300), (3, 200), (61, 70), (64, 1)] {
            let a: arrow::array::ArrayRef = Arc::new(full.slice(at, len));
            let schema = Arc::new(Schema::new(vec![Field::new("f", arrow::datatypes::DataType::Boolean, true)]));
            let batch = RecordBatch::try_new(schema, vec![a]).unwrap();
            let (codes, table) = categorical_column(&batch, "f").unwrap();
            assert_eq!(table, vec![Level::Bool(false), Level::Bool(true)]);
            let want: Vec<u32> = values[at..at + len].iter().map(|v| v.map_or(u32::MAX, u32::from)).collect();
            assert_eq!(codes, want, "rows {at}..{}", at + len);
            // Counted and found missing from the bits alike.
            let bits = YesNo::of(batch.column(0).as_boolean());
            let count = |level: u32| want.iter().filter(|&&c| c == level).count() as u64;
            assert_eq!(bits.counts(), [count(0), count(1)], "rows {at}..{}", at + len);
            let missing: Vec<usize> = (0..len).filter(|&r| want[r] == u32::MAX).collect();
            assert_eq!(bits.missing_rows(), missing, "rows {at}..{}", at + len);
        }
    }

    /// A dictionary larger than the batch codes only the values its rows
    /// use: the same level per row as the eager coding, nulls (of the row
    /// or of the value) missing, a repeated value one level.
    #[test]
    fn large_dictionaries_code_the_rows_used() {
        let names: Vec<Option<String>> =
            (0..50).map(|i| if i == 7 { None } else { Some(format!("v{}", i % 45)) }).collect();
        let values = StringArray::from(names.clone());
        let keys = Int32Array::from(vec![Some(3), None, Some(48), Some(7), Some(3), Some(46), Some(1)]);
        let dict = DictionaryArray::<Int32Type>::try_new(keys.clone(), Arc::new(values)).unwrap();
        let schema = Schema::new(vec![Field::new("b", dict.data_type().clone(), true)]);
        let batch = RecordBatch::try_new(Arc::new(schema), vec![Arc::new(dict)]).unwrap();
        let (codes, table) = categorical_column(&batch, "b").unwrap();
        let got: Vec<Option<String>> =
            codes.iter().map(|&c| (c != u32::MAX).then(|| table[c as usize].to_string())).collect();
        let want: Vec<Option<String>> = keys.iter().map(|k| k.and_then(|k| names[k as usize].clone())).collect();
        assert_eq!(got, want);
        // Keys 3 and 48 are both "v3", keys 46 and 1 both "v1": two levels.
        assert_eq!(table.len(), 2);
        assert_eq!((codes[0], codes[5]), (codes[2], codes[6]));
    }

    /// A dictionary column is coded by its values, not its keys: two keys
    /// of one value share a level, a null row (whatever its key) has no
    /// level, and levels come in order of first appearance in the
    /// dictionary's values.
    #[test]
    fn dictionary_codes_follow_values_and_nulls() {
        let values = StringArray::from(vec!["Queens", "Brooklyn", "Queens", "Manhattan"]);
        let keys = Int32Array::from(vec![Some(1), Some(0), None, Some(2), Some(3), Some(1)]);
        for with_nulls in [true, false] {
            let keys = if with_nulls { keys.clone() } else { Int32Array::from(vec![1, 0, 3, 2, 3, 1]) };
            let dict = DictionaryArray::<Int32Type>::try_new(keys, Arc::new(values.clone())).unwrap();
            let schema = Schema::new(vec![Field::new("b", dict.data_type().clone(), true)]);
            let batch = RecordBatch::try_new(Arc::new(schema), vec![Arc::new(dict)]).unwrap();
            let (codes, table) = categorical_column(&batch, "b").unwrap();
            let names: Vec<String> = table.iter().map(|l| l.to_string()).collect();
            assert_eq!(names, ["Queens", "Brooklyn", "Manhattan"]);
            let want = if with_nulls { vec![1, 0, u32::MAX, 0, 2, 1] } else { vec![1, 0, 2, 0, 2, 1] };
            assert_eq!(codes, want, "nulls: {with_nulls}");
        }
    }
}
