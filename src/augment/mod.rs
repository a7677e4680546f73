//! Training-sample augmentation shared by the trainers (`dfl train`, `dfl xseg train`): the
//! geometry of a sample (fit to the model, DFL's random warp, affine and flip: [`warp`]), colour
//! shifts ([`hsv`]) and the image degradations XSeg trains against ([`degrade`]).

pub mod degrade;
pub mod hsv;
pub mod warp;
