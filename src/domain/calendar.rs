//! What a calendar says: a zone, weekly opening windows, holidays and dated overrides.
//!
//! A [`CalendarSpec`] can only be built valid; [`crate::domain::BusinessCalendar`] compiles
//! one into the tables the arithmetic runs on.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// At most this many windows on one day: more is a malformed calendar, not a schedule.
pub const MAX_WINDOWS_PER_DAY: usize = 16;

/// Seconds in a local day as read on the wall clock; `24:00` is this value.
const DAY_SECONDS: u32 = 86_400;

/// A local wall-clock time of day, `00:00` to `24:00` inclusive, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WallClock(u32);

impl TryFrom<String> for WallClock {
    type Error = CalendarError;
    fn try_from(s: String) -> Result<Self, CalendarError> {
        s.parse()
    }
}

impl From<WallClock> for String {
    fn from(w: WallClock) -> String {
        w.to_string()
    }
}

impl WallClock {
    /// Midnight at the start of a day.
    pub const MIDNIGHT: WallClock = WallClock(0);
    /// `24:00`, the end of a day.
    pub const END_OF_DAY: WallClock = WallClock(DAY_SECONDS);

    /// `hours:minutes:seconds`; `24:00:00` is the end of the day.
    pub fn from_hms(hours: u32, minutes: u32, seconds: u32) -> Result<Self, CalendarError> {
        let value = hours
            .checked_mul(3_600)
            .and_then(|h| h.checked_add(minutes.checked_mul(60)?))
            .and_then(|v| v.checked_add(seconds));
        match value {
            Some(v) if minutes < 60 && seconds < 60 && v <= DAY_SECONDS => Ok(WallClock(v)),
            _ => Err(CalendarError::BadWallClock(format!(
                "{hours:02}:{minutes:02}:{seconds:02}"
            ))),
        }
    }

    /// Seconds since local midnight.
    pub fn seconds(self) -> u32 {
        self.0
    }

    /// From seconds since local midnight (`0..=86400`).
    pub fn from_seconds(seconds: u32) -> Result<Self, CalendarError> {
        if seconds <= DAY_SECONDS {
            Ok(WallClock(seconds))
        } else {
            Err(CalendarError::BadWallClock(format!(
                "{seconds} s after midnight"
            )))
        }
    }
}

impl FromStr for WallClock {
    type Err = CalendarError;

    /// `HH:MM` or `HH:MM:SS`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CalendarError::BadWallClock(s.to_string());
        let parts: Vec<&str> = s.split(':').collect();
        if !(2..=3).contains(&parts.len())
            || parts
                .iter()
                .any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(bad());
        }
        let num = |p: &str| p.parse::<u32>().map_err(|_| bad());
        let seconds = if parts.len() == 3 { num(parts[2])? } else { 0 };
        WallClock::from_hms(num(parts[0])?, num(parts[1])?, seconds).map_err(|_| bad())
    }
}

impl fmt::Display for WallClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (h, m, s) = (self.0 / 3_600, self.0 / 60 % 60, self.0 % 60);
        if s == 0 {
            write!(f, "{h:02}:{m:02}")
        } else {
            write!(f, "{h:02}:{m:02}:{s:02}")
        }
    }
}

/// One opening window `[open, close)` in local wall-clock time, within one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawWindow")]
pub struct Window {
    open: WallClock,
    close: WallClock,
}

#[derive(Deserialize)]
struct RawWindow {
    open: WallClock,
    close: WallClock,
}

impl TryFrom<RawWindow> for Window {
    type Error = CalendarError;
    fn try_from(r: RawWindow) -> Result<Self, CalendarError> {
        Window::new(r.open, r.close)
    }
}

impl Window {
    /// A window; `open` must come before `close`.
    pub fn new(open: WallClock, close: WallClock) -> Result<Self, CalendarError> {
        if open == close {
            Err(CalendarError::EmptyWindow { at: open })
        } else if open > close {
            Err(CalendarError::WindowEndsBeforeItOpens { open, close })
        } else {
            Ok(Window { open, close })
        }
    }

