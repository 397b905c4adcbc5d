//! The academic calendar (terms and exam diets) and the three ways the
//! generator writes a time into `starts_at` / `ends_at`.
//!
//! * Term 1: eleven teaching weeks from `start` (the last Monday of
//!   September by default), so it spans the late-October change from
//!   summer time to GMT.
//! * January exam diet: the two weeks before term 2.
//! * Term 2: eleven weeks from the first Monday on or after 22 January,
//!   so it always spans the late-March change to summer time (the last
//!   Sunday of March falls between 25 and 31 March; week 11 of term 2 ends
//!   in April at the earliest).
//! * May–June exam diet: three weeks from the first Monday on or after
//!   12 May.

use jiff::civil::{Date, DateTime, Weekday};
use jiff::tz::TimeZone;
use jiff::Span;

use crate::GenerateError;

/// Teaching weeks per term.
pub(crate) const WEEKS_PER_TERM: u8 = 11;

/// The last Monday of September of the academic year (September to August)
/// that contains `today`.
pub fn default_start(today: Date) -> Date {
    let year = if today.month() >= 9 {
        today.year()
    } else {
        today.year().saturating_sub(1).max(-9999)
    };
    Date::new(year, 9, 1)
        .and_then(|september| september.nth_weekday_of_month(-1, Weekday::Monday))
        .unwrap_or(today)
}

/// `date` moved by `days` (negative: earlier).
pub(crate) fn add_days(date: Date, days: i64) -> Result<Date, GenerateError> {
    date.checked_add(Span::new().days(days))
        .map_err(|e| GenerateError::Calendar(format!("{date} + {days} days: {e}")))
}

/// The Monday on or before `date`.
pub(crate) fn monday_on_or_before(date: Date) -> Result<Date, GenerateError> {
    add_days(date, -i64::from(date.weekday().to_monday_zero_offset()))
}

/// The Monday on or after `date`.
fn monday_on_or_after(date: Date) -> Result<Date, GenerateError> {
    let back = i64::from(date.weekday().to_monday_zero_offset());
    add_days(date, (7 - back) % 7)
}

fn ymd(year: i16, month: i8, day: i8) -> Result<Date, GenerateError> {
    Date::new(year, month, day)
        .map_err(|e| GenerateError::Calendar(format!("{year}-{month:02}-{day:02}: {e}")))
}

/// The dates the generator lays the year out on.
#[derive(Debug, Clone)]
pub(crate) struct AcademicYear {
    /// Monday of week 1 of each term.
    pub terms: [Date; 2],
    /// Teaching days (Monday to Friday) of the January exam diet.
    pub january_diet: Vec<Date>,
    /// Teaching days (Monday to Friday) of the May–June exam diet.
    pub summer_diet: Vec<Date>,
}

impl AcademicYear {
    /// Lays out the year whose term 1 starts on `start` (a Monday).
    pub(crate) fn new(start: Date) -> Result<Self, GenerateError> {
        let term1_end = add_days(start, i64::from(WEEKS_PER_TERM) * 7)?;
        let mut jan = ymd(term1_end.year(), 1, 22)?;
        if jan <= term1_end {
            jan = ymd(term1_end.year().saturating_add(1), 1, 22)?;
        }
        let term2 = monday_on_or_after(jan)?;
        let january_diet = weekdays(add_days(term2, -14)?, 2)?;
        let may = monday_on_or_after(ymd(term2.year(), 5, 12)?)?;
        let summer_diet = weekdays(may, 3)?;
        Ok(AcademicYear {
            terms: [start, term2],
            january_diet,
            summer_diet,
        })
    }

    /// The date of `day` (0 = Monday) in teaching `week` (1-based) of `term`.
    pub(crate) fn teaching_day(
        &self,
        term: usize,
        week: u8,
        day: u8,
    ) -> Result<Date, GenerateError> {
        add_days(
            self.terms[term],
            i64::from(week.saturating_sub(1)) * 7 + i64::from(day),
        )
    }
}

/// Monday to Friday of `weeks` consecutive weeks from `monday`.
fn weekdays(monday: Date, weeks: u8) -> Result<Vec<Date>, GenerateError> {
    let mut out = Vec::new();
    for w in 0..i64::from(weeks) {
        for d in 0..5 {
            out.push(add_days(monday, w * 7 + d)?);
        }
    }
    Ok(out)
}

/// How an event series writes its times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeStyle {
    /// `2026-10-26 09:00:00`: wall clock, no offset (the row's or the
    /// profile's time zone applies).
    Wall,
    /// `2026-10-01T09:00:00+01:00`: ISO 8601 with the Europe/London offset.
    Offset,
    /// `2026-10-01T08:00:00Z`: ISO 8601 in UTC.
    Utc,
}

