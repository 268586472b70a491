//! A deterministic generator of synthetic rental listings shaped like the
//! StreetEasy data: rent, bedrooms, bathrooms, size_sqft, min_to_subway,
//! floor, building_age_yrs, eight 0/1 amenity flags, and neighborhood (~100
//! levels) nested in submarket (15) nested in borough (3), with a few nulls.
//! The same seed always gives the same rows (SplitMix64), on any machine.
//!
//! Rent follows a known linear model plus noise, so fits of the generated
//! data have a ground truth:
//! `rent = 1000 + 2.5·size_sqft − 120·bedrooms + 350·bathrooms − 12·min_to_subway
//!  + 8·floor − 4·building_age_yrs + Σ amenity effects + area effects + ε`.
//!
//! Two shapes: [`Shape::Whole`] (whole dollars, whole numbers and halves:
//! every value dyadic, every Parquet column dictionary-encoded) and
//! [`Shape::Real`], values as the world has them: rent in cents, latitude
//! and longitude with six decimals (1% missing), and rent per square foot,
//! a ratio — columns with hundreds of thousands of distinct values, whose
//! Parquet dictionaries overflow into PLAIN pages, or written PLAIN or
//! BYTE_STREAM_SPLIT on request ([`FloatPages`]).

use arrow::array::{ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use std::io::Write;
use std::sync::Arc;

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast, good enough here.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

pub const BOROUGHS: [&str; 3] = ["Brooklyn", "Manhattan", "Queens"];
pub const SUBMARKETS: [(&str, usize); 15] = [
    ("All Downtown", 1),
    ("All Midtown", 1),
    ("All Upper East Side", 1),
    ("All Upper West Side", 1),
    ("All Upper Manhattan", 1),
    ("North Brooklyn", 0),
    ("Northwest Brooklyn", 0),
    ("East Brooklyn", 0),
    ("South Brooklyn", 0),
    ("Prospect Park", 0),
    ("Northwest Queens", 2),
    ("Central Queens", 2),
    ("Northeast Queens", 2),
    ("South Queens", 2),
    ("The Rockaways", 2),
];
pub const FLAGS: [&str; 8] = [
    "no_fee",
    "has_roofdeck",
    "has_washer_dryer",
    "has_doorman",
    "has_elevator",
    "has_dishwasher",
    "has_patio",
    "has_gym",
];
const FLAG_EFFECT: [f64; 8] = [-50.0, 120.0, 300.0, 450.0, 150.0, 90.0, 60.0, 110.0];
const FLAG_RATE: [f64; 8] = [0.42, 0.13, 0.13, 0.23, 0.23, 0.16, 0.04, 0.15];
/// Neighborhoods per submarket (15 × 7 = 105 levels).
pub const NEIGHBORHOODS_PER_SUBMARKET: usize = 7;

/// What the values look like (see the module's comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Whole,
    Real,
}

/// How a Parquet file's float columns are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatPages {
    /// The writer's default: dictionary pages, falling back to PLAIN
    /// where a column chunk's dictionary grows past 1 MiB.
    Dictionary,
    Plain,
    ByteStreamSplit,
}

/// The columns [`Shape::Real`] adds after the whole shape's.
pub const REAL_COLUMNS: [&str; 3] = ["latitude", "longitude", "rent_per_sqft"];

/// The listings' schema in `shape`.
pub fn schema_of(shape: Shape) -> Arc<Schema> {
    let mut fields: Vec<Field> = schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    if shape == Shape::Real {
        fields.push(Field::new(REAL_COLUMNS[0], DataType::Float64, true));
        fields.push(Field::new(REAL_COLUMNS[1], DataType::Float64, true));
        fields.push(Field::new(REAL_COLUMNS[2], DataType::Float64, false));
    }
    Arc::new(Schema::new(fields))
}