    /// Parses `"08:00-12:00"`.
    pub fn parse(s: &str) -> Result<Self, CalendarError> {
        let (open, close) = s
            .split_once('-')
            .ok_or_else(|| CalendarError::BadWallClock(s.to_string()))?;
        Window::new(open.trim().parse()?, close.trim().parse()?)
    }

    pub fn open(&self) -> WallClock {
        self.open
    }

    pub fn close(&self) -> WallClock {
        self.close
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.open, self.close)
    }
}

/// Which day a validation error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayRef {
    Weekday(Weekday),
    Date(NaiveDate),
}

impl fmt::Display for DayRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DayRef::Weekday(w) => write!(f, "{w}"),
            DayRef::Date(d) => write!(f, "{d}"),
        }
    }
}

/// Why a calendar is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("unknown time zone {0:?}: expected an IANA name such as \"America/Toronto\"")]
    UnknownZone(String),
    #[error("malformed wall-clock time {0:?}: expected HH:MM or HH:MM:SS between 00:00 and 24:00")]
    BadWallClock(String),
    #[error("empty window: it opens and closes at {at}")]
    EmptyWindow { at: WallClock },
    #[error("window {open}-{close} closes before it opens")]
    WindowEndsBeforeItOpens { open: WallClock, close: WallClock },
    #[error("windows {first} and {second} on {day} overlap")]
    OverlappingWindows {
        day: DayRef,
        first: Window,
        second: Window,
    },
    #[error("{day} has {count} windows; at most {MAX_WINDOWS_PER_DAY} are allowed")]
    TooManyWindows { day: DayRef, count: usize },
    #[error("{0} is outside the supported dates 1970-01-01..2099-12-31")]
    DateOutOfRange(NaiveDate),
    #[error("{0} is both a holiday and a dated override")]
    HolidayAndOverride(NaiveDate),
    #[error("{0} has more than one dated override")]
    DuplicateOverride(NaiveDate),
    #[error("a 24x7 calendar is always open: it cannot have holidays or dated overrides")]
    AlwaysOpenWithExceptions,
    #[error("the calendar is never open between 1970 and 2099")]
    NeverOpen,
}

/// When a calendar is open, before holidays and overrides.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hours {
    /// Open around the clock, every day (a 24x7 desk).
    AlwaysOpen,
    /// Windows per weekday, Monday first.
    Weekly([Vec<Window>; 7]),
}

/// A valid calendar definition: built by [`CalendarSpec::new`] and never changed after.
/// Stored as JSON; reading it back checks it again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawCalendarSpec")]
pub struct CalendarSpec {
    zone: Tz,
    hours: Hours,
    holidays: BTreeSet<NaiveDate>,
    overrides: BTreeMap<NaiveDate, Vec<Window>>,
}

#[derive(Deserialize)]
struct RawCalendarSpec {
    zone: Tz,
    hours: Hours,
    holidays: BTreeSet<NaiveDate>,
    overrides: BTreeMap<NaiveDate, Vec<Window>>,
}

impl TryFrom<RawCalendarSpec> for CalendarSpec {
    type Error = CalendarError;
    fn try_from(r: RawCalendarSpec) -> Result<Self, CalendarError> {
        CalendarSpec::new(r.zone, r.hours, r.holidays, r.overrides)
    }
}

/// The first and last local dates a holiday or override may name.
fn supported_dates() -> (NaiveDate, NaiveDate) {
    (
        NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or(NaiveDate::MIN),
        NaiveDate::from_ymd_opt(2099, 12, 31).unwrap_or(NaiveDate::MAX),
    )
}

/// Parses an IANA zone name.
pub fn parse_zone(name: &str) -> Result<Tz, CalendarError> {
    name.parse::<Tz>()
        .map_err(|_| CalendarError::UnknownZone(name.to_string()))
}

