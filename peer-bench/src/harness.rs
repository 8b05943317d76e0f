//! A small timing harness in criterion's manner: a warm-up that also sizes the batches, then
//! several timed samples of many iterations each, summarised by their median. A case compared
//! with a floor is timed in turns with it, sample by sample, so that a burst of noise from the
//! rest of the machine hits both alike.

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

/// Times `run`, which performs its operation `n` times per call: a warm-up, then `SAMPLES`
/// samples of about `SAMPLE` each.
pub fn time(mut run: impl FnMut(u64)) -> Timing {
    let iters = warm_up(&mut run);
    let mut samples: Vec<f64> = (0..SAMPLES).map(|_| sample(&mut run, iters)).collect();
    summary(&mut samples)
}

/// Times `case` and `floor` in turns: after both warm-ups, a sample of the floor, then one of the
/// case, `SAMPLES` times. Returns the case's timing and the floor's.
pub fn time_paired(floor: &mut dyn FnMut(u64), mut case: impl FnMut(u64)) -> (Timing, Timing) {
    let floor_iters = warm_up(floor);
    let case_iters = warm_up(&mut case);
    let (mut floors, mut cases) = (Vec::with_capacity(SAMPLES), Vec::with_capacity(SAMPLES));
    for _ in 0..SAMPLES {
        floors.push(sample(floor, floor_iters));
        cases.push(sample(&mut case, case_iters));
    }
    (summary(&mut cases), summary(&mut floors))
}

/// One sample: `iters` operations, in nanoseconds per operation.
fn sample(run: &mut dyn FnMut(u64), iters: u64) -> f64 {
    let t = Instant::now();
    run(iters);
    t.elapsed().as_nanos() as f64 / iters as f64
}

fn summary(samples: &mut [f64]) -> Timing {
    samples.sort_by(f64::total_cmp);
    Timing { median_ns: samples[samples.len() / 2], min_ns: samples[0], max_ns: samples[samples.len() - 1] }
}

/// Runs batches of 1, 2, 4, ... operations until `WARM_UP` has passed; returns the number of
/// operations that makes a sample take about `SAMPLE` (at least one).
fn warm_up(run: &mut dyn FnMut(u64)) -> u64 {
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
    ((SAMPLE.as_nanos() as f64 / per_op_ns.max(0.1)) as u64).max(1)
}
