//! Per-line cost of the receive path: frame, decode, fold into the windows.
//!
//! Compares the shipped path (simd-json's tape, decoded in place, see
//! `src/record.rs`) with the same steps done the common way, serde_json into
//! a borrowed struct, and with simd-json's own serde API into that struct,
//! on realistic lines from the load generator: half steady traffic, half a
//! failover in which most requests carry a retry. Each line is first copied
//! into a padded buffer, as a datagram lands in a receive slot; every path
//! pays that copy, so the difference is decoding.
//!
//! Run with `cargo bench --bench per_line`; throughput is in lines. The
//! paired rounds end with the shipped path against the floor (copy, frame
//! and simd-json's tape build alone), and whether it is within the 1.5×
//! the receive path is held to.

use std::borrow::Cow;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use poolwatch::loadgen::lines::{self, Scenario};
use poolwatch::pipeline::{Pipeline, PipelineConfig};
use poolwatch::record::{AccessRecord, Decoder, INPUT_PADDING};
use poolwatch::syslog;
use serde::Deserialize;

/// How far the shipped path may be from the floor: the tape walk and the
/// window update must cost less than half of what simd-json itself does.
const FLOOR_LIMIT: f64 = 1.5;

/// Window clock for every line: a constant, so neither path pays for
/// buckets rolling over.
const NOW: u64 = 1;

/// The access record as a serde user would declare it: strings borrowed
/// from the input unless they hold escapes.
#[derive(Deserialize)]
struct SerdeRecord<'a> {
    #[serde(borrow, default)]
    time: Cow<'a, str>,
    #[serde(borrow, default)]
    remote_addr: Cow<'a, str>,
    #[serde(borrow, default)]
    request: Cow<'a, str>,
    #[serde(borrow, default)]
    method: Cow<'a, str>,
    #[serde(borrow, default)]
    uri: Cow<'a, str>,
    status: u16,
    #[serde(default)]
    body_bytes_sent: u64,
    #[serde(default)]
    request_time: Option<f64>,
    #[serde(borrow, default)]
    upstream_status: Cow<'a, str>,
    #[serde(borrow, default)]
    upstream_addr: Cow<'a, str>,
    #[serde(borrow, default)]
    upstream_response_time: Cow<'a, str>,
    #[serde(borrow, default)]
    pool: Cow<'a, str>,
    #[serde(borrow, default)]
    release: Cow<'a, str>,
    #[serde(borrow, default)]
    request_id: Cow<'a, str>,
    #[serde(borrow, default)]
    http_user_agent: Cow<'a, str>,
}

impl SerdeRecord<'_> {
    fn access_record(&self) -> AccessRecord<'_> {
        AccessRecord {
            time: &self.time,
            remote_addr: &self.remote_addr,
            request: &self.request,
            method: &self.method,
            uri: &self.uri,
            status: self.status,
            body_bytes_sent: self.body_bytes_sent,
            request_time: self.request_time,
            upstream_status: &self.upstream_status,
            upstream_addr: &self.upstream_addr,
            upstream_response_time: &self.upstream_response_time,
            pool: &self.pool,
            release: &self.release,
            request_id: &self.request_id,
            http_user_agent: &self.http_user_agent,
            repaired_utf8: false,
        }
    }
}

fn pipeline() -> Pipeline {
    Pipeline::new(&PipelineConfig::default())
}

/// Steady and failover lines, interleaved.
fn corpus() -> Vec<Vec<u8>> {
    let steady = lines::generate(Scenario::Steady, 2048, 1);
    let failover = lines::generate(Scenario::Failover, 2048, 2);
    steady
        .into_iter()
        .zip(failover)
        .flat_map(|(a, b)| [a, b])
        .collect()
}

/// The shipped path: `Pipeline::process` on the datagram in place.
fn tape_path(p: &mut Pipeline, d: &mut Decoder, buf: &mut [u8], line: &[u8]) {
    buf[..line.len()].copy_from_slice(line);
    let r = p.process(d, buf, line.len(), |_| NOW);
    debug_assert!(r.is_ok());
}

