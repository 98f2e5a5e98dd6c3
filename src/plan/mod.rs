//! Planning: which hosts, in which batches, in which order; and its rendering.

pub mod batches;
pub mod estimate;
pub mod render;
pub mod select;
pub mod window;
