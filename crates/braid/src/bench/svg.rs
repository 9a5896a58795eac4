//! Hand-written SVG line charts: one panel per series set, stacked
//! vertically, each with axes, ticks, grid lines, one polyline per line
//! and a legend. No dependency; the output is plain SVG 1.1.

use std::fmt::Write as _;

/// One line of a panel: a label and one value per bin.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub(crate) label: String,
    pub(crate) values: Vec<f64>,
}

/// One chart.
#[derive(Debug, Clone)]
pub(crate) struct Panel {
    pub(crate) title: String,
    /// Width of a bin on the x axis, seconds; value `i` is drawn at the
    /// middle of bin `i`.
    pub(crate) bin_s: f64,
    pub(crate) lines: Vec<Line>,
}

const WIDTH: f64 = 1000.0;
const PANEL_HEIGHT: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 250.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
/// Leg colours, then the total in black.
const COLOURS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// Escapes text for SVG content and attributes.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" tick step (1, 2 or 5 times a power of ten) giving about
/// `target` ticks over `range`.
pub(crate) fn nice_step(range: f64, target: usize) -> f64 {
    if !(range.is_finite() && range > 0.0) || target == 0 {
        return 1.0;
    }
    let rough = range / target as f64;
    let mag = 10f64.powf(rough.log10().floor());
    let norm = rough / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// Tick labels without needless decimals.
fn tick_label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{v:.decimals$}")
}

/// Renders `panels` into one SVG document. `x_label` and `y_label` name the
/// axes of every panel.
pub(crate) fn render(panels: &[Panel], x_label: &str, y_label: &str) -> String {
    let height = PANEL_HEIGHT * panels.len().max(1) as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    for (i, panel) in panels.iter().enumerate() {
        panel_svg(&mut s, panel, i as f64 * PANEL_HEIGHT, x_label, y_label);
    }
    s.push_str("</svg>\n");
    s
}

fn panel_svg(s: &mut String, panel: &Panel, y0: f64, x_label: &str, y_label: &str) {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = PANEL_HEIGHT - TOP - BOTTOM;
    let (px, py) = (LEFT, y0 + TOP);
    let bins = panel
        .lines
        .iter()
        .map(|l| l.values.len())
        .max()
        .unwrap_or(0);
    let x_max = (bins as f64 * panel.bin_s).max(panel.bin_s).max(1e-9);
    let y_data = panel
        .lines
        .iter()
        .flat_map(|l| l.values.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let y_step = nice_step(if y_data > 0.0 { y_data } else { 1.0 }, 5);
    let y_max = ((y_data / y_step).ceil() * y_step).max(y_step);
    let x_step = nice_step(x_max, 8);
    let x_of = |x: f64| px + x / x_max * plot_w;
    let y_of = |y: f64| py + plot_h - y / y_max * plot_h;

    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" font-size="14" font-weight="bold">{}</text>"#,
        px,
        y0 + 22.0,
        esc(&panel.title)
    );
    // Grid and ticks.
    let mut y = 0.0;
    while y <= y_max + y_step / 2.0 {
        let yy = y_of(y);
        let _ = writeln!(
            s,
            r##"<line x1="{px}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            px + plot_w,
            px - 6.0,
            yy + 4.0,
            tick_label(y, y_step)
        );
        y += y_step;
    }
    let mut x = 0.0;
    while x <= x_max + x_step / 1000.0 {
        let xx = x_of(x);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{py}" x2="{xx:.1}" y2="{:.1}" stroke="#eee"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            py + plot_h,
            py + plot_h + 16.0,
            tick_label(x, x_step)
        );
        x += x_step;
    }
    // Axes and their labels.
    let _ = writeln!(
        s,
        r#"<path d="M{px} {py} V{:.1} H{:.1}" fill="none" stroke="black"/>"#,
        py + plot_h,
        px + plot_w
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        px + plot_w / 2.0,
        py + plot_h + 36.0,
        esc(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" transform="rotate(-90 {:.1} {:.1})">{}</text>"#,
        px - 48.0,
        py + plot_h / 2.0,
        px - 48.0,
        py + plot_h / 2.0,
        esc(y_label)
    );
    // Lines and legend.
    for (i, line) in panel.lines.iter().enumerate() {
        let colour = if i + 1 == panel.lines.len() && line.label.starts_with("total") {
            "black"
        } else {
            COLOURS.get(i % COLOURS.len()).copied().unwrap_or("gray")
        };
        let points: Vec<String> = line
            .values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(j, v)| {
                format!(
                    "{:.1},{:.1}",
                    x_of((j as f64 + 0.5) * panel.bin_s),
                    y_of(v.max(0.0))
                )
            })
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        );
        let ly = py + 10.0 + 18.0 * i as f64;
        let lx = px + plot_w + 12.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 20.0,
            lx + 26.0,
            ly + 4.0,
            esc(&line.label)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_nice() {
        assert_eq!(nice_step(10.0, 5), 2.0);
        assert_eq!(nice_step(4.2, 5), 1.0);
        assert_eq!(nice_step(0.9, 5), 0.2);
        assert_eq!(nice_step(300.0, 8), 50.0);
        assert_eq!(nice_step(0.0, 5), 1.0);
        assert_eq!(nice_step(f64::NAN, 5), 1.0);
        assert_eq!(tick_label(0.4, 0.2), "0.4");
        assert_eq!(tick_label(10.0, 2.0), "10");
    }

    #[test]
    fn renders_panels_lines_and_legend() {
        let panel = |title: &str| Panel {
            title: title.into(),
            bin_s: 0.2,
            lines: vec![
                Line {
                    label: "leg 1 relay0>relay2>exit0".into(),
                    values: vec![1.0, 2.0, 1.5],
                },
                Line {
                    label: "leg 2".into(),
                    values: vec![0.5, f64::NAN, 0.5],
                },
                Line {
                    label: "total".into(),
                    values: vec![1.5, 2.0, 2.0],
                },
            ],
        };
        let svg = render(
            &[panel("uniform <2 legs>"), panel("b&w")],
            "time (s)",
            "MB/s",
        );
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 6);
        assert!(svg.contains("uniform &lt;2 legs&gt;"));
        assert!(svg.contains("b&amp;w"));
        assert!(svg.contains("relay0&gt;relay2&gt;exit0"));
        assert!(svg.contains("stroke=\"black\""));
        assert!(svg.contains(">MB/s</text>"));
        // The NaN bin is left out of its line: two points.
        let second = svg
            .lines()
            .filter(|l| l.starts_with("<polyline"))
            .nth(1)
            .unwrap();
        assert_eq!(second.matches(',').count(), 2, "{second}");
        // Empty input still gives a document.
        assert!(render(&[], "x", "y").contains("</svg>"));
    }
}