/// The same steps with serde_json.
fn serde_path(p: &mut Pipeline, buf: &mut [u8], line: &[u8]) {
    buf[..line.len()].copy_from_slice(line);
    let frame = syslog::parse(&buf[..line.len()]).expect("frames");
    let rec: SerdeRecord<'_> = serde_json::from_slice(&buf[frame.msg]).expect("decodes");
    p.apply(&rec.access_record(), NOW);
}

/// The same steps with simd-json's serde API into the same struct, its
/// buffers reused: the simd-json path most users would write first.
fn simd_serde_path(p: &mut Pipeline, bufs: &mut simd_json::Buffers, buf: &mut [u8], line: &[u8]) {
    buf[..line.len()].copy_from_slice(line);
    let frame = syslog::parse(&buf[..line.len()]).expect("frames");
    let rec: SerdeRecord<'_> =
        simd_json::serde::from_slice_with_buffers(&mut buf[frame.msg], bufs).expect("decodes");
    p.apply(&rec.access_record(), NOW);
}

/// Not a path: only the copy, the frame and simd-json's tape build, with
/// nothing read from the tape and no windows. What the shipped path can
/// never go below while it uses simd-json's tape.
fn tape_floor(
    bufs: &mut simd_json::Buffers,
    tape: &mut simd_json::Tape<'static>,
    buf: &mut [u8],
    line: &[u8],
) {
    buf[..line.len()].copy_from_slice(line);
    let frame = syslog::parse(&buf[..line.len()]).expect("frames");
    let mut t = std::mem::replace(tape, simd_json::Tape::null()).reset();
    let len = frame.msg.len();
    simd_json::fill_tape_padded(&mut buf[frame.msg.start..], len, bufs, &mut t).expect("parses");
    black_box(t.0.len());
    *tape = t.reset();
}

/// The ways to run the path, as one type for the paired rounds.
#[derive(Clone, Copy)]
enum Path {
    Tape,
    SimdSerde,
    SerdeJson,
    Floor,
}

fn per_line(c: &mut Criterion) {
    let lines = corpus();
    let longest = lines.iter().map(Vec::len).max().unwrap_or(0);
    let mut buf = vec![0u8; longest + INPUT_PADDING];

    // All paths must reach the same totals, or the comparison is moot.
    let (mut a, mut b, mut s) = (pipeline(), pipeline(), pipeline());
    let mut d = Decoder::new();
    let mut bufs = simd_json::Buffers::default();
    for line in &lines {
        tape_path(&mut a, &mut d, &mut buf, line);
        serde_path(&mut b, &mut buf, line);
        simd_serde_path(&mut s, &mut bufs, &mut buf, line);
    }
    assert_eq!(a.totals.malformed_count(), 0);
    for other in [&b, &s] {
        assert_eq!(a.totals.requests, other.totals.requests);
        assert_eq!(a.totals.attempts, other.totals.attempts);
        assert_eq!(a.totals.retried, other.totals.retried);
    }
    let mean = lines.iter().map(Vec::len).sum::<usize>() / lines.len();
    println!(
        "per_line: {} lines, mean {mean} bytes, {} retried",
        lines.len(),
        a.totals.retried.iter().flatten().sum::<u64>()
    );

    let mut g = c.benchmark_group("per_line");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("simd_json_tape", |bench| {
        let mut p = pipeline();
        let mut d = Decoder::new();
        bench.iter(|| {
            for line in &lines {
                tape_path(&mut p, &mut d, &mut buf, black_box(line));
            }
        });
        black_box(p.totals.datagrams);
    });
    g.bench_function("serde_json", |bench| {
        let mut p = pipeline();
        bench.iter(|| {
            for line in &lines {
                serde_path(&mut p, &mut buf, black_box(line));
            }
        });
        black_box(p.totals.request_count());
    });
    g.bench_function("simd_json_serde", |bench| {
        let mut p = pipeline();
        let mut bufs = simd_json::Buffers::default();
        bench.iter(|| {
            for line in &lines {
                simd_serde_path(&mut p, &mut bufs, &mut buf, black_box(line));
            }
        });
        black_box(p.totals.request_count());
    });
    g.finish();
    // `cargo test --benches` runs each benchmark once, without `--bench`.
    if std::env::args().any(|a| a == "--bench") {
        paired(&lines, &mut buf);
    }
}

