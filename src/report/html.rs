//! `report.html`: a standalone page (inline CSS and SVG, no network) showing the input with
//! first-order highlights, the top interactions as jointly highlighted spans, a layer × head
//! heatmap when the players are attention heads (named `L<layer>H<head>`), and the faithfulness
//! figure (predicted against actual values on the held-out masks).

use std::fmt::Write;

use super::ResultFile;
use crate::rundir::InputText;

/// Renders the report. `holdout` holds `(predicted, actual)` per held-out mask.
pub fn render(result: &ResultFile, holdout: &[(f64, f64)], top: usize) -> String {
    let names: Vec<String> = match &result.players {
        Some(n) => n.clone(),
        None => (0..result.n).map(|i| format!("#{i}")).collect(),
    };
    let first = first_order(result);
    let scale = first.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
    let mut page = String::new();
    page += HEAD;
    let r2 = result.faithfulness.r2.map_or("not measured".to_string(), |r| format!("{r:.4}"));
    let _ = write!(
        page,
        "<h1>spex explanation</h1><p class=meta>{} · n = {} · {} of {} masks · index {} up to order {} · \
         faithfulness R² {} on {} held-out masks · seed {}</p>",
        result.method,
        result.n,
        result.budget.used,
        result.budget.requested,
        result.index,
        result.max_order,
        r2,
        result.faithfulness.masks,
        result.seed
    );
    if let Some(choice) = &result.choice {
        let _ = write!(page, "<p class=meta>{}</p>", escape(choice));
    }
    if let Some(scored) = &result.scored {
        let _ = write!(page, "<p class=meta>value: {}</p>", escape(scored));
    }
    page += "<h2>Players, coloured by their first-order value</h2><div class=input>";
    page += &match &result.input {
        Some(input) => {
            text_with_spans(input, "p", |i| Some(colour(first[i] / scale)), |i| format!("player {i}: {:+.4}", first[i]))
        }
        None => names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                format!(
                    "<span class=p style=\"background:{}\" title=\"player {i}: {:+.4}\">{}</span> ",
                    colour(first[i] / scale),
                    first[i],
                    escape(name)
                )
            })
            .collect(),
    };
    page += "</div>";
    page += &interactions_section(result, &names, top);
    page += &head_heatmap(&names, &first, scale);
    page += &faithfulness_figure(holdout, result.faithfulness.r2);
    page += "</body></html>\n";
    page
}

/// Each player's order-1 value in the result's index (0 where absent).
fn first_order(result: &ResultFile) -> Vec<f64> {
    let mut v = vec![0.0; result.n];
    for e in result.interactions.iter().filter(|e| e.players.len() == 1) {
        v[e.players.players()[0] as usize] = e.value;
    }
    v
}

fn interactions_section(result: &ResultFile, names: &[String], top: usize) -> String {
    let mut s =
        String::from("<h2>Top interactions</h2><table><tr><th>value</th><th>players, highlighted together</th></tr>");
    let scale = result.interactions.iter().fold(1e-12f64, |m, e| m.max(e.value.abs()));
    for e in result.interactions.iter().filter(|e| e.players.len() >= 2).take(top) {
        let _ = write!(s, "<tr><td class=num>{:+.4}</td><td class=input>", e.value);
        let colour_of = |i: usize| e.players.contains(i as u32).then(|| colour(e.value / scale));
        if let Some(input) = &result.input {
            s += &text_with_spans(input, "p on", colour_of, |i| names[i].clone());
            let heads: Vec<&str> = (0..names.len())
                .filter(|&i| input.spans.get(i).is_some_and(Option::is_none) && e.players.contains(i as u32))
                .map(|i| names[i].as_str())
                .collect();
            if !heads.is_empty() {
                let _ = write!(
                    s,
                    " <span class=\"p on\" style=\"background:{}\">{}</span>",
                    colour(e.value / scale),
                    escape(&heads.join(" "))
                );
            }
            s += "</td></tr>";
            continue;
        }
        for (i, name) in names.iter().enumerate() {
            let member = e.players.contains(i as u32);
            if member {
                let _ = write!(
                    s,
                    "<span class=\"p on\" style=\"background:{}\">{}</span> ",
                    colour(e.value / scale),
                    escape(name)
                );
            } else if names.len() <= 200 {
                let _ = write!(s, "<span class=\"p off\">{}</span> ", escape(name));
            }
        }
        s += "</td></tr>";
    }
    s += "</table>";
    s
}

/// The input text with each player's span as a `<span>` of `class`, coloured by `colour_of`
/// where it gives a colour, greyed otherwise (the text between spans is fixed and shown plain);
/// `title` is the hover text.
fn text_with_spans(
    input: &InputText,
    class: &str,
    colour_of: impl Fn(usize) -> Option<String>,
    title: impl Fn(usize) -> String,
) -> String {
    let mut spans: Vec<(usize, usize, usize)> =
        input.spans.iter().enumerate().filter_map(|(i, s)| s.map(|[a, b]| (a, b, i))).collect();
    spans.sort_unstable();
    let (mut s, mut at) = (String::new(), 0);
    for (a, b, i) in spans {
        let (Some(gap), Some(word)) = (input.text.get(at..a), input.text.get(a..b)) else { continue };
        s += &escape(gap);
        let (class, style) = match colour_of(i) {
            Some(c) => (class, format!(" style=\"background:{c}\"")),
            None => ("p off", String::new()),
        };
        let _ = write!(s, "<span class=\"{class}\"{style} title=\"{}\">{}</span>", escape(&title(i)), escape(word));
        at = b;
    }
    s + &escape(input.text.get(at..).unwrap_or(""))
}

