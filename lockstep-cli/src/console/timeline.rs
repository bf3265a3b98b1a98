//! A field's timeline as an SVG drawn by the server: its entries as steps
//! on a time axis, now, and the horizon before which nothing may change.

use lockstep::store::StoredEntry;
use maud::{Markup, html};

use crate::view::{self, instant};

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 56.0;
const PAD: f64 = 8.0;

/// The timeline of `entries` around `now`; `horizon` is the earliest
/// instant a write may touch, `tick_ms` the registry's tick.
pub fn svg(entries: &[StoredEntry], now: i64, horizon: i64, tick_ms: i64) -> Markup {
    let tick_ms = tick_ms.max(1);
    let past: Vec<&StoredEntry> = entries.iter().filter(|e| e.at <= now).collect();
    let shown_from = past.len().saturating_sub(4);
    let start = past
        .get(shown_from)
        .map_or(now - 4 * tick_ms, |e| e.at)
        .min(now - 4 * tick_ms);
    let end = entries
        .iter()
        .map(|e| e.at)
        .max()
        .unwrap_or(now)
        .max(horizon)
        .max(now + 4 * tick_ms);
    let end = end + (end - start) / 10 + 1;
    let x = |t: i64| -> f64 {
        let t = t.clamp(start, end);
        PAD + (t - start) as f64 / (end - start) as f64 * (WIDTH - 2.0 * PAD)
    };
    let shown: Vec<&StoredEntry> = entries.iter().filter(|e| e.at >= start).collect();
    let axis = HEIGHT - 14.0;
    html! {
        svg class="timeline" xmlns="http://www.w3.org/2000/svg" width=(WIDTH) height=(HEIGHT)
            viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img"
            aria-label=(format!("timeline from {} to {}", instant(start), instant(end))) {
            rect class="frozen" x=(x(now)) y="4" width=(x(horizon) - x(now)) height=(axis - 4.0) {
                title { "now to the horizon (" (instant(horizon)) "): no write may land here" }
            }
            line class="axis" x1=(PAD) y1=(axis) x2=(WIDTH - PAD) y2=(axis) {}
            line class="now" x1=(x(now)) y1="2" x2=(x(now)) y2=(axis + 4.0) {}
            text class="label" x=(x(now) + 2.0) y=(HEIGHT - 2.0) { "now" }
            @for (i, entry) in shown.iter().enumerate() {
                @let left = x(entry.at);
                @let right = shown.get(i + 1).map_or(x(end), |n| x(n.at));
                @let class = if entry.at > now { "entry pending" } else { "entry" };
                line class=(class) x1=(left) y1=(axis - 10.0) x2=(right) y2=(axis - 10.0) {}
                circle class=(class) cx=(left) cy=(axis - 10.0) r="3.5" {
                    title { (view::value_text(&entry.value)) " at " (instant(entry.at)) }
                }
                text class="value" x=(left + 3.0) y=(axis - 16.0) {
                    (view::short(&view::value_text(&entry.value)).chars().take(12).collect::<String>())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_in_the_timeline_are_text() {
        let entries = [StoredEntry {
            at: 2_000,
            value: Ok("\"<script>x</script>\"".to_owned()),
            origin: None,
        }];
        let svg = svg(&entries, 1_000, 3_000, 1_000).into_string();
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"), "{svg}");
        assert!(svg.starts_with("<svg"), "{svg}");
    }
}
