#!/usr/bin/env python3
"""Write the same table the way the world's tools write it, for gramfit's
corpus test (tests/it/corpus.rs).

    python3 tests/corpus/make_corpus.py STREETEASY_CSV OUTDIR

The table is the StreetEasy listings (5,000 rows, from ../shared/datasets)
with a rent in cents (not a whole number) and nulls in every column the
model uses. It is written by pyarrow (Parquet v1 and v2 pages, dictionary
on and off, PLAIN_DICTIONARY as format 1.0 writes it, a dictionary that
overflows into PLAIN pages mid-chunk, BYTE_STREAM_SPLIT and DELTA
encodings, every codec, page checksums, tiny pages and row groups, unused
INT96, nested and repeated columns), by DuckDB's and polars' own Parquet
writers, as Arrow IPC files and streams in each compression, and as CSV in
each compression and dialect (pandas' NA, R's NA, semicolons with decimal
commas, CRLF, a BOM, quoted commas and newlines). Damaged variants follow.

OUTDIR/manifest.json lists every file:
  {"file", "writer", "chunking" ("whole": every row in one work unit, so the
   sums are merged in the same order as the reference file's and the fit is
   bit-identical; else "other"), "expect" ("fit" | "error"), "error" (text
   the message must contain), "args" (extra gramfit arguments)}
and the reference file and the models.

Needs pyarrow, duckdb, polars, pandas (installed by scripts/test.sh).
"""
import bz2
import json
import lzma
import os
import sys

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

MODEL = "rent_c ~ size_sqft + bedrooms + min_to_subway + has_washer_dryer + no_fee + C(borough)"
USED = ["rent_c", "size_sqft", "bedrooms", "min_to_subway", "has_washer_dryer", "no_fee", "borough"]


def base_table(csv_path):
    df = pd.read_csv(csv_path)
    n = len(df)
    i = np.arange(n)
    cols = {}
    # Rent in cents: not a whole number, and ~600 distinct values per 1,000
    # rows (dictionaries are large, some writers fall back to PLAIN).
    cols["rent_c"] = pa.array(df["rent"].to_numpy() + (df["rental_id"].to_numpy() % 97) / 100.0, pa.float64())
    cols["size_sqft"] = pa.array(df["size_sqft"].to_numpy(), pa.int64())
    cols["bedrooms"] = pa.array(df["bedrooms"].to_numpy(dtype=float), pa.float64())
    cols["min_to_subway"] = pa.array(df["min_to_subway"].to_numpy(), pa.int64())
    cols["has_washer_dryer"] = pa.array(df["has_washer_dryer"].to_numpy(), pa.int64())
    cols["no_fee"] = pa.array(df["no_fee"].to_numpy(), pa.int64())
    cols["borough"] = pa.array(df["borough"].astype(str).to_list(), pa.string())
    cols["neighborhood"] = pa.array(df["neighborhood"].astype(str).to_list(), pa.string())
    # A free-text column with commas, quotes and newlines (not used).
    notes = [f'unit {k}, "quiet"\nfloor {k % 7}' if k % 5 == 0 else f"unit {k}" for k in range(n)]
    cols["note"] = pa.array(notes, pa.string())
    # Nulls everywhere: each used column misses a different ~3% of rows.
    for j, c in enumerate(USED):
        mask = ((i * (j + 3) + 7 * j) % 31) == 0
        cols[c] = pa.array([None if m else v for m, v in zip(mask, cols[c].to_pylist())], cols[c].type)
    return pa.table(cols)


def with_extras(t):
    """Columns the model does not use but a reader must pass over: INT96
    timestamps, a list and a struct column."""
    n = t.num_rows
    ts = pa.array((np.arange(n) + 1_600_000_000).astype("datetime64[s]").astype("datetime64[ns]"))
    lists = pa.array([[k, k + 1] if k % 3 else [] for k in range(n)], pa.list_(pa.int64()))
    structs = pa.array([{"a": k, "b": str(k)} for k in range(n)], pa.struct([("a", pa.int64()), ("b", pa.string())]))
    return t.append_column("seen_at", ts).append_column("tags", lists).append_column("meta", structs)


