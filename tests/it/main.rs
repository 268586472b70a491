//! gramfit's integration tests: one binary, a module per capability.
//! Reference data come from `../shared/datasets` (override with
//! `GRAMFIT_SHARED_DATASETS`); tests that need them fail loudly when the
//! folder is missing.

mod absorbed;
mod bounds;
mod cli;
mod common;
mod comparators;
mod corpus;
mod csv_dialects;
mod csv_parallel;
mod elementary;
mod engine;
mod estimated;
mod formula;
mod interrupt;
mod isa;
mod laws;
mod nist;
mod parquet_bits;
mod parquet_booleans;
mod parquet_fallback;
mod parquet_floats;
mod parts;
mod peers;
mod predict;
mod report_scale;
mod second_pass;
mod slices;
mod state;
mod state_mutation;
mod state_safety;
mod statsmodels;
