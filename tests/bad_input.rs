//! Property tests: no input makes the pipeline panic, and every datagram is
//! either a request or a malformed count, never both and never neither.

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
