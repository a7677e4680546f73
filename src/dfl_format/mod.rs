//! DeepFaceLab's on-disk formats, read safely; nothing in them is executed.
//!
//! DeepFaceLab keeps its data as Python pickles: a face's metadata inside its image
//! ([`dfljpg`]), the sample configs of a packed faceset, a model's options and weights.
//! [`pickle`] reads the subset of pickles those files use, without importing or running
//! anything they name.

pub mod dfljpg;
pub mod pickle;

#[cfg(test)]
mod fuzz {
    //! A deterministic mutation fuzzer over the fixtures (no nightly toolchain is needed):
    //!
    //! ```text
    //! cargo test --release --lib dfl_format::fuzz -- --ignored --nocapture
    //! ```
    //!
    //! `DFL_FUZZ_INPUTS` (default 1 000 000) and `DFL_FUZZ_SEED` change the run.

    use super::dfljpg;
    use super::pickle::tests::fixture_dir;
    use super::pickle::{self, Limits};
    use std::panic;
    use std::time::{Duration, Instant};

    /// Inputs a run tries by default.
    const DEFAULT_INPUTS: u64 = 1_000_000;
    /// The generator's seed by default (any nonzero number).
    const DEFAULT_SEED: u64 = 0x5eed_df1f_0220_0001;
    /// The slowest any one input may be.
    const MAX_INPUT_TIME: Duration = Duration::from_secs(1);
    /// Opcode bytes worth inserting: every call, container, memo and length-prefixed opcode.
    const OPCODES: &[u8] = b"(.012JKMNRXabc}ehjl]qrst)uBC\x80\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x93\x94\x95\x96\x98";
    /// Numbers worth writing over length fields and counts.
    const INTERESTING: [u64; 10] =
        [0, 1, 2, 0x7f, 0x80, 0xff, 0xffff, 0x7fff_ffff, 0xffff_ffff, u64::MAX];

    /// xorshift64: a tiny, seeded, reproducible generator.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Applies random edits to a copy of a random seed: one edit half of the time, two a
    /// quarter of the time, and so on up to eight.
    fn mutate(seeds: &[Vec<u8>], rng: &mut XorShift) -> Vec<u8> {
        let mut data = seeds[rng.below(seeds.len())].clone();
        for _ in 0..=rng.next().trailing_zeros().min(7) {
            let at = rng.below(data.len() + 1);
            match rng.below(9) {
                0 if at < data.len() => data[at] ^= 1 << rng.below(8),
                1 if at < data.len() => data[at] = rng.next() as u8,
                2 => data.insert(at, OPCODES[rng.below(OPCODES.len())]),
                3 => {
                    let n = rng.below(8);
                    data.splice(at..at, (0..n).map(|_| rng.next() as u8));
                }
                4 => {
                    let end = (at + 1 + rng.below(16)).min(data.len());
                    data.drain(at.min(end)..end);
                }
                5 => {
                    let end = (at + 1 + rng.below(32)).min(data.len());
                    let chunk = data[at.min(end)..end].to_vec();
                    let to = rng.below(data.len() + 1);
                    data.splice(to..to, chunk);
                }
                6 => {
                    let other = &seeds[rng.below(seeds.len())];
                    let from = rng.below(other.len());
                    let end = (from + 1 + rng.below(64)).min(other.len());
                    data.splice(at..at, other[from..end].iter().copied());
                }
                7 => {
                    let width = [1, 2, 4, 8][rng.below(4)];
                    let bytes = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                    let bytes = if rng.below(2) == 0 { bytes } else { bytes.map(u8::reverse_bits) };
                    let end = (at + width).min(data.len());
                    data.splice(at..end, bytes[..width].iter().copied());
                }
                _ => data.truncate(at),
            }
        }
        data
    }

    /// Runs both readers; returns which accepted the input, or how an output broke its bound.
    fn check(input: &[u8]) -> Result<[bool; 2], String> {
        let bound = Limits::for_input(input.len()).max_bytes;
        let value = pickle::loads(input);
        let value_size = value.as_ref().map_or(0, pickle::Value::heap_size);
        let image = dfljpg::read(input);
        let image_size = image
            .as_ref()
            .ok()
            .and_then(|i| i.metadata.as_ref())
            .map_or(0, pickle::Value::heap_size);
        if value_size.max(image_size) > bound {
            return Err(format!(
                "{value_size} / {image_size} bytes from {} bytes of input",
                input.len()
            ));
        }
        Ok([value.is_ok(), image.is_ok()])
    }

    fn seeds() -> Vec<Vec<u8>> {
        let mut paths: Vec<_> = std::fs::read_dir(fixture_dir())
            .expect("fixture dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "pickle" || x == "jpg" || x == "png"))
            .collect();
        paths.sort();
        paths.iter().map(|p| std::fs::read(p).expect("fixture")).collect()
    }

    fn env_u64(name: &str, default: u64) -> u64 {
        std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
    }

    /// What a run saw.
    #[derive(Default)]
    struct Tally {
        inputs: u64,
        bytes: usize,
        panics: u64,
        oversized: Vec<String>,
        accepted: [u64; 2],
        slowest: Duration,
    }

    impl Tally {
        /// Runs one input, catching a panic (the input is then saved for a rerun).
        fn run(&mut self, input: &[u8]) {
            let t = Instant::now();
            match panic::catch_unwind(|| check(input)) {
                Ok(Ok(ok)) => (0..2).for_each(|k| self.accepted[k] += u64::from(ok[k])),
                Ok(Err(what)) => self.oversized.push(format!("input {}: {what}", self.inputs)),
                Err(_) => {
                    self.panics += 1;
                    let _ =
                        std::fs::write(format!("/tmp/dfl-fuzz-panic-{}.bin", self.inputs), input);
                }
            }
            self.slowest = self.slowest.max(t.elapsed());
            self.inputs += 1;
            self.bytes += input.len();
        }
    }

    #[test]
    #[ignore = "a long fuzzing run: cargo test --release --lib dfl_format::fuzz -- --ignored --nocapture"]
    fn mutated_fixtures_never_panic_nor_blow_up() {
        let inputs = env_u64("DFL_FUZZ_INPUTS", DEFAULT_INPUTS);
        let mut rng = XorShift(env_u64("DFL_FUZZ_SEED", DEFAULT_SEED).max(1));
        let seeds = seeds();
        let hook = panic::take_hook();
        panic::set_hook(Box::new(|_| {}));
        let mut tally = Tally::default();
        let start = Instant::now();
        for _ in 0..inputs {
            tally.run(&mutate(&seeds, &mut rng));
        }
        let secs = start.elapsed().as_secs_f64();
        panic::set_hook(hook);
        let Tally { panics, oversized, accepted, slowest, .. } = &tally;
        eprintln!(
            "fuzz: {inputs} inputs ({} MB) from {} seeds in {secs:.1} s, {:.0} inputs/s; \
             {panics} panics, {} over the memory bound, slowest input {slowest:?}; \
             accepted: {} as pickles, {} as images",
            tally.bytes / 1_000_000,
            seeds.len(),
            inputs as f64 / secs,
            oversized.len(),
            accepted[0],
            accepted[1],
        );
        assert_eq!(*panics, 0, "panicking inputs are saved as /tmp/dfl-fuzz-panic-<n>.bin");
        assert!(oversized.is_empty(), "{oversized:?}");
        assert!(*slowest < MAX_INPUT_TIME, "an input took {slowest:?}");
    }
}
