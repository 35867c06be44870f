//! Replays the fuzz corpus (`rust/fuzz/corpus/reader_decode`, every input the
//! fuzzer kept or found) through the reader and decoder on stable Rust, with
//! the same checks as the fuzz target.

use std::fs;
use std::path::Path;

#[test]
fn every_corpus_input_reads_and_decodes_without_a_fault() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/reader_decode");
    let mut inputs = 0;
    for entry in fs::read_dir(&dir).expect("the fuzz corpus is in the repository") {
        let path = entry.expect("a readable corpus entry").path();
        let data = fs::read(&path).expect("a readable corpus file");
        let run = std::panic::catch_unwind(|| _engine::engine::check_input(&data));
        assert!(run.is_ok(), "{} fails the checks", path.display());
        inputs += 1;
    }
    assert!(inputs > 0, "an empty corpus tests nothing");
}
