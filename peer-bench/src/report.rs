//! The results as a markdown table and the scaling as an SVG plot.

use std::fmt::Write;
use std::path::Path;

use plotters::prelude::*;

use crate::contend::{Scaling, PROCESSES};
use crate::{Group, Row};

/// The machine, as far as the bench can tell.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel =
        std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(|_| "?".into(), |k| k.trim().to_owned());
    let rustc = std::process::Command::new("rustc")
        .arg("-V")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "rustc ?".into());
    format!("{cpu}, {cores} cores, Linux {kernel}, {rustc}")
}

fn ns(value: f64) -> String {
    if value >= 100.0 {
        format!("{:.0}", value)
    } else {
        format!("{:.1}", value)
    }
}

fn group_title(group: Group) -> &'static str {
    match group {
        Group::Read => "read the 64-byte value",
        Group::Commit => "replace the 64-byte value (a commit)",
        Group::Increment => "increment a counter",
    }
}

/// The whole report, in markdown.
pub fn markdown(rows: &[Row], scaling: &Scaling, notes: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# shmstore and its peers, one run\n");
    let _ = writeln!(out, "`cargo run --release --manifest-path peer-bench/Cargo.toml` on {}.\n", machine());
    let _ = writeln!(
        out,
        "Single operations: ns per operation, the median of 11 samples after a warm-up (the \
         fastest to slowest sample in brackets). Every row is timed in turns with the raw floor of \
         its group, sample by sample, and its ratio is to that floor's median from the same samples \
         (shown too), so that the machine's noise hits both alike.\n"
    );
    let _ = writeln!(out, "| what | system | operation | ns/op | floor, same samples | × floor |");
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|");
    for group in [Group::Read, Group::Commit, Group::Increment] {
        for row in rows.iter().filter(|r| r.group == group && !r.timing.median_ns.is_nan()) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} ({}–{}) | {} | {:.2} |",
                group_title(group),
                row.system,
                row.op.replace('|', "\\|"),
                ns(row.timing.median_ns),
                ns(row.timing.min_ns),
                ns(row.timing.max_ns),
                ns(row.floor.median_ns),
                row.timing.median_ns / row.floor.median_ns
            );
        }
    }

    let locked_floor = run_of(scaling, "robust", 4).map(|r| r.per_increment_ns);
    let atomic_floor = run_of(scaling, "fetch_add", 4).map(|r| r.per_increment_ns);
    let _ = writeln!(
        out,
        "\nOne counter, 4 processes incrementing it at once (wall time per increment, all processes \
         together; the ratio is of its rate to the raw floor's of its kind: `fetch_add` for atomic increments, \
         the robust-mutex commit for the others; the final count is checked). The raw floors and \
         shmstore are run several times, in turns with one another, and the median run is shown, \
         with the slowest and fastest runs' rates in brackets:\n"
    );
    let _ = writeln!(
        out,
        "| system | increments per process | runs | ns per increment | M increments/s | rate × the floor's | final count |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---|");
    for system in &scaling.systems {
        let Some(run) = system.runs.iter().find(|r| r.processes == 4) else { continue };
        let atomic = matches!(system.key, "fetch_add" | "shm_get");
        let floor = if atomic { atomic_floor } else { locked_floor }.unwrap_or(f64::NAN);
        let check = if run.counted == run.made {
            format!("{} of {}: exact", run.counted, run.made)
        } else {
            format!("**{} of {}: {} lost**", run.counted, run.made, run.made as i64 - run.counted as i64)
        };
        let rate = if run.runs > 1 {
            format!("{:.3} ({:.3}–{:.3})", run.mops, run.mops_range.0, run.mops_range.1)
        } else {
            format!("{:.3}", run.mops)
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.2} | {} |",
            system.name,
            system.per_process,
            run.runs,
            ns(run.per_increment_ns),
            rate,
            floor / run.per_increment_ns,
            check
        );
    }

    let _ = writeln!(
        out,
        "\nScaling: million increments per second, all processes together (the median run; every \
         final count checked):\n"
    );
    let header: Vec<String> = PROCESSES.iter().map(|p| format!("{p} proc.")).collect();
    let _ = writeln!(out, "| system | {} |", header.join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(PROCESSES.len()));
    for system in &scaling.systems {
        let cells: Vec<String> = system
            .runs
            .iter()
            .map(|r| {
                if r.counted == r.made {
                    format!("{:.3}", r.mops)
                } else {
                    format!("{:.3} (lost {})", r.mops, r.made - r.counted)
                }
            })
            .collect();
        let _ = writeln!(out, "| {} | {} |", system.name, cells.join(" | "));
    }
    for note in notes {
        let _ = writeln!(out, "\n{note}");
    }
    out
}

fn run_of<'a>(scaling: &'a Scaling, key: &str, processes: usize) -> Option<&'a crate::contend::Run> {
    scaling.systems.iter().find(|s| s.key == key)?.runs.iter().find(|r| r.processes == processes)
}

/// Plots million increments per second against the number of processes, one line per system,
/// on a logarithmic scale.
pub fn plot(scaling: &Scaling, path: &Path) {
    let root = SVGBackend::new(path, (1040, 560)).into_drawing_area();
    root.fill(&WHITE).unwrap();
    // The chart on the left, the legend on the right where it hides no line.
    let (left, right) = root.split_horizontally(720);
    let max = scaling.systems.iter().flat_map(|s| s.runs.iter().map(|r| r.mops)).fold(1.0, f64::max);
    let min = scaling.systems.iter().flat_map(|s| s.runs.iter().map(|r| r.mops)).fold(max, f64::min);
    let mut chart = ChartBuilder::on(&left)
        .caption("One counter, incremented by N processes at once", ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.8f64..8.5f64, (min / 2.0..max * 2.0).log_scale())
        .unwrap();
    chart
        .configure_mesh()
        .x_desc("processes")
        .y_desc("million increments per second (log scale)")
        .x_labels(8)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .unwrap();
    for (i, system) in scaling.systems.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = system.runs.iter().map(|r| (r.processes as f64, r.mops)).collect();
        chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(2))).unwrap();
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled()))).unwrap();
        let y = 70 + 26 * i as i32;
        right.draw(&PathElement::new(vec![(0, y), (24, y)], color.stroke_width(3))).unwrap();
        right.draw(&Text::new(system.name.replace('`', ""), (32, y - 7), ("sans-serif", 14))).unwrap();
    }
    root.present().unwrap();
}
