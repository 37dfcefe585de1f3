pub mod float_array;
pub mod halfvec;
pub mod model_value;
pub mod pgvector_types;
pub mod raw_array;
pub mod regclass;
pub mod vector;
pub mod vector_array;
