//! Embedding metadata into an image and reading it back: whatever the image bytes, an image
//! that reads gives back exactly the JSON that was embedded.
#![no_main]

use dfl::face::dflimg::{embed, read};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte says where the image ends and the metadata begins.
    let Some((&cut, rest)) = data.split_first() else { return };
    let at = usize::from(cut).min(rest.len());
    let (json, image) = rest.split_at(at);
    if read(image).is_err() {
        return;
    }
    if let Ok(with) = embed(image, json) {
        assert_eq!(read(&with).ok().flatten().as_deref(), Some(json), "round trip");
    }
});
