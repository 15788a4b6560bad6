//! Search prefixes and the implicit range of a date, dateTime or instant search value.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

/// A search prefix (https://hl7.org/fhir/R4/search.html#prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

impl Prefix {
    /// Splits a leading two-letter prefix off `value`; `eq` when there is none.
    pub fn split(value: &str) -> (Prefix, &str) {
        let p = match value.get(..2) {
            Some("eq") => Prefix::Eq,
            Some("ne") => Prefix::Ne,
            Some("gt") => Prefix::Gt,
            Some("lt") => Prefix::Lt,
            Some("ge") => Prefix::Ge,
            Some("le") => Prefix::Le,
            Some("sa") => Prefix::Sa,
            Some("eb") => Prefix::Eb,
            Some("ap") => Prefix::Ap,
            _ => return (Prefix::Eq, value),
        };
        (p, &value[2..])
    }
}

/// The half-open range `[start, end)` a search value stands for, at its own precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl DateRange {
    /// The same range in whole days, for `date` columns: `[first day, day after the last)`.
    pub fn days(&self) -> (NaiveDate, NaiveDate) {
        let start = self.start.date_naive();
        let last = (self.end - Duration::nanoseconds(1)).date_naive();
        (start, last + Duration::days(1))
    }

    /// The range widened for `ap`: by a tenth of its distance from now, at least a day.
    pub fn approximate(&self, now: DateTime<Utc>) -> DateRange {
        let gap = (now - self.start).num_seconds().abs() / 10;
        let margin = Duration::seconds(gap.max(86_400));
        DateRange {
            start: self.start - margin,
            end: self.end + margin,
        }
    }
}

fn month_end(year: i32, month: u32) -> Option<NaiveDate> {
    if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    }
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(NaiveTime::MIN).and_utc()
}

/// Parses `YYYY`, `YYYY-MM`, `YYYY-MM-DD` or a dateTime with minutes, seconds or fractions and
/// an optional zone (UTC when absent) into the range it denotes.
pub fn parse_range(s: &str) -> Option<DateRange> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|x| x.iter().all(u8::is_ascii_digit))
    };
    match s.len() {
        4 if digits(0..4) => {
            let y: i32 = s.parse().ok()?;
            Some(DateRange {
                start: midnight(NaiveDate::from_ymd_opt(y, 1, 1)?),
                end: midnight(NaiveDate::from_ymd_opt(y + 1, 1, 1)?),
            })
        }
        7 if digits(0..4) && b[4] == b'-' && digits(5..7) => {
            let y: i32 = s[..4].parse().ok()?;
            let m: u32 = s[5..].parse().ok()?;
            Some(DateRange {
                start: midnight(NaiveDate::from_ymd_opt(y, m, 1)?),
                end: midnight(month_end(y, m)?),
            })
        }
        10 => {
            let d = parse_day(s)?;
            Some(DateRange {
                start: midnight(d),
                end: midnight(d + Duration::days(1)),
            })
        }
        _ => parse_date_time(s),
    }
}

/// `YYYY-MM-DD` with a four-digit year, as FHIR writes dates (chrono alone also reads signed
/// years of six digits, at the edge of what its arithmetic holds).
fn parse_day(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let shape = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    shape
        .then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .flatten()
}

fn parse_date_time(s: &str) -> Option<DateRange> {
    let t = s.find('T')?;
    let (date_part, rest) = (&s[..t], &s[t + 1..]);
    let date = parse_day(date_part)?;
    let zone_at = rest.find(['Z', '+', '-']).unwrap_or(rest.len());
    let (time_part, zone) = rest.split_at(zone_at);
    let offset = match zone {
        "" | "Z" => FixedOffset::east_opt(0)?,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (h, m) = z[1..].split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let secs = h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60;
            FixedOffset::east_opt(sign * secs)?
        }
    };
    let (time, step) = match time_part.len() {
        5 => (
            NaiveTime::parse_from_str(time_part, "%H:%M").ok()?,
            Duration::minutes(1),
        ),
        8 => (
            NaiveTime::parse_from_str(time_part, "%H:%M:%S").ok()?,
            Duration::seconds(1),
        ),
        n if n > 9 && n <= 18 && time_part.as_bytes()[8] == b'.' => {
            let frac = n - 9;
            let t = NaiveTime::parse_from_str(time_part, "%H:%M:%S%.f").ok()?;
            (t, Duration::nanoseconds(10i64.pow(9 - frac as u32)))
        }
        _ => return None,
    };
    let local = NaiveDateTime::new(date, time);
    let start = offset
        .from_local_datetime(&local)
        .single()?
        .with_timezone(&Utc);
    Some(DateRange {
        start,
        end: start + step,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn prefixes_are_split_and_default_to_eq() {
        assert_eq!(Prefix::split("ge2020"), (Prefix::Ge, "2020"));
        assert_eq!(Prefix::split("2020"), (Prefix::Eq, "2020"));
        assert_eq!(Prefix::split("ap2020-01"), (Prefix::Ap, "2020-01"));
    }

    #[test]
    fn each_precision_has_its_range() {
        let y = parse_range("2020").unwrap();
        assert_eq!(
            (y.start, y.end),
            (ts("2020-01-01T00:00:00Z"), ts("2021-01-01T00:00:00Z"))
        );
        let m = parse_range("2020-02").unwrap();
        assert_eq!(m.end, ts("2020-03-01T00:00:00Z"));
        let dec = parse_range("2020-12").unwrap();
        assert_eq!(dec.end, ts("2021-01-01T00:00:00Z"));
        let d = parse_range("2020-02-29").unwrap();
        assert_eq!(d.end, ts("2020-03-01T00:00:00Z"));
        let min = parse_range("2020-02-29T10:30+02:00").unwrap();
        assert_eq!(
            (min.start, min.end),
            (ts("2020-02-29T08:30:00Z"), ts("2020-02-29T08:31:00Z"))
        );
        let sec = parse_range("2020-02-29T10:30:05Z").unwrap();
        assert_eq!(sec.end, ts("2020-02-29T10:30:06Z"));
        let ms = parse_range("2020-02-29T10:30:05.120Z").unwrap();
        assert_eq!(ms.end, ts("2020-02-29T10:30:05.121Z"));
    }

    #[test]
    fn malformed_values_are_rejected() {
        for bad in [
            "",
            "20",
            "2020-13",
            "2020-02-30",
            "2020-1-1",
            "yesterday",
            "2020-01-01T25:00Z",
            "2020-01-01T10:00+2",
        ] {
            assert!(parse_range(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn day_bounds_of_a_range() {
        let r = parse_range("1974-12").unwrap();
        let (a, b) = r.days();
        assert_eq!(a.to_string(), "1974-12-01");
        assert_eq!(b.to_string(), "1975-01-01");
    }
}
