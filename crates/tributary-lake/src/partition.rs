//! Hive-style partition paths from record times (`dt=%Y-%m-%d/hour=%H`).

use std::collections::HashMap;
use std::fmt;

use chrono::format::{Fixed, Item, Numeric, StrftimeItems};
use chrono::{DateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use crate::error::LakeError;
use crate::layout::validate_path;

/// Earliest time a path is computed for (0001-01-01T00:00:00Z); earlier
/// times are clamped to it.
const MIN_MS: i64 = -62_135_596_800_000;
/// Latest time a path is computed for (9999-12-31T23:59:59.999Z); later
/// times are clamped to it.
const MAX_MS: i64 = 253_402_300_799_999;
const MINUTE_MS: i64 = 60_000;

/// A validated `partition_by` template in a timezone.
///
/// ```
/// use tributary_lake::PartitionTemplate;
///
/// let t = PartitionTemplate::new("dt=%Y-%m-%d/hour=%H", "Europe/Berlin").unwrap();
/// // 2026-11-24T06:30:00Z is 07:30 in Berlin.
/// assert_eq!(t.path_for(1_795_501_800_000), "dt=2026-11-24/hour=07");
/// ```
#[derive(Clone)]
pub struct PartitionTemplate {
    template: String,
    tz: Tz,
    items: Vec<Item<'static>>,
    /// The template shows nothing finer than a minute, so every instant of
    /// a minute (where the zone's offset is whole minutes) has the same path.
    per_minute: bool,
}

impl fmt::Debug for PartitionTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionTemplate")
            .field("template", &self.template)
            .field("timezone", &self.tz.name())
            .finish()
    }
}

impl PartitionTemplate {
    /// Parses and checks a template (strftime syntax) and an IANA timezone.
    /// Pure: no I/O.
    ///
    /// Rejected: unknown `%` items, a leading `/`, empty segments, `.`/`..`
    /// segments, segments starting with `_` or `.` (Hive-style readers hide
    /// those, and `_tributary`/`_dead_letter` are the lake's own), and
    /// templates whose output is not a valid object path.
    pub fn new(template: &str, timezone: &str) -> Result<Self, LakeError> {
        let err = |message: String| LakeError::Template {
            template: template.to_string(),
            timezone: timezone.to_string(),
            message,
        };
        let tz: Tz = timezone
            .parse()
            .map_err(|_| err(format!("unknown timezone {timezone:?} (use an IANA name such as \"UTC\" or \"Europe/Berlin\")")))?;
        if template.is_empty() {
            return Err(err("the template is empty".into()));
        }
        if template.starts_with('/') {
            return Err(err("the template must not start with '/'".into()));
        }
        for segment in template.split('/') {
            if segment.is_empty() {
                return Err(err(
                    "the template has an empty segment ('//' or a trailing '/')".into(),
                ));
            }
            if segment == "." || segment == ".." {
                return Err(err(format!("segment {segment:?} is not allowed")));
            }
            if segment.starts_with('_') || segment.starts_with('.') {
                return Err(err(format!(
                    "segment {segment:?} starts with '_' or '.', which readers treat as hidden"
                )));
            }
        }
        let mut items = Vec::new();
        for item in StrftimeItems::new(template) {
            if matches!(item, Item::Error) {
                return Err(err(
                    "invalid strftime item (see chrono's strftime documentation; write '%%' for a literal '%')".into(),
                ));
            }
            items.push(own(item));
        }
        let per_minute = items.iter().all(|i| !is_sub_minute(i));
        let t = Self {
            template: template.to_string(),
            tz,
            items,
            per_minute,
        };
        for sample in [0, 1_795_501_800_123, MIN_MS, MAX_MS] {
            let path = t.path_for(sample);
            validate_path(&path).map_err(|e| err(format!("it produces {path:?}: {e}")))?;
        }
        Ok(t)
    }

    /// The template as given.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// The timezone the template is evaluated in.
    pub fn timezone(&self) -> &str {
        self.tz.name()
    }

    /// The partition path of a record time (milliseconds since the Unix
    /// epoch). Times before year 1 or after year 9999 are clamped.
    pub fn path_for(&self, event_time_ms: i64) -> String {
        let ms = event_time_ms.clamp(MIN_MS, MAX_MS);
        let utc = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
        utc.with_timezone(&self.tz)
            .format_with_items(self.items.iter())
            .to_string()
    }