impl CalendarSpec {
    /// Checks and builds a calendar. Windows of one day may come in any order; they are
    /// sorted, and must not overlap (touching is fine: `08:00-12:00` and `12:00-13:00`).
    pub fn new(
        zone: Tz,
        hours: Hours,
        holidays: impl IntoIterator<Item = NaiveDate>,
        overrides: impl IntoIterator<Item = (NaiveDate, Vec<Window>)>,
    ) -> Result<Self, CalendarError> {
        let (first, last) = supported_dates();
        let in_range = |d: NaiveDate| {
            if d < first || d > last {
                Err(CalendarError::DateOutOfRange(d))
            } else {
                Ok(d)
            }
        };
        let holidays = holidays
            .into_iter()
            .map(in_range)
            .collect::<Result<BTreeSet<_>, _>>()?;
        let mut dated = BTreeMap::new();
        for (date, windows) in overrides {
            in_range(date)?;
            if holidays.contains(&date) {
                return Err(CalendarError::HolidayAndOverride(date));
            }
            let windows = checked_day(DayRef::Date(date), windows)?;
            if dated.insert(date, windows).is_some() {
                return Err(CalendarError::DuplicateOverride(date));
            }
        }
        let hours = match hours {
            Hours::AlwaysOpen => {
                if !holidays.is_empty() || !dated.is_empty() {
                    return Err(CalendarError::AlwaysOpenWithExceptions);
                }
                Hours::AlwaysOpen
            }
            Hours::Weekly(days) => {
                let mut checked: [Vec<Window>; 7] = Default::default();
                for (i, windows) in days.into_iter().enumerate() {
                    let day = DayRef::Weekday(weekday_from_monday(i));
                    checked[i] = checked_day(day, windows)?;
                }
                Hours::Weekly(checked)
            }
        };
        let spec = CalendarSpec {
            zone,
            hours,
            holidays,
            overrides: dated,
        };
        if !spec.may_open() {
            return Err(CalendarError::NeverOpen);
        }
        Ok(spec)
    }

    /// A 24x7 calendar in `zone` (the zone still matters for business days and dates).
    pub fn always_open(zone: Tz) -> Self {
        CalendarSpec {
            zone,
            hours: Hours::AlwaysOpen,
            holidays: BTreeSet::new(),
            overrides: BTreeMap::new(),
        }
    }

    /// This calendar as an organisation adapts it: its own zone, its own weekly hours,
    /// its own holidays added and its own dated overrides. The organisation's word is the
    /// later one: an added holiday on a date the base calendar overrides closes that date,
    /// and an organisation's override on a date the base calendar makes a holiday or
    /// overrides opens it with the organisation's windows. An added holiday and an override
    /// on one date is an error. A 24x7 calendar with holidays or overrides added becomes
    /// every day 00:00-24:00 with those exceptions.
    pub fn customised(
        &self,
        zone: Option<Tz>,
        hours: Option<Hours>,
        extra_holidays: &[NaiveDate],
        extra_overrides: &BTreeMap<NaiveDate, Vec<Window>>,
    ) -> Result<CalendarSpec, CalendarError> {
        if let Some(d) = extra_holidays
            .iter()
            .find(|d| extra_overrides.contains_key(d))
        {
            return Err(CalendarError::HolidayAndOverride(*d));
        }
        let mut hours = hours.unwrap_or_else(|| self.hours.clone());
        if matches!(hours, Hours::AlwaysOpen)
            && !(extra_holidays.is_empty()
                && self.holidays.is_empty()
                && extra_overrides.is_empty())
        {
            let all_day = vec![Window {
                open: WallClock::MIDNIGHT,
                close: WallClock::END_OF_DAY,
            }];
            hours = Hours::Weekly(std::array::from_fn(|_| all_day.clone()));
        }
        let holidays: BTreeSet<NaiveDate> = self
            .holidays
            .iter()
            .chain(extra_holidays)
            .filter(|d| !extra_overrides.contains_key(d))
            .copied()
            .collect();
        let mut overrides: BTreeMap<NaiveDate, Vec<Window>> = self
            .overrides
            .iter()
            .filter(|(d, _)| !holidays.contains(d))
            .map(|(d, w)| (*d, w.clone()))
            .collect();
        overrides.extend(extra_overrides.iter().map(|(d, w)| (*d, w.clone())));
        CalendarSpec::new(zone.unwrap_or(self.zone), hours, holidays, overrides)
    }

