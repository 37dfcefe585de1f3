pub mod float_array;
pub mod halfvec;
pub mod model_value;
pub mod regclass;
pub mod vector;
pub mod vector_array;