/// The ratios again, from rounds that run the paths back to back:
/// on a shared, noisy machine all see the same conditions, which the
/// separate criterion runs above cannot promise.
fn paired(lines: &[Vec<u8>], buf: &mut [u8]) {
    let mut pipelines = [pipeline(), pipeline(), pipeline()];
    let mut d = Decoder::new();
    let mut bufs = simd_json::Buffers::default();
    let mut tape = simd_json::Tape::null();
    let mut time = |path: Path| {
        let p = &mut pipelines[(path as usize).min(2)];
        let t = Instant::now();
        for line in lines {
            match path {
                Path::Tape => tape_path(p, &mut d, buf, black_box(line)),
                Path::SimdSerde => simd_serde_path(p, &mut bufs, buf, black_box(line)),
                Path::SerdeJson => serde_path(p, buf, black_box(line)),
                Path::Floor => tape_floor(&mut bufs, &mut tape, buf, black_box(line)),
            }
        }
        t.elapsed().as_secs_f64()
    };
    let paths = [Path::Tape, Path::SimdSerde, Path::SerdeJson, Path::Floor];
    let mut secs: [Vec<f64>; 4] = Default::default();
    let (mut ratio, mut serde_ratio, mut floor_ratio) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..301 {
        // Rotate which goes first, so none always runs on a warm cache.
        let mut t = [0.0; 4];
        for k in 0..4 {
            let path = paths[(round + k) % 4];
            t[path as usize] = time(path);
        }
        for (v, x) in secs.iter_mut().zip(t) {
            v.push(x);
        }
        ratio.push(t[Path::SerdeJson as usize] / t[Path::Tape as usize]);
        serde_ratio.push(t[Path::SerdeJson as usize] / t[Path::SimdSerde as usize]);
        floor_ratio.push(t[Path::Tape as usize] / t[Path::Floor as usize]);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let per_line = |secs: f64| secs * 1e9 / lines.len() as f64;
    let [tape, simd_serde, serde, floor] = &mut secs;
    let floor = per_line(median(floor));
    let serde_ns = per_line(median(serde));
    let shipped = per_line(median(tape));
    println!(
        "per_line paired (median of {} rotating rounds): simd_json_tape {:.0} ns/line, \
         simd_json_serde {:.0} ns/line, serde_json {:.0} ns/line; \
         serde_json / simd_json_tape = {:.2}, serde_json / simd_json_serde = {:.2}",
        ratio.len(),
        shipped,
        per_line(median(simd_serde)),
        serde_ns,
        median(&mut ratio),
        median(&mut serde_ratio)
    );
    // The shipped path is the floor plus the tape walk and the windows; the
    // serde_json path pays for the windows too, so even a free tape walk
    // leaves the ratio below serde_json / (floor + windows).
    println!(
        "per_line floor: copy + frame + simd-json tape build alone {floor:.0} ns/line; \
         serde_json / floor = {:.2}, the ratio no tape walk or window update can beat",
        serde_ns / floor
    );
    let from_floor = median(&mut floor_ratio);
    println!(
        "per_line shipped / floor (median of paired rounds) = {from_floor:.2}, target within \
         {FLOOR_LIMIT}: {}",
        if from_floor <= FLOOR_LIMIT {
            "PASS"
        } else {
            "FAIL"
        }
    );
}

criterion_group! {
    name = benches;
    // About 30 s in all on a 2-core machine.
    config = Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));
    targets = per_line
}
criterion_main!(benches);
