//! Any bytes through the reader and decoder: never a panic, never a hang,
//! and every frame handed out lies inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    _engine::engine::check_input(data);
});
