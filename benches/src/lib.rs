//! Load generator and micro-benchmarks for convene.
#![forbid(unsafe_code)]
