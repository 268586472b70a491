//! Correlation matrices: a table, flagged pairs, and an annotated SVG heatmap
//! (what `sns.heatmap(df.corr(), annot=True)` shows), written by hand: one
//! `<rect>` and one `<text>` per cell, a diverging blue–white–red scale on
//! [−1, 1].

use super::Format;
use serde_json::json;

pub struct CorrMatrix {
    pub names: Vec<String>,
    /// `None` where a column has no variance.
    pub matrix: Vec<Vec<Option<f64>>>,
    pub nobs: u64,
    pub threshold: f64,
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Diverging colour for r ∈ [−1, 1]: blue (−1) → white (0) → red (+1).
fn colour(r: f64) -> String {
    let t = r.clamp(-1.0, 1.0);
    let (from, to) = if t >= 0.0 {
        ((247.0, 247.0, 247.0), (178.0, 24.0, 43.0))
    } else {
        ((247.0, 247.0, 247.0), (33.0, 102.0, 172.0))
    };
    let a = t.abs();
    let mix = |x: f64, y: f64| (x + (y - x) * a).round() as u8;
    format!("#{:02x}{:02x}{:02x}", mix(from.0, to.0), mix(from.1, to.1), mix(from.2, to.2))
}

impl CorrMatrix {
    /// Pairs with |r| ≥ threshold (upper triangle).
    pub fn flagged(&self) -> Vec<(usize, usize, f64)> {
        let n = self.names.len();
        let mut v = Vec::new();
        for i in 0..n {
            for j in i + 1..n {
                if let Some(r) = self.matrix[i][j] {
                    if r.abs() >= self.threshold {
                        v.push((i, j, r));
                    }
                }
            }
        }
        v
    }

    pub fn render(&self, format: Format) -> String {
        let n = self.names.len();
        let cell = |x: Option<f64>| x.map_or("nan".to_string(), |r| format!("{r:.3}"));
        match format {
            Format::Json => {
                let flagged: Vec<_> = self
                    .flagged()
                    .iter()
                    .map(|&(i, j, r)| json!({"a": self.names[i], "b": self.names[j], "r": r}))
                    .collect();
                let m: Vec<Vec<serde_json::Value>> = self
                    .matrix
                    .iter()
                    .map(|row| {
                        row.iter()
                            .map(|x| x.filter(|v| v.is_finite()).map_or(serde_json::Value::Null, |v| json!(v)))
                            .collect()
                    })
                    .collect();
                let mut s = serde_json::to_string_pretty(&json!({
                    "names": self.names, "matrix": m, "nobs": self.nobs,
                    "threshold": self.threshold, "flagged": flagged,
                }))
                .unwrap_or_default();
                s.push('\n');
                s
            }
            Format::Csv => {
                let mut s = format!(",{}\n", self.names.join(","));
                for i in 0..n {
                    let row: Vec<String> =
                        self.matrix[i].iter().map(|x| x.map_or(String::new(), |v| format!("{v:?}"))).collect();
                    s.push_str(&format!("{},{}\n", self.names[i], row.join(",")));
                }
                s
            }
            Format::Markdown => {
                let mut s = format!("| | {} |\n|---|{}\n", self.names.join(" | "), "---:|".repeat(n));
                for i in 0..n {
                    let row: Vec<String> = self.matrix[i].iter().map(|x| cell(*x)).collect();
                    s.push_str(&format!("| {} | {} |\n", self.names[i], row.join(" | ")));
                }
                s
            }
            Format::Text => {
                let w = self.names.iter().map(|x| x.chars().count()).max().unwrap_or(0).max(6);
                let cw = self.names.iter().map(|x| x.chars().count()).max().unwrap_or(0).clamp(7, 24);
                let mut s = format!("{:w$}", "");
                for name in &self.names {
                    let short: String = name.chars().take(cw).collect();
                    s.push_str(&format!(" {short:>cw$}"));
                }
                s.push('\n');
                for i in 0..n {
                    s.push_str(&format!("{:<w$}", self.names[i]));
                    for j in 0..n {
                        s.push_str(&format!(" {:>cw$}", cell(self.matrix[i][j])));
                    }
                    s.push('\n');
                }
                s.push_str(&format!("\n{} rows. ", self.nobs));
                let f = self.flagged();
                if f.is_empty() {
                    s.push_str(&format!("No pair has |r| ≥ {}.\n", self.threshold));
                } else {
                    s.push_str(&format!("Pairs with |r| ≥ {} (collinear predictors?):\n", self.threshold));
                    for (i, j, r) in f {
                        s.push_str(&format!("  {} ~ {}: r = {r:.4}\n", self.names[i], self.names[j]));
                    }
                }
                s
            }
        }
    }

