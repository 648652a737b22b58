//! Shared input types and checks of the fuzz targets. The same file is
//! compiled into `locker-core/tests/fuzz_corpus.rs`, which replays the
//! committed corpora and regressions without a fuzzer.

pub mod checks;
