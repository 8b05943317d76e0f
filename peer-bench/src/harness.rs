//! A small timing harness in criterion's manner: a warm-up that also sizes the batches, then
//! several timed samples of many iterations each, summarised by their median.

use std::time::{Duration, Instant};

/// How long the warm-up runs (and sizes the batches).
const WARM_UP: Duration = Duration::from_millis(150);
/// How long each sample aims to take.
const SAMPLE: Duration = Duration::from_millis(40);
/// How many samples are timed; the median of their per-operation times is reported.
const SAMPLES: usize = 11;

/// The per-operation times of one measured case.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// The median over the samples, in nanoseconds per operation.
    pub median_ns: f64,
    /// The fastest sample.
    pub min_ns: f64,
    /// The slowest sample.
    pub max_ns: f64,
}

/// Times `run`, which performs its operation `n` times per call. The warm-up calls it with
/// batches of 1, 2, 4, ... until `WARM_UP` has passed, and the last batch's rate sizes the
/// samples so that each takes about `SAMPLE` (at least one operation).
pub fn time(mut run: impl FnMut(u64)) -> Timing {
    let start = Instant::now();
    let mut batch = 1u64;
    let mut per_op_ns;
    loop {
        let t = Instant::now();
        run(batch);
        per_op_ns = t.elapsed().as_nanos() as f64 / batch as f64;
        if start.elapsed() >= WARM_UP {
            break;
        }
        batch = batch.saturating_mul(2);
    }
    let iters = ((SAMPLE.as_nanos() as f64 / per_op_ns.max(0.1)) as u64).max(1);
    let mut samples: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            run(iters);
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    Timing { median_ns: samples[SAMPLES / 2], min_ns: samples[0], max_ns: samples[SAMPLES - 1] }
}