/// Formats times; holds the Europe/London zone for the offset styles.
pub(crate) struct Clock {
    london: TimeZone,
}

impl Clock {
    pub(crate) fn new() -> Result<Self, GenerateError> {
        let london = TimeZone::get("Europe/London")
            .map_err(|e| GenerateError::Calendar(format!("time zone Europe/London: {e}")))?;
        Ok(Clock { london })
    }

    /// `date` at `hour:minute` (Europe/London wall clock), written in `style`.
    pub(crate) fn format(
        &self,
        date: Date,
        hour: i8,
        minute: i8,
        style: TimeStyle,
    ) -> Result<String, GenerateError> {
        let dt = date.at(hour, minute, 0, 0);
        match style {
            TimeStyle::Wall => Ok(wall(dt)),
            TimeStyle::Offset => {
                let zoned = self
                    .london
                    .to_zoned(dt)
                    .map_err(|e| GenerateError::Calendar(format!("{dt} in Europe/London: {e}")))?;
                let secs = zoned.offset().seconds();
                let sign = if secs < 0 { '-' } else { '+' };
                let abs = secs.unsigned_abs();
                Ok(format!(
                    "{}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
                    date_text(dt.date()),
                    dt.hour(),
                    dt.minute(),
                    dt.second(),
                    abs / 3600,
                    (abs % 3600) / 60
                ))
            }
            TimeStyle::Utc => {
                let ts = self
                    .london
                    .to_timestamp(dt)
                    .map_err(|e| GenerateError::Calendar(format!("{dt} in Europe/London: {e}")))?;
                let utc = ts.to_zoned(TimeZone::UTC).datetime();
                Ok(format!(
                    "{}T{:02}:{:02}:{:02}Z",
                    date_text(utc.date()),
                    utc.hour(),
                    utc.minute(),
                    utc.second()
                ))
            }
        }
    }
}

/// `2026-10-26`.
pub(crate) fn date_text(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

/// `2026-10-26 09:00:00`.
pub(crate) fn wall(dt: DateTime) -> String {
    format!(
        "{} {:02}:{:02}:{:02}",
        date_text(dt.date()),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn default_start_is_last_monday_of_september_of_the_academic_year() {
        assert_eq!(default_start(date(2026, 11, 3)), date(2026, 9, 28));
        assert_eq!(default_start(date(2027, 3, 1)), date(2026, 9, 28));
        assert_eq!(default_start(date(2026, 9, 1)), date(2026, 9, 28));
        assert_eq!(default_start(date(2026, 8, 31)), date(2025, 9, 29));
        assert_eq!(default_start(date(2025, 9, 30)), date(2025, 9, 29));
    }

    #[test]
    fn terms_span_both_dst_changes() -> Result<(), GenerateError> {
        for year in 2020..2040 {
            let start = default_start(date(year, 10, 1));
            let ay = AcademicYear::new(start)?;
            let oct_change = date(year, 10, 1)
                .nth_weekday_of_month(-1, Weekday::Sunday)
                .unwrap();
            let mar_change = date(year + 1, 3, 1)
                .nth_weekday_of_month(-1, Weekday::Sunday)
                .unwrap();
            assert!(ay.terms[0] < oct_change);
            assert!(ay.teaching_day(0, WEEKS_PER_TERM, 4)? > oct_change);
            assert!(ay.terms[1] < mar_change, "{year}");
            assert!(
                ay.teaching_day(1, WEEKS_PER_TERM, 4)? > mar_change,
                "{year}"
            );
            assert!(ay.january_diet[0].month() == 1 && ay.january_diet[0].day() >= 8);
            assert_eq!(ay.summer_diet.len(), 15);
            assert_eq!(ay.summer_diet[0].month(), 5);
            assert_eq!(ay.terms[1].weekday(), Weekday::Monday);
        }
        Ok(())
    }

    #[test]
    fn time_styles() -> Result<(), GenerateError> {
        let c = Clock::new()?;
        let d = date(2026, 10, 1);
        assert_eq!(c.format(d, 9, 0, TimeStyle::Wall)?, "2026-10-01 09:00:00");
        assert_eq!(
            c.format(d, 9, 0, TimeStyle::Offset)?,
            "2026-10-01T09:00:00+01:00"
        );
        assert_eq!(c.format(d, 9, 0, TimeStyle::Utc)?, "2026-10-01T08:00:00Z");
        let w = date(2026, 12, 1);
        assert_eq!(
            c.format(w, 9, 30, TimeStyle::Offset)?,
            "2026-12-01T09:30:00+00:00"
        );
        assert_eq!(c.format(w, 9, 30, TimeStyle::Utc)?, "2026-12-01T09:30:00Z");
        Ok(())
    }
}
