//! Sparklines for `ferry top`: a series drawn in one line of unicode block characters, newest on
//! the right, scaled to the series' own peak, from `GET /api/admin/metrics-history/v1`.

use serde_json::Value;

use crate::observe::table;

const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// `values` (oldest first) drawn in `width` characters. Longer series are grouped into `width`
/// columns from the newest end, each column the mean of its group; shorter ones are padded
/// with spaces on the left, so the right edge is always "now". Zero is the lowest block, any
/// activity at least the second, the peak the full block.
pub fn sparkline(values: &[f64], width: usize) -> String {
    if width == 0 {
        return String::new();
    }
    let per_column = values.len().div_ceil(width).max(1);
    let clean = |v: f64| if v.is_finite() && v > 0.0 { v } else { 0.0 };
    // Group from the newest end so the last column holds the latest values.
    let mut columns: Vec<f64> = values
        .rchunks(per_column)
        .map(|group| group.iter().copied().map(clean).sum::<f64>() / group.len() as f64)
        .collect();
    columns.reverse();
    let peak = columns.iter().copied().fold(0.0, f64::max);
    let mut out = " ".repeat(width.saturating_sub(columns.len()));
    for v in columns {
        let level = if v <= 0.0 || peak <= 0.0 { 0 } else { 1 + ((v / peak) * 6.0).round() as usize };
        out.push(BLOCKS[level.min(BLOCKS.len() - 1)]);
    }
    out
}

/// Columns a `ferry top` sparkline takes (15 minutes, 15 s a column).
pub const TOP_WIDTH: usize = 60;

/// The `ferry top` activity table: one row per series of the history, with its latest value,
/// its peak over the window and its sparkline. Nothing if the node sent no history.
pub fn render_history(out: &mut String, history: &Value) {
    let Some(series) = history["series"].as_array() else { return };
    let seconds = history["at"].as_array().map_or(0, Vec::len);
    out.push_str(&format!(
        "ACTIVITY, last {} s ({} per column, newest right)\n",
        seconds,
        column_span(seconds)
    ));
    table(
        out,
        &["SERIES", "NOW", "PEAK", "TREND"],
        series.iter().map(|s| {
            let values: Vec<f64> =
                s["values"].as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
            let unit = if s["unit"] == "per_second" { "/s" } else { "" };
            let now = values.last().copied().unwrap_or(0.0);
            let peak = values.iter().copied().fold(0.0, f64::max);
            vec![
                format!("{}{unit}", s["name"].as_str().unwrap_or("")),
                number(now),
                number(peak),
                sparkline(&values, TOP_WIDTH),
            ]
        }),
        1,
    );
}

fn column_span(seconds: usize) -> String {
    format!("{} s", seconds.div_ceil(TOP_WIDTH).max(1))
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.1}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_rises_to_the_full_block_and_quiet_is_the_floor() {
        assert_eq!(sparkline(&[0.0, 0.0, 1.0, 4.0, 8.0, 0.0], 6), "▁▁▃▅█▁");
        assert_eq!(sparkline(&[0.0, 0.0, 0.0], 3), "▁▁▁", "no activity draws a flat floor");
        assert_eq!(sparkline(&[0.01, 100.0], 2), "▂█", "any activity shows");
    }

    #[test]
    fn a_short_history_is_right_aligned_and_a_long_one_grouped_from_the_newest_end() {
        assert_eq!(sparkline(&[5.0, 10.0], 5), "   ▅█");
        // 7 values in 3 columns: groups of 3 from the end: [1], [0,0,0], [6,6,6].
        assert_eq!(sparkline(&[1.0, 0.0, 0.0, 0.0, 6.0, 6.0, 6.0], 3), "▃▁█");
        assert_eq!(sparkline(&[1.0; 900], TOP_WIDTH).chars().count(), TOP_WIDTH);
        assert_eq!(sparkline(&[1.0], 0), "");
    }

    #[test]
    fn bad_numbers_draw_as_zero() {
        assert_eq!(sparkline(&[f64::NAN, -3.0, f64::INFINITY, 2.0], 4), "▁▁▁█");
    }

    #[test]
    fn the_top_table_has_a_row_per_series_with_its_numbers_and_trend() {
        let history = serde_json::json!({
            "at": [1, 2, 3],
            "series": [
                {"name": "received", "unit": "per_second", "values": [0.0, 200.0, 0.0]},
                {"name": "queue_depth", "unit": "messages", "values": [0.0, 150.0, 20.0]},
            ]
        });
        let mut out = String::new();
        render_history(&mut out, &history);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("ACTIVITY, last 3 s"), "{out}");
        assert!(
            lines[2].starts_with("received/s") && lines[2].contains(" 0 ") && lines[2].contains("200"),
            "{out}"
        );
        assert!(lines[2].ends_with("▁█▁"), "{out}");
        assert!(lines[3].starts_with("queue_depth") && lines[3].ends_with("▁█▃"), "{out}");
    }
}