    /// Groups rows by partition path: for each distinct path, in the order
    /// first seen, the indices of the rows that belong to it.
    ///
    /// Computed once per minute of record time when the template shows
    /// nothing finer than minutes, so this is cheap to call for every row.
    pub fn group(&self, event_time_ms: &[i64]) -> Vec<(String, Vec<u32>)> {
        let mut groups: Vec<(String, Vec<u32>)> = Vec::new();
        let mut by_path: HashMap<String, usize> = HashMap::new();
        let mut slot = |path: String, groups: &mut Vec<(String, Vec<u32>)>| -> usize {
            *by_path.entry(path).or_insert_with_key(|path| {
                groups.push((path.clone(), Vec::new()));
                groups.len() - 1
            })
        };
        // Per minute: the group index, or None where the minute is not
        // uniform (zone offset with seconds, or a transition inside it).
        let mut by_minute: HashMap<i64, Option<usize>> = HashMap::new();
        let mut last: Option<(i64, Option<usize>)> = None;
        for (row, &ms) in event_time_ms.iter().enumerate() {
            let row = u32::try_from(row).unwrap_or(u32::MAX);
            let ms = ms.clamp(MIN_MS, MAX_MS);
            let index = if self.per_minute {
                let minute = ms.div_euclid(MINUTE_MS);
                let cached = match last {
                    Some((m, g)) if m == minute => g,
                    _ => {
                        let g = match by_minute.get(&minute) {
                            Some(g) => *g,
                            None => {
                                let g = if self.minute_is_uniform(minute) {
                                    Some(slot(self.path_for(minute * MINUTE_MS), &mut groups))
                                } else {
                                    None
                                };
                                by_minute.insert(minute, g);
                                g
                            }
                        };
                        last = Some((minute, g));
                        g
                    }
                };
                match cached {
                    Some(g) => g,
                    None => slot(self.path_for(ms), &mut groups),
                }
            } else {
                slot(self.path_for(ms), &mut groups)
            };
            groups[index].1.push(row);
        }
        groups
    }

    fn minute_is_uniform(&self, minute: i64) -> bool {
        let offset = |ms: i64| {
            DateTime::<Utc>::from_timestamp_millis(ms.clamp(MIN_MS, MAX_MS))
                .map(|t| {
                    self.tz
                        .offset_from_utc_datetime(&t.naive_utc())
                        .fix()
                        .local_minus_utc()
                })
                .unwrap_or(1)
        };
        let start = minute * MINUTE_MS;
        let a = offset(start);
        let b = offset(start + MINUTE_MS - 1);
        a == b && a % 60 == 0
    }
}