    /// Checks one date's windows as an override takes them: sorted, none overlapping,
    /// at most the daily limit, and the date in range.
    pub fn checked_override(
        date: NaiveDate,
        windows: Vec<Window>,
    ) -> Result<Vec<Window>, CalendarError> {
        let (first, last) = supported_dates();
        if date < first || date > last {
            return Err(CalendarError::DateOutOfRange(date));
        }
        checked_day(DayRef::Date(date), windows)
    }

    /// Whether any window exists at all. A calendar can still turn out never open after
    /// compiling (every window swallowed by a DST gap), which compiling reports too.
    fn may_open(&self) -> bool {
        match &self.hours {
            Hours::AlwaysOpen => true,
            Hours::Weekly(days) => {
                days.iter().any(|d| !d.is_empty()) || self.overrides.values().any(|w| !w.is_empty())
            }
        }
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    pub fn hours(&self) -> &Hours {
        &self.hours
    }

    pub fn holidays(&self) -> &BTreeSet<NaiveDate> {
        &self.holidays
    }

    pub fn overrides(&self) -> &BTreeMap<NaiveDate, Vec<Window>> {
        &self.overrides
    }

    /// The windows of a local date: its override, none on a holiday, else its weekday's.
    pub fn windows_on(&self, date: NaiveDate) -> &[Window] {
        const ALL_DAY: [Window; 1] = [Window {
            open: WallClock::MIDNIGHT,
            close: WallClock::END_OF_DAY,
        }];
        if let Some(w) = self.overrides.get(&date) {
            return w;
        }
        if self.holidays.contains(&date) {
            return &[];
        }
        match &self.hours {
            Hours::AlwaysOpen => &ALL_DAY,
            Hours::Weekly(days) => &days[date.weekday().num_days_from_monday() as usize],
        }
    }

    /// The windows every ordinary week repeats, Monday first.
    pub(crate) fn weekly_windows(&self, weekday: usize) -> &[Window] {
        const ALL_DAY: [Window; 1] = [Window {
            open: WallClock::MIDNIGHT,
            close: WallClock::END_OF_DAY,
        }];
        match &self.hours {
            Hours::AlwaysOpen => &ALL_DAY,
            Hours::Weekly(days) => &days[weekday],
        }
    }

    /// Dates that differ from their weekday's windows.
    pub(crate) fn exception_dates(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.holidays.iter().chain(self.overrides.keys()).copied()
    }
}

fn checked_day(day: DayRef, mut windows: Vec<Window>) -> Result<Vec<Window>, CalendarError> {
    if windows.len() > MAX_WINDOWS_PER_DAY {
        return Err(CalendarError::TooManyWindows {
            day,
            count: windows.len(),
        });
    }
    windows.sort();
    for pair in windows.windows(2) {
        if pair[1].open < pair[0].close {
            return Err(CalendarError::OverlappingWindows {
                day,
                first: pair[0],
                second: pair[1],
            });
        }
    }
    Ok(windows)
}

/// Monday = 0.
pub(crate) fn weekday_from_monday(i: usize) -> Weekday {
    const DAYS: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];
    DAYS[i % 7]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Window {
        Window::parse(s).expect("valid window")
    }

    fn weekly(days: &[(usize, &[&str])]) -> Hours {
        let mut week: [Vec<Window>; 7] = Default::default();
        for (d, windows) in days {
            week[*d] = windows.iter().map(|s| w(s)).collect();
        }
        Hours::Weekly(week)
    }

