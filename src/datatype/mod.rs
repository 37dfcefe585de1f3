//! SQL data types embedstack reads or writes.
pub mod float_array;
pub mod vector;
pub mod vector_array;