fn own(item: Item<'_>) -> Item<'static> {
    match item {
        Item::Literal(s) => Item::OwnedLiteral(s.into()),
        Item::Space(s) => Item::OwnedSpace(s.into()),
        Item::OwnedLiteral(s) => Item::OwnedLiteral(s),
        Item::OwnedSpace(s) => Item::OwnedSpace(s),
        Item::Numeric(n, p) => Item::Numeric(n, p),
        Item::Fixed(f) => Item::Fixed(f),
        Item::Error => Item::Error,
    }
}

/// Whether an item shows seconds or finer (`%S %s %f %T %X %+ %r %c ...`).
/// Unknown items count as finer, which only costs speed.
fn is_sub_minute(item: &Item<'_>) -> bool {
    match item {
        Item::Literal(_) | Item::OwnedLiteral(_) | Item::Space(_) | Item::OwnedSpace(_) => false,
        Item::Numeric(n, _) => !matches!(
            n,
            Numeric::Year
                | Numeric::YearDiv100
                | Numeric::YearMod100
                | Numeric::IsoYear
                | Numeric::IsoYearDiv100
                | Numeric::IsoYearMod100
                | Numeric::Quarter
                | Numeric::Month
                | Numeric::Day
                | Numeric::WeekFromSun
                | Numeric::WeekFromMon
                | Numeric::IsoWeek
                | Numeric::NumDaysFromSun
                | Numeric::WeekdayFromMon
                | Numeric::Ordinal
                | Numeric::Hour
                | Numeric::Hour12
                | Numeric::Minute
        ),
        Item::Fixed(f) => !matches!(
            f,
            Fixed::ShortMonthName
                | Fixed::LongMonthName
                | Fixed::ShortWeekdayName
                | Fixed::LongWeekdayName
                | Fixed::LowerAmPm
                | Fixed::UpperAmPm
                | Fixed::TimezoneName
                | Fixed::TimezoneOffsetColon
                | Fixed::TimezoneOffsetDoubleColon
                | Fixed::TimezoneOffsetTripleColon
                | Fixed::TimezoneOffsetColonZ
                | Fixed::TimezoneOffset
                | Fixed::TimezoneOffsetZ
        ),
        Item::Error => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-24T06:30:00Z
    const T: i64 = 1_795_501_800_000;

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn formats_in_timezone() {
        assert_eq!(ms("2026-11-24T06:30:00Z"), T);
        let utc = PartitionTemplate::new("dt=%Y-%m-%d/hour=%H", "UTC").unwrap();
        assert_eq!(utc.path_for(T), "dt=2026-11-24/hour=06");
        let berlin = PartitionTemplate::new("dt=%Y-%m-%d/hour=%H", "Europe/Berlin").unwrap();
        assert_eq!(berlin.path_for(T), "dt=2026-11-24/hour=07");
        assert_eq!(berlin.timezone(), "Europe/Berlin");
        assert_eq!(berlin.template(), "dt=%Y-%m-%d/hour=%H");
        // Summer time.
        assert_eq!(
            berlin.path_for(ms("2026-07-01T23:30:00Z")),
            "dt=2026-07-02/hour=01"
        );
        let kolkata = PartitionTemplate::new("%Y%m%d-%H%M", "Asia/Kolkata").unwrap();
        assert_eq!(kolkata.path_for(T), "20261124-1200");
    }

    #[test]
    fn rejects_bad_templates() {
        for bad in [
            "",
            "/dt=%Y",
            "dt=%Y//h=%H",
            "dt=%Y/",
            "../%Y",
            "dt=%Y/./x",
            "_tributary/%Y",
            ".hidden/%Y",
            "dt=%Q",
            "dt=%",
            "dt=%Y\\x",
        ] {
            let e = PartitionTemplate::new(bad, "UTC").unwrap_err();
            assert!(matches!(e, LakeError::Template { .. }), "{bad:?}: {e}");
        }
        let e = PartitionTemplate::new("dt=%Y", "Mars/Olympus").unwrap_err();
        assert!(e.to_string().contains("unknown timezone"), "{e}");
        // %D contains '/', which only adds segments.
        assert_eq!(
            PartitionTemplate::new("d=%D", "UTC").unwrap().path_for(T),
            "d=11/24/26"
        );
        PartitionTemplate::new("pct=%%", "UTC").unwrap();
    }

    #[test]
    fn sub_minute_detection() {
        for (t, per_minute) in [
            ("dt=%Y-%m-%d/hour=%H", true),
            ("m=%M/%Z/%z/%b/%a/%p", true),
            ("s=%S", false),
            ("ts=%s", false),
            ("f=%f", false),
            ("t=%T", false),
            ("x=%X", false),
            ("r=%r", false),
            ("p=%+", false),
            ("static", true),
        ] {
            let tpl = PartitionTemplate::new(t, "UTC").unwrap();
            assert_eq!(tpl.per_minute, per_minute, "{t}");
        }
    }

    #[test]
    fn groups_rows_in_first_seen_order() {
        let t = PartitionTemplate::new("dt=%Y-%m-%d/hour=%H", "UTC").unwrap();
        let h = 3_600_000;
        let times = [T, T + h, T + 1, T - h, T + h + 5, T + 59_999, T + 60_000];
        let groups = t.group(&times);
        assert_eq!(
            groups,
            vec![
                ("dt=2026-11-24/hour=06".to_string(), vec![0, 2, 5, 6]),
                ("dt=2026-11-24/hour=07".to_string(), vec![1, 4]),
                ("dt=2026-11-24/hour=05".to_string(), vec![3]),
            ]
        );
        assert!(t.group(&[]).is_empty());
    }

    #[test]
    fn group_matches_path_for() {
        // A spread of times, including negative ones, DST transitions in
        // Berlin and a local-mean-time offset with seconds (Amsterdam 1900).
        let mut times = Vec::new();
        let mut x: i64 = 12345;
        for _ in 0..5_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            times.push(T + (x >> 20) % (400 * 86_400_000));
        }
        times.push(ms("2026-03-29T00:59:59.999Z"));
        times.push(ms("2026-03-29T01:00:00Z"));
        times.push(ms("2026-10-25T00:59:59.999Z"));
        times.push(ms("2026-10-25T01:00:00.000Z"));
        times.push(ms("1900-01-01T12:00:10Z"));
        times.push(ms("1900-01-01T12:00:50Z"));
        times.push(-1);
        times.push(i64::MIN);
        times.push(i64::MAX);
        for (tpl, tz) in [
            ("dt=%Y-%m-%d/hour=%H", "UTC"),
            ("dt=%Y-%m-%d/hour=%H/min=%M", "Europe/Berlin"),
            ("min=%H%M", "Europe/Amsterdam"),
            ("sec=%H%M%S", "Europe/Amsterdam"),
            ("z=%Y%m%d%H%z", "America/St_Johns"),
        ] {
            let t = PartitionTemplate::new(tpl, tz).unwrap();
            let groups = t.group(&times);
            let mut seen = 0;
            for (path, rows) in &groups {
                for &r in rows {
                    assert_eq!(&t.path_for(times[r as usize]), path, "{tpl} {tz} row {r}");
                }
                seen += rows.len();
            }
            assert_eq!(seen, times.len());
            let mut paths: Vec<_> = groups.iter().map(|g| &g.0).collect();
            paths.sort();
            paths.dedup();
            assert_eq!(paths.len(), groups.len(), "paths are distinct");
        }
    }

    #[test]
    fn clamps_extreme_times() {
        let t = PartitionTemplate::new("y=%Y", "Asia/Tokyo").unwrap();
        assert_eq!(t.path_for(i64::MIN), "y=0001");
        assert!(t.path_for(i64::MAX).contains("10000"));
        let t = PartitionTemplate::new("y=%Y", "America/New_York").unwrap();
        assert_eq!(t.path_for(i64::MIN), "y=0000");
        assert_eq!(t.path_for(i64::MAX), "y=9999");
    }
}