/// A layer × head grid of first-order values, when players are named `L<layer>H<head>` (or
/// `L<layer>.H<head>`).
fn head_heatmap(names: &[String], first: &[f64], scale: f64) -> String {
    let heads: Vec<(usize, usize, f64)> = names
        .iter()
        .zip(first)
        .filter_map(|(n, &v)| {
            // `L3H5` (model runs) or `L3.H5`.
            let (l, h) = n.strip_prefix('L')?.split_once('H')?;
            Some((l.trim_end_matches('.').parse().ok()?, h.parse().ok()?, v))
        })
        .collect();
    if heads.is_empty() {
        return String::new();
    }
    let layers = heads.iter().map(|h| h.0).max().unwrap_or(0) + 1;
    let per = heads.iter().map(|h| h.1).max().unwrap_or(0) + 1;
    let mut grid = vec![vec![None; per]; layers];
    for (l, h, v) in heads {
        grid[l][h] = Some(v);
    }
    let mut s =
        String::from("<h2>Attention heads: first-order value by layer × head</h2><table class=heat><tr><th></th>");
    for h in 0..per {
        let _ = write!(s, "<th>H{h}</th>");
    }
    for (l, row) in grid.iter().enumerate() {
        let _ = write!(s, "</tr><tr><th>L{l}</th>");
        for cell in row {
            match cell {
                Some(v) => {
                    let _ = write!(s, "<td style=\"background:{}\" title=\"{v:+.4}\"></td>", colour(v / scale));
                }
                None => s += "<td></td>",
            }
        }
    }
    s += "</tr></table>";
    s
}

/// Predicted against actual held-out values, with the diagonal.
fn faithfulness_figure(points: &[(f64, f64)], r2: Option<f64>) -> String {
    if points.is_empty() {
        return "<h2>Faithfulness</h2><p>No held-out masks were evaluated.</p>".to_string();
    }
    let (lo, hi) = points.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &(p, a)| (lo.min(p).min(a), hi.max(p).max(a)));
    let span = (hi - lo).max(1e-12);
    let (size, pad) = (360.0, 30.0);
    let at = |v: f64| pad + (v - lo) / span * (size - 2.0 * pad);
    let mut s = format!(
        "<h2>Faithfulness</h2><p>Held-out masks: value predicted by the explanation (x) against the \
         function's value (y); R² {}.</p><svg width={size} height={size} viewBox=\"0 0 {size} {size}\">\
         <rect width={size} height={size} fill=#fff stroke=#ccc />\
         <line x1={pad} y1={} x2={} y2={pad} stroke=#999 stroke-dasharray=4 />",
        r2.map_or("not defined".into(), |r| format!("{r:.4}")),
        size - pad,
        size - pad
    );
    for &(p, a) in points {
        let _ = write!(s, "<circle cx={:.1} cy={:.1} r=2 fill=#3465a4 fill-opacity=0.5 />", at(p), size - at(a));
    }
    let _ = write!(
        s,
        "<text x={pad} y={} font-size=11>{lo:.3}</text><text x={} y={} font-size=11 text-anchor=end>{hi:.3}</text></svg>",
        size - 8.0,
        size - pad,
        size - 8.0
    );
    s
}

/// Diverging colour for `x ∈ [−1, 1]`: red for negative, blue for positive, white at 0.
fn colour(x: f64) -> String {
    let x = x.clamp(-1.0, 1.0);
    let fade = |c: f64| (255.0 - (255.0 - c) * x.abs()).round() as u8;
    let (r, g, b) =
        if x < 0.0 { (fade(214.0), fade(96.0), fade(77.0)) } else { (fade(67.0), fade(147.0), fade(195.0)) };
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const HEAD: &str = "<!doctype html><html><head><meta charset=utf-8><title>spex explanation</title><style>\
body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}\
.meta{color:#555}.input{line-height:2.2em}.p{padding:.2em .3em;border-radius:.3em}\
.on{outline:2px solid #333}.off{color:#aaa}table{border-collapse:collapse}\
td,th{padding:.2em .5em;border-bottom:1px solid #eee;text-align:left}.num{font-family:monospace}\
.heat td{width:1.2em;height:1.2em;padding:0;border:1px solid #fff}\
</style></head><body>";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_diverge_from_white() {
        assert_eq!(colour(0.0), "#ffffff");
        assert_eq!(colour(1.0), "#4393c3");
        assert_eq!(colour(-1.0), "#d6604d");
        assert_eq!(colour(-7.0), colour(-1.0));
        assert_eq!(escape("<a&\"b\">"), "&lt;a&amp;&quot;b&quot;&gt;");
    }
}
