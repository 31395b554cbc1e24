//! Property tests: no input makes the pipeline panic, and every datagram is
//! either a request or a malformed count, never both and never neither.
//!
//! Also the short fuzzing pass: the checked-in seeds of both fuzz targets
//! and a few thousand deterministic mutations of them, through the same
//! harness `cargo fuzz` runs (`fuzz/harness.rs`; the long runs are in
//! README.md, "Fuzzing").

#[path = "../fuzz/harness.rs"]
mod harness;

use poolwatch::pipeline::{Pipeline, PipelineConfig};
use poolwatch::pools::PoolSet;
use poolwatch::record::{Decoder, INPUT_PADDING};
use proptest::prelude::*;

fn pipeline() -> Pipeline {
    Pipeline::new(&PipelineConfig {
        pools: PoolSet::new(&["blue".into(), "green".into()]),
        configured_addrs: vec![],
        window_size: 16,
        window_seconds: 4,
        serving_window: 4,
    })
}

fn feed(p: &mut Pipeline, d: &mut Decoder, bytes: &[u8], now: u64) {
    let mut buf = bytes.to_vec();
    buf.resize(bytes.len() + INPUT_PADDING, 0xAA);
    let _ = p.process(d, &mut buf, bytes.len(), |_| now);
    // Padding is the decoder's scratch only in reads: never rewritten.
    assert!(buf[bytes.len()..].iter().all(|&b| b == 0xAA));
}

fn accounted(p: &Pipeline) -> bool {
    p.totals.request_count() + p.totals.malformed_count() == p.totals.datagrams
}

const LINE: &str = r#"<190>Nov  5 09:07:03 web nginx: {"time":"2026-11-05T09:07:03+00:00","status":200,"request_time":0.012,"upstream_status":"500, 200 : 404","upstream_addr":"127.0.0.1:1, 127.0.0.1:2 : backend","upstream_response_time":"0.001, 0.010 : -","pool":"green","release":"g","uri":"/a\u00e9\"b"}"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut p = pipeline();
        feed(&mut p, &mut Decoder::new(), &bytes, 0);
        prop_assert!(accounted(&p));
    }

    #[test]
    fn mutated_lines_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
        now in 0u64..10_000,
    ) {
        let mut bytes = LINE.as_bytes().to_vec();
        for (at, byte, op) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => { bytes.remove(i); }
                _ => bytes.insert(i, byte),
            }
        }
        let mut p = pipeline();
        let mut d = Decoder::new();
        feed(&mut p, &mut d, &bytes, now);
        // The decoder stays usable after any input.
        feed(&mut p, &mut d, LINE.as_bytes(), now + 1);
        prop_assert!(accounted(&p));
        prop_assert!(p.totals.request_count() >= 1);
    }

    #[test]
    fn text_made_of_json_and_syslog_tokens_never_panics(
        parts in proptest::collection::vec(
            prop::sample::select(vec![
                "<190>", "<1>", "1 ", "Nov  5 09:07:03 ", "host ", "nginx: ", "{", "}", "[", "]",
                "\"status\":", "\"upstream_status\":", "\"upstream_addr\":", "\"pool\":",
                "200", "\"500, 200\"", "\" : \"", "\"-\"", "\"\"", ",", ":", "\\u00ff", "\\",
                "\"", "1e999", "-1", "null", "true", "\u{fffd}", "\u{0}",
            ]),
            0..40,
        )
    ) {
        let text = parts.concat();
        let mut p = pipeline();
        feed(&mut p, &mut Decoder::new(), text.as_bytes(), 0);
        prop_assert!(accounted(&p));
    }
}

/// Mutations of each seed per target: a few seconds in a debug build.
/// `FUZZ_MUTATIONS_PER_SEED` asks for more (a long run without cargo-fuzz:
/// `FUZZ_MUTATIONS_PER_SEED=400000 cargo test --release --test bad_input fuzz`).
const MUTATIONS_PER_SEED: usize = 300;

fn mutations_per_seed() -> usize {
    std::env::var("FUZZ_MUTATIONS_PER_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MUTATIONS_PER_SEED)
}

/// Values that have broken parsers of this kind before.
const TOKENS: [&[u8]; 14] = [
    b"1e308",
    b"-1",
    b"NaN",
    b"\"inf\"",
    b"9999-12-31T23:59:59Z",
    b"\\x22",
    b"\xff\xfe",
    b", ",
    b" : ",
    b"\"",
    b"{",
    b"}",
    b"\n",
    &[harness::SEPARATOR],
];

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 2, "seeds of {target}");
    seeds
}

/// One deterministic mutation of `seed`: flips, inserts, deletes, token
/// splices, duplications and crossovers with `other`.
fn mutate(seed: &[u8], other: &[u8], rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.usize(1..6) {
        let at = rng.usize(..=v.len());
        match rng.u8(..7) {
            0 if !v.is_empty() => {
                let i = rng.usize(..v.len());
                v[i] = rng.u8(..);
            }
            1 if at < v.len() => {
                let end = rng.usize(at..=v.len().min(at + 16));
                v.drain(at..end);
            }
            2 => {
                let t = TOKENS[rng.usize(..TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            3 => {
                let end = rng.usize(at..=v.len());
                let copy = v[at..end].to_vec();
                v.splice(at..at, copy.into_iter().cycle().take(rng.usize(..200)));
            }
            4 if !other.is_empty() => {
                let from = rng.usize(..other.len());
                v.splice(at..at, other[from..].iter().copied().take(rng.usize(..400)));
            }
            5 => v.truncate(at),
            _ => v.insert(at.min(v.len()), rng.u8(..)),
        }
    }
    v
}

fn short_pass(target: &str, run: fn(&[u8])) -> usize {
    let seeds = seeds(target);
    let mut rng = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
    for (i, seed) in seeds.iter().enumerate() {
        run(seed);
        let other = &seeds[(i + 1) % seeds.len()];
        for _ in 0..mutations_per_seed() {
            run(&mutate(seed, other, &mut rng));
        }
    }
    seeds.len() * (1 + mutations_per_seed())
}

#[test]
fn fuzz_short_pass_datagrams() {
    let inputs = short_pass("datagram", harness::datagram);
    eprintln!("fuzz short pass: {inputs} datagram inputs, no panic");
}

#[test]
fn fuzz_short_pass_replay_lines() {
    let inputs = short_pass("replay_lines", harness::replay_lines);
    eprintln!("fuzz short pass: {inputs} replay inputs, no panic");
}