def types_table(t):
    """Every type a schema from the world may give the model's columns, each
    beside a float64 reference of the same values (pyarrow's conversion)."""
    n = t.num_rows
    i = np.arange(n)
    y = pa.array((t["rent_c"].to_numpy(zero_copy_only=False)), pa.float64())
    y = pa.array(np.nan_to_num(y.to_numpy(zero_copy_only=False), nan=3000.0))
    cents = np.round((i % 997) * 1.37 + 5, 2)
    dec = pa.array([f"{v:.2f}" for v in cents]).cast(pa.decimal128(9, 2))
    dec256 = pa.array([f"{v:.2f}" for v in cents[::-1]]).cast(pa.decimal256(40, 2))
    dec18 = pa.array([f"{v * 1000:.2f}" for v in cents[::3].repeat(3)[:n]]).cast(pa.decimal128(18, 2))
    f32 = pa.array((i % 113) * 0.25 + 1, pa.float32())
    f16 = pa.array(((i % 29) * 0.5).astype(np.float16), pa.float16())
    i8 = pa.array((i % 100) - 50, pa.int8())
    i16 = pa.array((i % 3000) - 1500, pa.int16())
    i32 = pa.array(i * 7 % 100000, pa.int32())
    u8 = pa.array(i % 200, pa.uint8())
    u16 = pa.array(i % 60000, pa.uint16())
    u32 = pa.array(i * 13 % 4000000, pa.uint32())
    u64 = pa.array(i * 17 % 5000000, pa.uint64())
    flag = pa.array((i % 5) == 0, pa.bool_())
    large = pa.array([["north", "south", "east"][k % 3] for k in range(n)], pa.large_string())
    dictionary = pa.array([["a", "b", "c", "d"][k % 4] for k in range(n)]).dictionary_encode()
    cols = {
        "y": y,
        "a_dec": dec, "a_dec256": dec256, "a_dec18": dec18, "a_f32": f32, "a_f16": f16, "a_i8": i8, "a_i16": i16, "a_i32": i32,
        "a_u8": u8, "a_u16": u16, "a_u32": u32, "a_u64": u64, "a_bool": flag, "a_large": large, "a_dict": dictionary,
        "a_date": pa.array((np.arange(n) + 18_000).astype("datetime64[D]")),
        "a_ts": pa.array((np.arange(n) + 1_600_000_000).astype("datetime64[s]").astype("datetime64[ms]")),
    }
    for k in ["a_dec", "a_dec256", "a_dec18", "a_f32", "a_f16", "a_i8", "a_i16", "a_i32", "a_u8", "a_u16", "a_u32", "a_u64"]:
        cols["r" + k[1:]] = cols[k].cast(pa.float64())
    cols["r_bool"] = pa.array(["T" if v else "F" for v in flag.to_pylist()], pa.string())
    cols["r_large"] = large.cast(pa.string())
    cols["r_dict"] = dictionary.cast(pa.string())
    return pa.table(cols)


TYPES_NUMERIC = ["dec", "dec256", "dec18", "f32", "f16", "i8", "i16", "i32", "u8", "u16", "u32", "u64"]


def flip(path, at, count=8):
    with open(path, "r+b") as f:
        f.seek(at)
        b = bytearray(f.read(count))
        f.seek(at)
        f.write(bytes(x ^ 0x5A for x in b))


def chunk_middle(path, column):
    """A byte in the middle of the first row group's chunk of `column`."""
    md = pq.ParquetFile(path).metadata
    rg = md.row_group(0)
    for c in range(rg.num_columns):
        cc = rg.column(c)
        if cc.path_in_schema == column:
            start = cc.dictionary_page_offset if cc.has_dictionary_page else cc.data_page_offset
            return start + cc.total_compressed_size // 2
    raise KeyError(column)