    /// An annotated heatmap as a standalone SVG document.
    pub fn svg(&self) -> String {
        let n = self.names.len();
        let cell = 56.0;
        let label_w = 8.0 * self.names.iter().map(|x| x.chars().count()).max().unwrap_or(4) as f64 + 16.0;
        let top = label_w;
        let width = label_w + cell * n as f64 + 80.0;
        let height = top + cell * n as f64 + 20.0;
        let mut s = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"sans-serif\" font-size=\"12\">\n<title>Correlation matrix ({} rows)</title>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
            self.nobs
        );
        for (i, name) in self.names.iter().enumerate() {
            let y = top + cell * i as f64 + cell / 2.0 + 4.0;
            s.push_str(&format!(
                "<text class=\"row-label\" x=\"{:.1}\" y=\"{y:.1}\" text-anchor=\"end\">{}</text>\n",
                label_w - 6.0,
                xml_escape(name)
            ));
            let x = label_w + cell * i as f64 + cell / 2.0;
            s.push_str(&format!(
                "<text class=\"col-label\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"start\" transform=\"rotate(-60 {x:.1} {:.1})\">{}</text>\n",
                top - 6.0,
                top - 6.0,
                xml_escape(name)
            ));
        }
        for i in 0..n {
            for j in 0..n {
                let x = label_w + cell * j as f64;
                let y = top + cell * i as f64;
                let (fill, label) = match self.matrix[i][j] {
                    Some(r) => (colour(r), format!("{r:.2}")),
                    None => ("#cccccc".to_string(), "n/a".to_string()),
                };
                let flag = self.matrix[i][j].is_some_and(|r| i != j && r.abs() >= self.threshold);
                let stroke = if flag { " stroke=\"black\" stroke-width=\"2\"" } else { " stroke=\"white\"" };
                let text_fill = if self.matrix[i][j].is_some_and(|r| r.abs() > 0.6) { "white" } else { "black" };
                s.push_str(&format!(
                    "<g class=\"cell\" data-row=\"{}\" data-col=\"{}\"><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{cell}\" height=\"{cell}\" fill=\"{fill}\"{stroke}/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"{text_fill}\">{label}</text></g>\n",
                    xml_escape(&self.names[i]),
                    xml_escape(&self.names[j]),
                    x + cell / 2.0,
                    y + cell / 2.0 + 4.0
                ));
            }
        }
        // Colour bar.
        let bx = label_w + cell * n as f64 + 20.0;
        for k in 0..=20 {
            let r = 1.0 - k as f64 / 10.0;
            let y = top + (cell * n as f64) * k as f64 / 21.0;
            s.push_str(&format!(
                "<rect x=\"{bx:.1}\" y=\"{y:.1}\" width=\"16\" height=\"{:.1}\" fill=\"{}\"/>\n",
                cell * n as f64 / 21.0 + 0.5,
                colour(r)
            ));
        }
        s.push_str(&format!("<text x=\"{:.1}\" y=\"{:.1}\">1</text>\n", bx + 20.0, top + 10.0));
        s.push_str(&format!("<text x=\"{:.1}\" y=\"{:.1}\">-1</text>\n", bx + 20.0, top + cell * n as f64));
        s.push_str("</svg>\n");
        s
    }
}
