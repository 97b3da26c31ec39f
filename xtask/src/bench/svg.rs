//! A small grouped bar chart of throughput, as a standalone SVG.

use std::fmt::Write;

/// One group of bars: a label and (series name, value) pairs.
pub struct Group {
    pub label: String,
    pub bars: Vec<(String, f64)>,
}

const COLORS: [&str; 4] = ["#2b6cb0", "#9bb7d4", "#c05621", "#f0b27a"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Panels side by side (one per title), each with its groups of bars on a linear scale.
pub fn chart(title: &str, panels: &[(String, Vec<Group>)]) -> String {
    let (pw, ph, top, left, bottom) = (460.0, 300.0, 60.0, 60.0, 70.0);
    let width = left + pw * panels.len() as f64 + 20.0;
    let height = top + ph + bottom;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ =
        writeln!(s, r#"<text x="{}" y="22" font-size="16" text-anchor="middle">{}</text>"#, width / 2.0, esc(title));
    let mut series: Vec<String> = Vec::new();
    for (_, groups) in panels {
        for g in groups {
            for (name, _) in &g.bars {
                if !series.contains(name) {
                    series.push(name.clone());
                }
            }
        }
    }
    for (i, name) in series.iter().enumerate() {
        let x = left + 140.0 * i as f64;
        let _ = writeln!(s, r#"<rect x="{x}" y="34" width="12" height="12" fill="{}"/>"#, COLORS[i % COLORS.len()]);
        let _ = writeln!(s, r#"<text x="{}" y="45">{}</text>"#, x + 16.0, esc(name));
    }
    for (pi, (ptitle, groups)) in panels.iter().enumerate() {
        let x0 = left + pw * pi as f64;
        let max = groups.iter().flat_map(|g| g.bars.iter().map(|b| b.1)).fold(0.0f64, f64::max).max(1e-9);
        let scale = (ph - 30.0) / (max * 1.1);
        let y_base = top + ph;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="13" text-anchor="middle">{}</text>"#,
            x0 + pw / 2.0,
            top + 12.0,
            esc(ptitle)
        );
        let _ = writeln!(s, r##"<line x1="{x0}" y1="{y_base}" x2="{}" y2="{y_base}" stroke="#333"/>"##, x0 + pw - 20.0);
        let gw = (pw - 40.0) / groups.len().max(1) as f64;
        for (gi, g) in groups.iter().enumerate() {
            let bw = (gw - 12.0) / g.bars.len().max(1) as f64;
            let gx = x0 + 10.0 + gw * gi as f64;
            for (bi, (name, v)) in g.bars.iter().enumerate() {
                let h = v * scale;
                let bx = gx + bw * bi as f64;
                let color = COLORS[series.iter().position(|n| n == name).unwrap_or(0) % COLORS.len()];
                let _ = writeln!(
                    s,
                    r#"<rect x="{bx:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{color}"/>"#,
                    y_base - h,
                    bw - 2.0
                );
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="middle">{}</text>"#,
                    bx + bw / 2.0 - 1.0,
                    y_base - h - 3.0,
                    fmt_num(*v)
                );
            }
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                gx + gw / 2.0 - 6.0,
                y_base + 16.0,
                esc(&g.label)
            );
        }
    }
    let _ = writeln!(s, "</svg>");
    s
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}
