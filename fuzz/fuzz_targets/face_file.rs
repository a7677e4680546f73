//! A face file's bytes, as every stage reads them: the container (JPEG APP15 or PNG iTXt),
//! the JSON inside, and the checks on every field. Any input gives a face or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dfl::face::metadata::parse_metadata(std::path::Path::new("fuzz.jpg"), data);
});
