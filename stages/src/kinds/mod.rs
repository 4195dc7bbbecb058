//! One module per stage kind, named after the kind.

pub mod encode;
pub mod ensemble;
pub mod evaluate;
pub mod export;
pub mod ingest;
pub mod popularity;
pub mod sample;
pub mod split_last_click;
pub mod synth;
pub mod youtube_dnn;