    #[test]
    fn wall_clock_parses_and_prints() {
        assert_eq!(
            "08:30".parse::<WallClock>().map(WallClock::seconds),
            Ok(30_600)
        );
        assert_eq!("24:00".parse::<WallClock>(), Ok(WallClock::END_OF_DAY));
        assert_eq!(
            "18:30:15".parse::<WallClock>().map(|w| w.to_string()),
            Ok("18:30:15".into())
        );
        for bad in [
            "24:01",
            "8:00",
            "08:60",
            "08",
            "08:00:00:00",
            "ab:cd",
            "",
            "-1:00",
        ] {
            assert!(
                bad.parse::<WallClock>().is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn windows_must_open_before_they_close() {
        assert_eq!(
            Window::parse("09:00-09:00"),
            Err(CalendarError::EmptyWindow {
                at: "09:00".parse().expect("valid")
            })
        );
        assert!(matches!(
            Window::parse("17:00-09:00"),
            Err(CalendarError::WindowEndsBeforeItOpens { .. })
        ));
    }

    #[test]
    fn overlapping_windows_are_rejected_touching_ones_are_not() {
        let overlap = CalendarSpec::new(
            chrono_tz::UTC,
            weekly(&[(0, &["08:00-12:00", "11:00-13:00"])]),
            [],
            [],
        );
        assert!(matches!(
            overlap,
            Err(CalendarError::OverlappingWindows {
                day: DayRef::Weekday(Weekday::Mon),
                ..
            })
        ));
        let touching = CalendarSpec::new(
            chrono_tz::UTC,
            weekly(&[(0, &["12:00-13:00", "08:00-12:00"])]),
            [],
            [],
        );
        let spec = touching.expect("touching windows are fine");
        assert_eq!(
            spec.weekly_windows(0),
            &[w("08:00-12:00"), w("12:00-13:00")]
        );
    }

    #[test]
    fn a_calendar_that_never_opens_is_an_error() {
        assert_eq!(
            CalendarSpec::new(chrono_tz::UTC, weekly(&[]), [], []),
            Err(CalendarError::NeverOpen)
        );
        let date = NaiveDate::from_ymd_opt(2026, 6, 6).expect("valid");
        assert!(
            CalendarSpec::new(
                chrono_tz::UTC,
                weekly(&[]),
                [],
                [(date, vec![w("10:00-12:00")])]
            )
            .is_ok()
        );
    }

    #[test]
    fn unknown_zone_and_out_of_range_dates() {
        assert_eq!(
            parse_zone("Mars/Olympus"),
            Err(CalendarError::UnknownZone("Mars/Olympus".into()))
        );
        let date = NaiveDate::from_ymd_opt(2100, 1, 1).expect("valid");
        assert_eq!(
            CalendarSpec::new(chrono_tz::UTC, weekly(&[(0, &["09:00-17:00"])]), [date], []),
            Err(CalendarError::DateOutOfRange(date))
        );
    }

    #[test]
    fn holidays_and_overrides_must_not_collide() {
        let date = NaiveDate::from_ymd_opt(2026, 12, 24).expect("valid");
        assert_eq!(
            CalendarSpec::new(
                chrono_tz::UTC,
                weekly(&[(0, &["09:00-17:00"])]),
                [date],
                [(date, vec![])]
            ),
            Err(CalendarError::HolidayAndOverride(date))
        );
        assert_eq!(
            CalendarSpec::new(
                chrono_tz::UTC,
                weekly(&[(0, &["09:00-17:00"])]),
                [],
                [(date, vec![]), (date, vec![w("09:00-12:00")])]
            ),
            Err(CalendarError::DuplicateOverride(date))
        );
        assert_eq!(
            CalendarSpec::new(chrono_tz::UTC, Hours::AlwaysOpen, [date], []),
            Err(CalendarError::AlwaysOpenWithExceptions)
        );
    }

    #[test]
    fn too_many_windows() {
        let many: Vec<Window> = (0..17)
            .map(|h| {
                Window::new(
                    WallClock::from_hms(h, 0, 0).expect("ok"),
                    WallClock::from_hms(h, 30, 0).expect("ok"),
                )
                .expect("ok")
            })
            .collect();
        let mut week: [Vec<Window>; 7] = Default::default();
        week[2] = many;
        assert!(matches!(
            CalendarSpec::new(chrono_tz::UTC, Hours::Weekly(week), [], []),
            Err(CalendarError::TooManyWindows { count: 17, .. })
        ));
    }

    #[test]
    fn windows_on_prefers_override_then_holiday_then_weekday() {
        let holiday = NaiveDate::from_ymd_opt(2026, 4, 3).expect("valid"); // a Friday
        let saturday = NaiveDate::from_ymd_opt(2026, 4, 4).expect("valid");
        let spec = CalendarSpec::new(
            chrono_tz::America::Toronto,
            weekly(&[(4, &["08:00-18:30"])]),
            [holiday],
            [(saturday, vec![w("10:00-14:00")])],
        )
        .expect("valid");
        assert!(spec.windows_on(holiday).is_empty());
        assert_eq!(spec.windows_on(saturday), &[w("10:00-14:00")]);
        assert_eq!(
            spec.windows_on(holiday + chrono::Days::new(7)),
            &[w("08:00-18:30")]
        );
    }

    #[test]
    fn an_organisation_customises_a_calendar() {
        let eve = NaiveDate::from_ymd_opt(2026, 12, 24).expect("valid");
        let boxing = NaiveDate::from_ymd_opt(2026, 12, 26).expect("valid");
        let base = CalendarSpec::new(
            chrono_tz::America::New_York,
            weekly(&[(3, &["09:00-17:00"])]),
            [],
            [(eve, vec![w("09:00-12:00")])],
        )
        .expect("valid");
        let org = base
            .customised(
                Some(chrono_tz::America::Chicago),
                None,
                &[eve, boxing],
                &BTreeMap::new(),
            )
            .expect("valid");
        assert_eq!(org.zone(), chrono_tz::America::Chicago);
        assert!(
            org.windows_on(eve).is_empty(),
            "the organisation's holiday wins"
        );
        assert!(org.holidays().contains(&boxing));
        let always = CalendarSpec::always_open(chrono_tz::UTC)
            .customised(None, None, &[boxing], &BTreeMap::new())
            .expect("valid");
        assert!(always.windows_on(boxing).is_empty());
        assert_eq!(always.windows_on(eve), &[w("00:00-24:00")]);
    }

    #[test]
    fn an_organisations_override_wins_on_its_date() {
        let eve = NaiveDate::from_ymd_opt(2026, 12, 24).expect("valid");
        let christmas = NaiveDate::from_ymd_opt(2026, 12, 25).expect("valid");
        let saturday = NaiveDate::from_ymd_opt(2026, 12, 19).expect("valid");
        let base = CalendarSpec::new(
            chrono_tz::America::New_York,
            weekly(&[(3, &["09:00-17:00"]), (4, &["09:00-17:00"])]),
            [christmas],
            [(eve, vec![w("09:00-12:00")])],
        )
        .expect("valid");
        let mine = BTreeMap::from([
            (eve, vec![w("09:00-13:00")]),
            (christmas, vec![w("10:00-12:00")]),
            (saturday, vec![w("10:00-14:00")]),
        ]);
        let org = base.customised(None, None, &[], &mine).expect("valid");
        assert_eq!(
            org.windows_on(eve),
            &[w("09:00-13:00")],
            "over the calendar's override"
        );
        assert_eq!(
            org.windows_on(christmas),
            &[w("10:00-12:00")],
            "over its holiday"
        );
        assert_eq!(
            org.windows_on(saturday),
            &[w("10:00-14:00")],
            "an extra opening"
        );
        // A holiday and an override of the organisation's own on one date: refused.
        assert_eq!(
            base.customised(None, None, &[saturday], &mine),
            Err(CalendarError::HolidayAndOverride(saturday))
        );
        // A 24x7 calendar with an override: every day all day, the date as overridden.
        let always = CalendarSpec::always_open(chrono_tz::UTC)
            .customised(None, None, &[], &mine)
            .expect("valid");
        assert_eq!(always.windows_on(saturday), &[w("10:00-14:00")]);
        assert_eq!(
            always.windows_on(saturday + chrono::Days::new(1)),
            &[w("00:00-24:00")]
        );
    }

    #[test]
    fn specs_round_trip_through_json_and_are_checked_on_the_way_back() {
        let spec = CalendarSpec::new(
            chrono_tz::America::Toronto,
            weekly(&[(0, &["08:00-12:00", "13:00-18:30"])]),
            [NaiveDate::from_ymd_opt(2026, 7, 1).expect("valid")],
            [],
        )
        .expect("valid");
        let json = serde_json::to_string(&spec).expect("serialises");
        assert_eq!(serde_json::from_str::<CalendarSpec>(&json).ok(), Some(spec));
        let tampered = json.replace("13:00", "11:00");
        assert!(serde_json::from_str::<CalendarSpec>(&tampered).is_err());
    }
}
