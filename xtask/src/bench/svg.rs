//! `latency.svg`: round-trip latency by percentile, drawn by hand.
//!
//! busbench reports percentiles, not samples, so the plot has one polyline
//! per series (floor and bus, pinned and unpinned) over the percentile axis
//! (p50, p90, p99, p99.9, max, evenly spaced), on a logarithmic µs axis so the
//! tail does not flatten the median. The floor is dashed, the bus solid; a
//! colour per pinning.

use std::fmt::Write as _;

use serde_json::Value;

use super::report::PERCENTILES;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

/// One polyline: its legend label, colour, dash pattern and µs per percentile.
struct Series {
    label: String,
    colour: &'static str,
    dashed: bool,
    points: Vec<(usize, f64)>,
}

/// The plot for busbench's `latency` section (`process["latency"]`), or
/// `None` when the report has no latency run with a positive figure.
pub fn latency(process: &Value) -> Option<String> {
    let series = series(process["latency"].as_array()?);
    let values = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (lo, hi) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if series.is_empty() || hi <= 0.0 {
        return None;
    }
    let (lo, hi) = (
        lo.log10().floor(),
        hi.log10().ceil().max(lo.log10().floor() + 1.0),
    );
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |i: usize| LEFT + plot_w * i as f64 / (PERCENTILES.len() - 1) as f64;
    let y = |us: f64| TOP + plot_h * (1.0 - (us.log10() - lo) / (hi - lo));

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">Round-trip latency by percentile, 64 B (floor vs eventbus)</text>"#,
        LEFT + plot_w / 2.0
    );
    // Horizontal grid and y ticks at 1, 2 and 5 of every decade.
    for decade in lo as i32..=hi as i32 {
        for step in [1.0, 2.0, 5.0] {
            let us = step * 10f64.powi(decade);
            if us.log10() > hi + 1e-9 {
                continue;
            }
            let ty = y(us);
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + plot_w,
                LEFT - 6.0,
                ty + 4.0,
                tick(us)
            );
        }
    }
    for (i, (_, label)) in PERCENTILES.iter().enumerate() {
        let tx = x(i);
        let _ = writeln!(
            svg,
            r##"<line x1="{tx:.1}" y1="{TOP}" x2="{tx:.1}" y2="{:.1}" stroke="#eee"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="20" y="{0:.1}" text-anchor="middle" transform="rotate(-90 20 {0:.1})">round trip (µs, log scale)</text>"#,
        TOP + plot_h / 2.0
    );
    for (n, s) in series.iter().enumerate() {
        let dash = if s.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let points: Vec<String> = s
            .points
            .iter()
            .map(|&(i, us)| format!("{:.1},{:.1}", x(i), y(us)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="2"{dash} points="{}"/>"#,
            s.colour,
            points.join(" ")
        );
        for &(i, us) in &s.points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                x(i),
                y(us),
                s.colour
            );
        }
        let ly = TOP + 10.0 + 22.0 * n as f64;
        let lx = LEFT + plot_w + 15.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 28.0,
            s.colour,
            lx + 34.0,
            ly + 4.0,
            s.label
        );
    }
    svg.push_str("</svg>\n");
    Some(svg)
}

/// Floor and bus of every latency run, in the order busbench ran them.
fn series(runs: &[Value]) -> Vec<Series> {
    let mut out = Vec::new();
    for run in runs {
        let pinned = run["pinned"].as_bool() == Some(true);
        let (pinning, colour) = if pinned {
            ("pinned", "#1f77b4")
        } else {
            ("unpinned", "#ff7f0e")
        };
        for (key, who, dashed) in [("floor", "floor", true), ("bus", "eventbus", false)] {
            let points: Vec<(usize, f64)> = PERCENTILES
                .iter()
                .enumerate()
                .filter_map(|(i, (p, _))| {
                    run[key][p]
                        .as_f64()
                        .filter(|us| *us > 0.0)
                        .map(|us| (i, us))
                })
                .collect();
            if !points.is_empty() {
                out.push(Series {
                    label: format!("{who}, {pinning}"),
                    colour,
                    dashed,
                    points,
                });
            }
        }
    }
    out
}

/// A tick label: no decimals from 1 µs up.
fn tick(us: f64) -> String {
    if us >= 1.0 {
        format!("{us:.0}")
    } else {
        format!("{us}")
    }
}
