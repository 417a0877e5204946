//! The forecast-service's answer, day by day and hour by hour.

use delestage_proto::forecast::v1 as fpb;

use super::*;

pub(crate) fn forecast_text(
    f: &fpb::Forecast,
    tempo: &Result<fpb::TempoCalendar, String>,
    paint: Paint,
    clock: &Clock,
) -> String {
    let mut out = String::new();
    let source = match f.source() {
        fpb::ForecastSource::Rte => "RTE",
        fpb::ForecastSource::RteSandbox => "RTE sandbox",
        fpb::ForecastSource::File => "file",
        fpb::ForecastSource::Upstream => "upstream forecast-service",
        fpb::ForecastSource::Unspecified => "?",
    };
    out.push_str(&format!(
        "Ecowatt forecast from {source} ({}), generated {}, fetched {}{}\n\n",
        f.source_detail,
        time(f.generated_at.as_ref()).map_or("?".to_owned(), |t| clock.show(t)),
        time(f.fetched_at.as_ref()).map_or("?".to_owned(), |t| clock.show(t)),
        if f.stale { ", STALE" } else { "" },
    ));
    // Ecowatt days are days in Paris, whatever zone the times are in.
    for (i, day) in f.days.iter().enumerate() {
        let Some(start) = time(day.start.as_ref()) else {
            continue;
        };
        // The day ends where the next one starts (23 or 25 hours on the
        // days clocks change), or a day later if the next one is missing.
        let end = f
            .days
            .get(i + 1)
            .and_then(|d| time(d.start.as_ref()))
            .filter(|next| *next <= start + jiff::SignedDuration::from_hours(25))
            .unwrap_or(start + jiff::SignedDuration::from_hours(24));
        let date = start
            .to_zoned_datetime(PARIS.clone())
            .strftime("%a %d %b")
            .to_string();
        let mut row = String::new();
        let mut pas = start;
        while pas < end {
            let hour = f.hours.iter().find(|h| {
                time(h.start.as_ref()).is_some_and(|s| s <= pas)
                    && time(h.end.as_ref()).is_some_and(|e| pas < e)
            });
            row.push_str(&match hour {
                Some(h) => paint.level(h.level(), "█"),
                None => " ".to_owned(),
            });
            pas += jiff::SignedDuration::from_hours(1);
        }
        out.push_str(&format!(
            "{}  {}  {}\n     {}\n",
            date,
            paint.level(
                day.level(),
                &pad(&level_name(day.level()).to_uppercase(), 11)
            ),
            row.trim_end(),
            day.message
        ));
    }
    out.push('\n');
    out.push_str(&tempo_text(tempo, paint, clock));
    out
}

/// The Tempo days, one line each: date, colour (in words and colour), and
/// when its peak hours run.
fn tempo_text(tempo: &Result<fpb::TempoCalendar, String>, paint: Paint, clock: &Clock) -> String {
    let cal = match tempo {
        Ok(cal) => cal,
        Err(why) => return format!("Tempo: {why}\n"),
    };
    let mut out = format!(
        "Tempo (tariff days 06:00 to 06:00, peak hours 06:00-22:00), fetched {}{}\n",
        time(cal.fetched_at.as_ref()).map_or("?".to_owned(), |t| clock.show(t)),
        if cal.stale { ", STALE" } else { "" },
    );
    for day in &cal.days {
        let date = day
            .date
            .parse::<jiff::civil::Date>()
            .map_or(day.date.clone(), |d| d.strftime("%a %d %b").to_string());
        out.push_str(&format!(
            "{date}  {}  peak {} to {}\n",
            paint.tempo(
                day.color(),
                &pad(&tempo_name(day.color()).to_uppercase(), 5)
            ),
            time(day.start.as_ref()).map_or("?".to_owned(), |t| clock.show(t)),
            time(day.peak_end.as_ref()).map_or("?".to_owned(), |t| clock.show(t)),
        ));
    }
    if cal.days.is_empty() {
        out.push_str("no days known\n");
    }
    out
}

// ---- relays ----
