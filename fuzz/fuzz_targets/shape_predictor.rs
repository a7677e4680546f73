//! dlib's shape-predictor file format: any bytes load as a model or give an error, and a model
//! that loads predicts on any box without going out of bounds.
#![no_main]

use dfl::face::shape_predictor::{DlibRect, GrayImage, ShapePredictor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = ShapePredictor::from_bytes(data) else { return };
    let pixels = [128u8; 24 * 24];
    let gray = GrayImage { data: &pixels, width: 24, height: 24 };
    for rect in [
        DlibRect { left: 0, top: 0, right: 16, bottom: 16 },
        DlibRect { left: -40, top: 30, right: 90, bottom: 31 },
    ] {
        let points = model.predict(&gray, rect);
        assert_eq!(points.len(), model.num_parts());
    }
});
