//! The overview's charts, drawn on the server as SVG with plotters (its SVG
//! backend, no fonts loaded, no JavaScript): run duration per day with the
//! long-run alert threshold as a line, and messages per day. Takes plain
//! numbers; knows nothing of the database or of HTTP.

use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

const WIDTH: u32 = 720;
const HEIGHT: u32 = 280;
/// The threshold line's colour (the tests look for it).
pub const THRESHOLD_COLOR: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const SERIES_COLORS: [RGBColor; 4] =
    [RGBColor(0x1f, 0x77, 0xb4), RGBColor(0x2c, 0xa0, 0x2c), RGBColor(0x7f, 0x7f, 0x7f), RGBColor(0x94, 0x67, 0xbd)];

/// A day label: "06-15" of "2026-06-15".
fn short_day(day: &str) -> String {
    day.get(5..).unwrap_or(day).to_string()
}

fn y_max(values: impl Iterator<Item = f64>, floor: f64) -> f64 {
    let max = values.fold(floor, f64::max);
    if max <= 0.0 {
        1.0
    } else {
        max * 1.15
    }
}

/// Draws on a new SVG of the charts' size: `draw` gets the white canvas.
fn svg(draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<(), String>) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Both charts' frame: margins and room for the axis labels.
fn frame<'a, 'b>(root: &'a DrawingArea<SVGBackend<'b>, Shift>) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut builder = ChartBuilder::on(root);
    builder.margin(12).x_label_area_size(28).y_label_area_size(64);
    builder
}

/// The x axis' label at `x`: the day of a whole index, else nothing.
fn day_label(days: &[String], x: f64) -> String {
    let i = x.round();
    if (x - i).abs() > 0.01 || i < 0.0 {
        return String::new();
    }
    days.get(i as usize).map(|d| short_day(d)).unwrap_or_default()
}

/// The axes: a day under each whole x, `y_label` for the values, light
/// horizontal lines only.
fn axes<'a, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    days: &[String],
    y_label: &dyn Fn(&f64) -> String,
) -> Result<(), String>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .x_labels(10)
        .x_label_formatter(&|x| day_label(days, *x))
        .y_label_formatter(y_label)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| e.to_string())
}

/// The series' legend, upper left.
fn legend<'a, CT: CoordTranslate>(chart: &mut ChartContext<'a, SVGBackend<'a>, CT>) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(|e| e.to_string())
}

/// Run duration (seconds) per run day: one point per day that had a
/// finished run, over `days` (the x axis), and the threshold as a line.
pub fn run_durations(days: &[String], points: &[(String, f64)], threshold_seconds: f64) -> Result<String, String> {
    svg(|root| {
        let n = days.len().max(1);
        let x_of = |day: &str| days.iter().position(|d| d == day);
        // a logarithmic axis: runs of milliseconds, of minutes and a
        // threshold of half an hour all stay readable on one chart
        let top = y_max(points.iter().map(|p| p.1), threshold_seconds) * 2.0;
        let bottom = points.iter().map(|p| p.1).filter(|s| *s > 0.0).fold(threshold_seconds, f64::min).max(0.001) / 2.0;
        let mut chart = frame(root)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), (bottom..top).log_scale())
            .map_err(|e| e.to_string())?;
        axes(&mut chart, days, &|y| human_seconds(*y))?;
        let xy: Vec<(f64, f64)> = points.iter().filter_map(|(day, s)| x_of(day).map(|x| (x as f64, *s))).collect();
        chart
            .draw_series(LineSeries::new(xy.iter().copied(), SERIES_COLORS[0].stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label("longest run of the day")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], SERIES_COLORS[0].stroke_width(2)));
        chart
            .draw_series(xy.iter().map(|&(x, y)| Circle::new((x, y), 4, SERIES_COLORS[0].filled())))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(
                vec![(-0.5, threshold_seconds), (n as f64 - 0.5, threshold_seconds)],
                THRESHOLD_COLOR.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(format!("long-run alert ({})", human_seconds(threshold_seconds)))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], THRESHOLD_COLOR.stroke_width(2)));
        legend(&mut chart)
    })
}

/// Messages per day: enqueued, delivered, cancelled, dead.
pub fn message_flow(days: &[String], series: &[Vec<f64>; 4]) -> Result<String, String> {
    svg(|root| {
        let n = days.len().max(1);
        let top = y_max(series.iter().flatten().copied(), 0.0);
        let mut chart =
            frame(root).build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..top).map_err(|e| e.to_string())?;
        axes(&mut chart, days, &|y| format!("{}", y.round()))?;
        for (i, name) in ["enqueued", "delivered", "cancelled", "dead"].iter().enumerate() {
            let color = SERIES_COLORS[i];
            chart
                .draw_series(LineSeries::new(
                    series[i].iter().enumerate().map(|(x, y)| (x as f64, *y)),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        }
        legend(&mut chart)
    })
}

/// 1800 -> "30 min", 90 -> "1.5 min", 12.3 -> "12.3 s".
pub fn human_seconds(seconds: f64) -> String {
    if seconds >= 3600.0 {
        format!("{:.1} h", seconds / 3600.0)
    } else if seconds >= 60.0 {
        let minutes = seconds / 60.0;
        if (minutes - minutes.round()).abs() < 0.05 {
            format!("{} min", minutes.round())
        } else {
            format!("{minutes:.1} min")
        }
    } else if seconds >= 1.0 {
        format!("{seconds:.1} s")
    } else {
        format!("{} ms", (seconds * 1000.0).round())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_point_per_run_day_and_the_threshold() {
        let days: Vec<String> = (1..=30).map(|d| format!("2026-06-{d:02}")).collect();
        let points = vec![("2026-06-03".to_string(), 12.0), ("2026-06-04".to_string(), 15.5)];
        let svg = run_durations(&days, &points, 1800.0).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("#D62728") || svg.contains("#d62728"), "the threshold line's colour");
        assert!(svg.contains(">\n06-01") || svg.contains("06-01"), "day labels");
        assert!(svg.contains("long-run alert (30 min)"));
        // no runs at all still draws (an empty chart with the threshold)
        let svg = run_durations(&days, &[], 1800.0).unwrap();
        assert_eq!(svg.matches("<circle").count(), 0);
    }

    #[test]
    fn flow_and_durations() {
        let days: Vec<String> = (1..=3).map(|d| format!("2026-06-{d:02}")).collect();
        let svg = message_flow(&days, &[vec![1.0, 2.0, 3.0], vec![0.0; 3], vec![0.0; 3], vec![1.0; 3]]).unwrap();
        assert!(svg.contains("delivered") && svg.contains("dead"));
        assert_eq!(human_seconds(1800.0), "30 min");
        assert_eq!(human_seconds(90.0), "1.5 min");
        assert_eq!(human_seconds(0.25), "250 ms");
    }
}