/// The whole-number shape's schema.
pub fn schema() -> Arc<Schema> {
    let mut fields = vec![
        Field::new("rental_id", DataType::Int64, false),
        Field::new("rent", DataType::Float64, false),
        Field::new("bedrooms", DataType::Float64, false),
        Field::new("bathrooms", DataType::Float64, false),
        Field::new("size_sqft", DataType::Float64, false),
        Field::new("min_to_subway", DataType::Float64, true),
        Field::new("floor", DataType::Float64, true),
        Field::new("building_age_yrs", DataType::Float64, false),
    ];
    for f in FLAGS {
        fields.push(Field::new(f, DataType::Int64, false));
    }
    fields.push(Field::new("neighborhood", DataType::Utf8, false));
    fields.push(Field::new("submarket", DataType::Utf8, false));
    fields.push(Field::new("borough", DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// Listings `first .. first + n` of the stream for `seed` (rows are
/// generated independently, so any range can be produced on its own).
pub fn batch(seed: u64, first: u64, n: usize) -> RecordBatch {
    batch_of(Shape::Whole, seed, first, n)
}

/// [`batch`] in `shape`: the real shape's rows are the whole shape's, rent
/// with cents added, and three more columns.
pub fn batch_of(shape: Shape, seed: u64, first: u64, n: usize) -> RecordBatch {
    let mut id = Int64Builder::with_capacity(n);
    let mut cols: Vec<Float64Builder> = (0..7).map(|_| Float64Builder::with_capacity(n)).collect();
    let mut flags: Vec<Int64Builder> = (0..8).map(|_| Int64Builder::with_capacity(n)).collect();
    let mut nb = StringBuilder::new();
    let mut sm = StringBuilder::new();
    let mut bo = StringBuilder::new();
    let mut real: Vec<Float64Builder> = (0..3).map(|_| Float64Builder::with_capacity(n)).collect();
    for i in 0..n as u64 {
        let row = first + i;
        let mut r = Rng::new(seed ^ row.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let s = r.below(15) as usize;
        let (sub, b) = SUBMARKETS[s];
        let k = r.below(NEIGHBORHOODS_PER_SUBMARKET as u64) as usize;
        let bedrooms = (r.below(9) as f64) * 0.5;
        let bathrooms = 1.0 + r.below(3) as f64 * 0.5 + if bedrooms >= 2.0 { 0.5 } else { 0.0 };
        let size = (350.0 + 380.0 * bedrooms + 120.0 * bathrooms + 140.0 * r.normal()).clamp(250.0, 4800.0).round();
        let mins = (r.uniform() * r.uniform() * 25.0).round();
        let floor = (r.uniform().powi(2) * 40.0).round();
        let age = (r.uniform() * 120.0).round();
        let area_effect = [600.0, 2200.0, 0.0][b] + 40.0 * s as f64 - 30.0 * k as f64;
        let mut rent = 1000.0 + 2.5 * size - 120.0 * bedrooms + 350.0 * bathrooms - 12.0 * mins + 8.0 * floor
            - 4.0 * age
            + area_effect;
        for (f, builder) in flags.iter_mut().enumerate() {
            let on = r.uniform() < FLAG_RATE[f];
            if on {
                rent += FLAG_EFFECT[f];
            }
            builder.append_value(on as i64);
        }
        rent += 400.0 * r.normal() * (1.0 + size / 2000.0);
        rent = rent.max(900.0).round();
        id.append_value(row as i64 + 1);
        cols[1].append_value(bedrooms);
        cols[2].append_value(bathrooms);
        cols[3].append_value(size);
        // A few nulls, as real exports have.
        if r.uniform() < 0.002 {
            cols[4].append_null();
        } else {
            cols[4].append_value(mins);
        }
        if r.uniform() < 0.002 {
            cols[5].append_null();
        } else {
            cols[5].append_value(floor);
        }
        cols[6].append_value(age);
        nb.append_value(format!("{} {}", sub.trim_start_matches("All "), (b'A' + k as u8) as char));
        sm.append_value(sub);
        bo.append_value(BOROUGHS[b]);
        // The real shape draws after every draw of the whole shape, so that
        // its rows are the whole shape's but for the rent.
        if shape == Shape::Real {
            // Cents, and a place: six decimals around the borough's centre.
            rent = (rent * 100.0 + r.below(100) as f64) / 100.0;
            let (lat, lon) = [(40.78, -73.97), (40.65, -73.95), (40.73, -73.82)][b];
            let missing = r.uniform() < 0.01;
            for (builder, centre) in real.iter_mut().zip([lat, lon]) {
                let v = ((centre + 0.04 * r.normal()) * 1e6).round() / 1e6;
                if missing {
                    builder.append_null();
                } else {
                    builder.append_value(v);
                }
            }
            real[2].append_value(rent / size);
        }
        cols[0].append_value(rent);
    }
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(id.finish())];
    arrays.extend(cols.iter_mut().map(|c| Arc::new(c.finish()) as ArrayRef));
    arrays.extend(flags.iter_mut().map(|c| Arc::new(c.finish()) as ArrayRef));
    arrays.push(Arc::new(nb.finish()));
    arrays.push(Arc::new(sm.finish()));
    arrays.push(Arc::new(bo.finish()));
    if shape == Shape::Real {
        arrays.extend(real.iter_mut().map(|c| Arc::new(c.finish()) as ArrayRef));
    }
    RecordBatch::try_new(schema_of(shape), arrays).expect("generated batch matches schema")
}

/// Write `rows` listings as CSV.
pub fn write_csv(path: &std::path::Path, seed: u64, first: u64, rows: u64) -> std::io::Result<()> {
    write_csv_of(path, Shape::Whole, seed, first, rows)
}

/// [`write_csv`] in `shape`.
pub fn write_csv_of(path: &std::path::Path, shape: Shape, seed: u64, first: u64, rows: u64) -> std::io::Result<()> {
    let f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(f);
    let mut done = 0;
    while done < rows {
        let n = (rows - done).min(65_536) as usize;
        w.write(&batch_of(shape, seed, first + done, n)).map_err(std::io::Error::other)?;
        done += n as u64;
    }
    let mut inner = w.into_inner();
    inner.flush()
}

/// Write `rows` listings as Parquet (snappy, row groups of `row_group` rows).
pub fn write_parquet(
    path: &std::path::Path,
    seed: u64,
    first: u64,
    rows: u64,
    row_group: usize,
) -> std::io::Result<()> {
    write_parquet_with(path, Shape::Whole, FloatPages::Dictionary, seed, first, rows, row_group)
}

/// [`write_parquet`] in `shape`, the float columns' pages encoded as `pages`.
pub fn write_parquet_with(
    path: &std::path::Path,
    shape: Shape,
    pages: FloatPages,
    seed: u64,
    first: u64,
    rows: u64,
    row_group: usize,
) -> std::io::Result<()> {
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{Compression, Encoding};
    use parquet::file::properties::WriterProperties;
    use parquet::schema::types::ColumnPath;
    let f = std::fs::File::create(path)?;
    let mut props =
        WriterProperties::builder().set_compression(Compression::SNAPPY).set_max_row_group_row_count(Some(row_group));
    let schema = schema_of(shape);
    for field in schema.fields().iter().filter(|f| f.data_type() == &DataType::Float64) {
        let col = ColumnPath::from(field.name().as_str());
        props = match pages {
            FloatPages::Dictionary => props,
            FloatPages::Plain => props.set_column_dictionary_enabled(col, false),
            FloatPages::ByteStreamSplit => props
                .set_column_dictionary_enabled(col.clone(), false)
                .set_column_encoding(col, Encoding::BYTE_STREAM_SPLIT),
        };
    }
    let mut w = ArrowWriter::try_new(f, schema, Some(props.build())).map_err(std::io::Error::other)?;
    let mut done = 0;
    while done < rows {
        let n = (rows - done).min(65_536) as usize;
        w.write(&batch_of(shape, seed, first + done, n)).map_err(std::io::Error::other)?;
        done += n as u64;
    }
    w.close().map_err(std::io::Error::other)?;
    Ok(())
}

/// Write `rows` listings as an Arrow IPC file (or stream).
pub fn write_ipc(path: &std::path::Path, seed: u64, first: u64, rows: u64, stream: bool) -> std::io::Result<()> {
    write_ipc_of(path, Shape::Whole, seed, first, rows, stream)
}

/// [`write_ipc`] in `shape`.
pub fn write_ipc_of(
    path: &std::path::Path,
    shape: Shape,
    seed: u64,
    first: u64,
    rows: u64,
    stream: bool,
) -> std::io::Result<()> {
    let f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let s = schema_of(shape);
    let mut done = 0;
    if stream {
        let mut w = arrow::ipc::writer::StreamWriter::try_new(f, &s).map_err(std::io::Error::other)?;
        while done < rows {
            let n = (rows - done).min(65_536) as usize;
            w.write(&batch_of(shape, seed, first + done, n)).map_err(std::io::Error::other)?;
            done += n as u64;
        }
        w.finish().map_err(std::io::Error::other)?;
    } else {
        let mut w = arrow::ipc::writer::FileWriter::try_new(f, &s).map_err(std::io::Error::other)?;
        while done < rows {
            let n = (rows - done).min(65_536) as usize;
            w.write(&batch_of(shape, seed, first + done, n)).map_err(std::io::Error::other)?;
            done += n as u64;
        }
        w.finish().map_err(std::io::Error::other)?;
    }
    Ok(())
}