def main():
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    t = base_table(src)
    files = []

    def add(name, writer, chunking="other", expect="fit", error=None, args=None, model=None):
        files.append({"file": name, "writer": writer, "chunking": chunking, "expect": expect,
                      "error": error, "args": args or [], "model": model})

    p = lambda name: os.path.join(out, name)

    # The reference: an uncompressed Arrow IPC file, read by arrow-rs.
    feather.write_feather(t, p("reference.arrow"), compression="uncompressed")

    # pyarrow Parquet, one row group (same chunking as the reference).
    for codec in ["none", "snappy", "gzip", "brotli", "lz4", "zstd"]:
        for version, page in [("1.0", "1.0"), ("2.6", "1.0"), ("2.6", "2.0")]:
            name = f"pyarrow-{codec}-v{version}-page{page}.parquet"
            pq.write_table(t, p(name), compression=codec, version=version, data_page_version=page)
            add(name, f"pyarrow {codec}, format {version}, data pages v{page}", "whole")
    pq.write_table(t, p("pyarrow-nodict.parquet"), use_dictionary=False, compression="snappy")
    add("pyarrow-nodict.parquet", "pyarrow, dictionary off (PLAIN pages)", "whole")
    pq.write_table(t, p("pyarrow-dict-overflow.parquet"), dictionary_pagesize_limit=256, data_page_size=512)
    add("pyarrow-dict-overflow.parquet", "pyarrow, dictionary falls back to PLAIN mid-chunk", "whole")
    pq.write_table(t, p("pyarrow-byte-stream-split.parquet"), use_dictionary=False, compression="lz4",
                   data_page_version="2.0",
                   column_encoding={"rent_c": "BYTE_STREAM_SPLIT", "bedrooms": "BYTE_STREAM_SPLIT",
                                    "size_sqft": "DELTA_BINARY_PACKED", "min_to_subway": "DELTA_BINARY_PACKED",
                                    "has_washer_dryer": "DELTA_BINARY_PACKED", "no_fee": "BYTE_STREAM_SPLIT",
                                    "borough": "DELTA_BYTE_ARRAY", "neighborhood": "DELTA_LENGTH_BYTE_ARRAY"})
    add("pyarrow-byte-stream-split.parquet", "pyarrow, BYTE_STREAM_SPLIT and DELTA encodings, lz4, v2 pages", "whole")
    pq.write_table(t, p("pyarrow-checksums.parquet"), write_page_checksum=True)
    add("pyarrow-checksums.parquet", "pyarrow, page checksums", "whole")
    pq.write_table(with_extras(t), p("pyarrow-extras.parquet"), use_deprecated_int96_timestamps=True)
    add("pyarrow-extras.parquet", "pyarrow, unused INT96, list and struct columns", "whole")
    pq.write_table(t, p("pyarrow-tiny.parquet"), row_group_size=700, data_page_size=128, write_batch_size=50,
                   compression="zstd", write_page_checksum=True)
    add("pyarrow-tiny.parquet", "pyarrow, row groups of 700 rows, pages of ~128 bytes, checksums")
    pq.write_table(t, p("pyarrow-groups-v1.parquet"), row_group_size=1000, version="1.0", data_page_size=2048)
    add("pyarrow-groups-v1.parquet", "pyarrow, format 1.0 (PLAIN_DICTIONARY), row groups of 1000")

    # DuckDB's writer.
    con = duckdb.connect()
    con.register("t", t)
    for codec in ["snappy", "zstd", "gzip", "uncompressed", "lz4", "brotli"]:
        name = f"duckdb-{codec}.parquet"
        con.execute(f"COPY (SELECT * FROM t) TO '{p(name)}' (FORMAT PARQUET, COMPRESSION '{codec}')")
        add(name, f"DuckDB {duckdb.__version__} COPY, {codec}", "whole")
    con.execute(f"COPY (SELECT * FROM t) TO '{p('duckdb-v2-groups.parquet')}' "
                "(FORMAT PARQUET, PARQUET_VERSION V2, ROW_GROUP_SIZE 2048)")
    add("duckdb-v2-groups.parquet", "DuckDB, Parquet V2, row groups of 2048")

    # polars' writer.
    df = pl.from_arrow(t)
    for codec in ["zstd", "snappy", "lz4", "gzip", "brotli", "uncompressed"]:
        name = f"polars-{codec}.parquet"
        df.write_parquet(p(name), compression=codec)
        add(name, f"polars {pl.__version__}, {codec}", "whole")
    df.write_parquet(p("polars-groups.parquet"), row_group_size=1500, data_page_size=1024)
    add("polars-groups.parquet", "polars, row groups of 1500, small pages")

    # Arrow IPC files and streams.
    for codec in ["uncompressed", "lz4", "zstd"]:
        name = f"feather-{codec}.feather"
        feather.write_feather(t, p(name), compression=codec)
        add(name, f"pyarrow feather, {codec}", "whole")
    pd_df = t.to_pandas()
    pd_df.to_feather(p("pandas.feather"))
    add("pandas.feather", "pandas to_feather (lz4 frames)", "whole")
    for codec in [None, "lz4", "zstd"]:
        name = f"stream-{codec or 'none'}.arrows"
        opts = ipc.IpcWriteOptions(compression=codec)
        with ipc.new_stream(p(name), t.schema, options=opts) as w:
            for b in t.to_batches(max_chunksize=777):
                w.write_batch(b)
        add(name, f"pyarrow IPC stream, {codec or 'uncompressed'}, batches of 777", "whole")

    # CSV: pyarrow (empty cells), pandas (NA as R writes it), compressions.
    pacsv.write_csv(t, p("pyarrow.csv"))
    add("pyarrow.csv", "pyarrow write_csv (empty cells)", "whole")
    pd_df.to_csv(p("pandas-na.csv"), index=False, na_rep="NA")
    add("pandas-na.csv", "pandas to_csv, na_rep='NA' (as R's write.csv)", "whole")
    pd_df.to_csv(p("pandas-crlf-bom.csv"), index=False, na_rep="N/A", lineterminator="\r\n", encoding="utf-8-sig")
    add("pandas-crlf-bom.csv", "pandas, CRLF, UTF-8 BOM, N/A", "whole")
    pd_df.to_csv(p("european.csv"), index=False, sep=";", decimal=",", na_rep="")
    add("european.csv", "pandas sep=';', decimal=',' (sniffed delimiter)", "whole", args=["--decimal", ","])
    pd_df.to_csv(p("european-explicit.csv"), index=False, sep=";", decimal=",", na_rep="")
    add("european-explicit.csv", "pandas sep=';', decimal=',' (--delimiter ';')", "whole",
        args=["--decimal", ",", "--delimiter", ";"])
    pd_df.to_csv(p("tabs.tsv"), index=False, sep="\t", na_rep="NULL")
    add("tabs.tsv", "pandas sep='\\t', NULL", "whole")
    text = open(p("pyarrow.csv"), "rb").read()
    with pa.CompressedOutputStream(p("pyarrow.csv.gz"), "gzip") as f:
        f.write(text)
    add("pyarrow.csv.gz", "CSV, gzip", "whole")
    with pa.CompressedOutputStream(p("pyarrow.csv.zst"), "zstd") as f:
        f.write(text)
    add("pyarrow.csv.zst", "CSV, zstd", "whole")
    with open(p("pyarrow.csv.bz2"), "wb") as f:
        f.write(bz2.compress(text))
    add("pyarrow.csv.bz2", "CSV, bzip2", "whole")
    with open(p("pyarrow.csv.xz"), "wb") as f:
        f.write(lzma.compress(text))
    add("pyarrow.csv.xz", "CSV, xz", "whole")

    # Types from real schemas.
    tt = types_table(t)
    pq.write_table(tt, p("types.parquet"))
    # Decimals stored as INT32 / INT64 (precision ≤ 9 / ≤ 18) rather than
    # fixed-length byte arrays.
    pq.write_table(tt, p("types-int-decimals.parquet"), store_decimal_as_integer=True)
    feather.write_feather(tt, p("types.arrow"), compression="zstd")
    # Damaged variants: each must be refused, naming the file.
    damaged = [
        ("damaged-checksum-float.parquet", "rent_c", dict(write_page_checksum=True, compression="none"),
         "column 'rent_c'"),
        ("damaged-checksum-flag.parquet", "has_washer_dryer", dict(write_page_checksum=True, compression="none"),
         "column 'has_washer_dryer'"),
        ("damaged-checksum-plain.parquet", "size_sqft",
         dict(write_page_checksum=True, compression="none", use_dictionary=False), "column 'size_sqft'"),
        ("damaged-checksum-zstd.parquet", "bedrooms", dict(write_page_checksum=True, compression="zstd"),
         "column 'bedrooms'"),
        ("damaged-gzip.parquet", "size_sqft", dict(compression="gzip", use_dictionary=False), "column 'size_sqft'"),
    ]
    for name, column, kw, msg in damaged:
        pq.write_table(t, p(name), **kw)
        flip(p(name), chunk_middle(p(name), column))
        add(name, f"pyarrow {kw}, 8 bytes flipped in a page of {column}", expect="error", error=msg)
    pq.write_table(t, p("damaged-truncated.parquet"))
    size = os.path.getsize(p("damaged-truncated.parquet"))
    with open(p("damaged-truncated.parquet"), "r+b") as f:
        f.truncate(size - 100)
    add("damaged-truncated.parquet", "pyarrow, last 100 bytes cut (the footer)", expect="error", error="Parquet")
    pq.write_table(t, p("damaged-magic.parquet"))
    size = os.path.getsize(p("damaged-magic.parquet"))
    with open(p("damaged-magic.parquet"), "r+b") as f:
        f.seek(size - 4)
        f.write(b"PAR0")
    add("damaged-magic.parquet", "pyarrow, wrong magic at the end", expect="error", error="Parquet")
    data = bytearray(open(p("pyarrow.csv.gz"), "rb").read())
    for k in range(len(data) // 2, len(data) // 2 + 8):
        data[k] ^= 0x5A
    open(p("damaged.csv.gz"), "wb").write(bytes(data))
    add("damaged.csv.gz", "CSV gzip with 8 bytes flipped", expect="error", error="damaged.csv.gz")

    manifest = {
        "model": MODEL,
        "reference": "reference.arrow",
        "files": files,
        "types": {"files": ["types.parquet", "types-int-decimals.parquet", "types.arrow"], "numeric": TYPES_NUMERIC,
                  "categorical": ["bool", "large", "dict"], "dates": ["a_date", "a_ts"]},
        "versions": {"pyarrow": pa.__version__, "duckdb": duckdb.__version__, "polars": pl.__version__,
                     "pandas": pd.__version__},
    }
    with open(p("manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
