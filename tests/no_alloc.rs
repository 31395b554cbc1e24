//! The per-datagram path allocates nothing once warm: frame, decode in
//! place, attribute attempts, fold into the windows. Checked with a
//! counting global allocator over realistic lines, retries and repairs
//! included.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use poolwatch::loadgen::lines::{self, Scenario};
use poolwatch::pipeline::{Pipeline, PipelineConfig};
use poolwatch::record::{Decoder, INPUT_PADDING};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steady_state_processing_does_not_allocate() {
    let mut datagrams = lines::generate(Scenario::Steady, 500, 7);
    datagrams.extend(lines::generate(Scenario::Failover, 500, 8));
    datagrams.extend(lines::generate(Scenario::Errors, 500, 9));
    // Lines that take the repair paths.
    datagrams.push(
        b"<190>Nov  5 09:07:03 web nginx: {\"status\":200,\"uri\":\"/\xFF\",\"upstream_status\":\"200\",\"upstream_addr\":\"172.18.0.3:3000\",\"pool\":\"blue\"}".to_vec(),
    );
    datagrams.push(
        br#"<190>Nov  5 09:07:03 web nginx: {"status":200,"http_user_agent":"say \x22hi\x22","upstream_status":"-","upstream_addr":"-","pool":"-"}"#.to_vec(),
    );
    datagrams.push(b"<187>Nov  5 09:07:03 web nginx: 2026/11/05 [error] boom".to_vec());
    let mut slots: Vec<Vec<u8>> = datagrams
        .iter()
        .map(|d| vec![0u8; d.len() + INPUT_PADDING])
        .collect();
    let mut p = Pipeline::new(&PipelineConfig::default());
    let mut decoder = Decoder::new();
    let mut run = |p: &mut Pipeline, now: u64| {
        for (d, slot) in datagrams.iter().zip(slots.iter_mut()) {
            slot[..d.len()].copy_from_slice(d);
            let _ = p.process(&mut decoder, slot, d.len(), |_| now);
        }
    };
    // Warm up: buffers reach their working size, addresses are learned.
    run(&mut p, 1);
    run(&mut p, 2);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for now in 3..13 {
        run(&mut p, now);
    }
    let allocated = ALLOCATIONS.load(Ordering::Relaxed) - before;
    let processed = 10 * datagrams.len();
    assert_eq!(
        allocated, 0,
        "{allocated} allocations for {processed} datagrams"
    );
    assert!(p.totals.request_count() > 15_000);
    assert!(p.totals.invalid_utf8 >= 10);
}
