//! Import of holiday dates from iCalendar (RFC 5545) text.
//!
//! Hand-written instead of built on the `rrule` or `icalendar` crates: those
//! bring regex or nom and model zoned date-times, while a holiday feed needs
//! whole dates, YEARLY rules and a hard bound on the work a file can cause.
//! Anything this module cannot interpret faithfully is an error rather than a
//! silently wrong business calendar.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{Datelike, Days, NaiveDate, Weekday};

/// Dates produced inside the window (counted before duplicates merge), so a
/// hostile file cannot exhaust memory.
const MAX_DATES: usize = 100_000;

/// Candidate dates examined while expanding rules. COUNT forces expansion from
/// DTSTART even when the window is far later, so this bounds CPU the way
/// `MAX_DATES` bounds memory; real feeds use a tiny fraction of it.
const MAX_WORK: u64 = 5_000_000;

/// Longest summary or UID quoted in an error message.
const LABEL_CHARS: usize = 80;

/// Why an .ics text could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IcsError {
    /// The text has no `BEGIN:VCALENDAR`, so it is probably not iCalendar.
    #[error("not an iCalendar text: no BEGIN:VCALENDAR found")]
    NoCalendar,
    /// A line that breaks the iCalendar structure.
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    /// A component opened at `line` is never closed (truncated file).
    #[error("line {line}: BEGIN:{component} is never closed by END:{component}")]
    Unterminated { line: usize, component: String },
    /// A property of an event has a value that cannot be used.
    #[error("line {line}: {property} of {event}: {message}")]
    InvalidProperty {
        line: usize,
        property: String,
        event: String,
        message: String,
    },
    /// An event as a whole is unusable (e.g. it has no DTSTART).
    #[error("{event}: {message}")]
    InvalidEvent { event: String, message: String },
    /// A recurrence this importer does not expand; refusing it beats
    /// dropping holidays silently.
    #[error("line {line}: {event}: unsupported recurrence: {message}")]
    UnsupportedRecurrence {
        line: usize,
        event: String,
        message: String,
    },
    /// The window would hold more dates than any holiday calendar needs.
    #[error("more than {limit} holiday dates in the requested range")]
    TooManyDates { limit: usize },
    /// Expanding a recurrence up to the window costs more than allowed.
    #[error("{event}: recurrence needs too much work to expand up to the requested range")]
    TooMuchWork { event: String },
}

/// One holiday read from a VEVENT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcsHoliday {
    pub date: NaiveDate,
    pub summary: String,
}

/// All-day VEVENTs of `text` expanded to dates within [from, to] (inclusive), sorted by date, without duplicates (same date from two events: keep the first summary).
///
/// Events with a time of day are skipped, as are cancelled ones. The whole
/// text is validated even when `from > to`, which yields no dates.
pub fn holidays_from_ics(
    text: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<IcsHoliday>, IcsError> {
    let events = parse_calendar(text)?
        .iter()
        .map(read_event)
        .collect::<Result<Vec<_>, _>>()?;

    // An override (same UID plus RECURRENCE-ID) replaces one occurrence of its
    // master, so the master must not also produce the original date.
    let mut replaced: HashMap<&str, BTreeSet<NaiveDate>> = HashMap::new();
    for event in &events {
        if let (Some(uid), Some(date)) = (event.uid.as_deref(), event.recurrence_id) {
            replaced.entry(uid).or_default().insert(date);
        }
    }

    let mut dates: BTreeMap<NaiveDate, &str> = BTreeMap::new();
    let mut produced = 0usize;
    let mut work = 0u64;
    if from <= to {
        for event in &events {
            let Some(all_day) = &event.all_day else {
                continue;
            };
            let moved = match (event.recurrence_id, event.uid.as_deref()) {
                (None, Some(uid)) => replaced.get(uid),
                _ => None,
            };
            let tail = Days::new(all_day.span_days.saturating_sub(1));
            // Occurrences starting before `from` still reach into the window.
            let lo = from.checked_sub_days(tail).unwrap_or(NaiveDate::MIN);
            let mut emit = |start: NaiveDate| -> Result<(), IcsError> {
                if all_day.exdates.contains(&start) || moved.is_some_and(|m| m.contains(&start)) {
                    return Ok(());
                }
                let last = start
                    .checked_add_days(tail)
                    .unwrap_or(NaiveDate::MAX)
                    .min(to);
                let mut day = start.max(from);
                while day <= last {
                    produced = produced.saturating_add(1);
                    if produced > MAX_DATES {
                        return Err(IcsError::TooManyDates { limit: MAX_DATES });
                    }
                    dates.entry(day).or_insert(&event.summary);
                    match day.succ_opt() {
                        Some(next) => day = next,
                        None => break,
                    }
                }
                Ok(())
            };
            emit(all_day.start)?;
            for &rdate in &all_day.rdates {
                emit(rdate)?;
            }
            if let Some(rule) = &all_day.rule {
                expand_yearly(
                    rule,
                    all_day.start,
                    lo,
                    to,
                    &mut work,
                    &event.label,
                    &mut emit,
                )?;
            }
        }
    }
    Ok(dates
        .into_iter()
        .map(|(date, summary)| IcsHoliday {
            date,
            summary: summary.to_owned(),
        })
        .collect())
}

// ---------------------------------------------------------------------------
// Lines and components

struct Property {
    line: usize,
    name: String,
    params: Vec<(String, Vec<String>)>,
    value: String,
}

impl Property {
    fn param(&self, name: &str) -> Option<&[String]> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    fn value_type(&self) -> Option<String> {
        self.param("VALUE")
            .and_then(|v| v.first())
            .map(|v| v.to_ascii_uppercase())
    }
}

struct RawEvent {
    line: usize,
    props: Vec<Property>,
}

/// Logical lines with the number of the physical line each starts on.
fn unfold(text: &str) -> Vec<(usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines: Vec<(usize, String)> = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(rest) = raw.strip_prefix([' ', '\t'])
            && let Some((_, previous)) = lines.last_mut()
        {
            previous.push_str(rest);
        } else if !raw.is_empty() {
            // A continuation with nothing before it stays a line of its own
            // and fails as content, before any VCALENDAR.
            lines.push((index.saturating_add(1), raw.to_owned()));
        }
    }
    lines
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn syntax(line: usize, message: impl Into<String>) -> IcsError {
    IcsError::Syntax {
        line,
        message: message.into(),
    }
}

/// `name *(";" param) ":" value`; quoted parameter values may hold `:;,`.
fn parse_content_line(line: usize, text: &str) -> Result<Property, IcsError> {
    let Some(name_end) = text.find([';', ':']) else {
        return Err(syntax(line, "expected NAME:VALUE"));
    };
    let (name, mut rest) = text.split_at(name_end);
    if !is_name(name) {
        return Err(syntax(line, format!("invalid property name {name:?}")));
    }
    let mut params = Vec::new();
    let value = loop {
        if let Some(value) = rest.strip_prefix(':') {
            break value;
        }
        let Some(param) = rest.strip_prefix(';') else {
            return Err(syntax(line, "expected ';' or ':' after a parameter"));
        };
        let Some((param_name, mut values_text)) = param.split_once('=') else {
            return Err(syntax(line, "parameter without '='"));
        };
        if !is_name(param_name) {
            return Err(syntax(
                line,
                format!("invalid parameter name {param_name:?}"),
            ));
        }
        let mut values = Vec::new();
        loop {
            if let Some(quoted) = values_text.strip_prefix('"') {
                let Some((value, after)) = quoted.split_once('"') else {
                    return Err(syntax(line, "unclosed quote in a parameter"));
                };
                values.push(value.to_owned());
                values_text = after;
            } else {
                let Some(end) = values_text.find([',', ';', ':']) else {
                    return Err(syntax(line, "expected ':' before the value"));
                };
                let (value, after) = values_text.split_at(end);
                values.push(value.to_owned());
                values_text = after;
            }
            match values_text.strip_prefix(',') {
                Some(after) => values_text = after,
                None => break,
            }
        }
        params.push((param_name.to_ascii_uppercase(), values));
        rest = values_text;
    };
    Ok(Property {
        line,
        name: name.to_ascii_uppercase(),
        params,
        value: value.to_owned(),
    })
}

/// The VEVENTs of every VCALENDAR in `text`, with only their own properties
/// (those of nested VALARMs are left out).
fn parse_calendar(text: &str) -> Result<Vec<RawEvent>, IcsError> {
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut events = Vec::new();
    let mut current: Option<RawEvent> = None;
    let mut saw_calendar = false;
    for (line, content) in unfold(text) {
        let prop = match parse_content_line(line, &content) {
            Ok(prop) => prop,
            // Garbage before any calendar means "not iCalendar" (an HTML
            // error page, say), which deserves the clearer error.
            Err(_) if !saw_calendar => return Err(IcsError::NoCalendar),
            Err(e) => return Err(e),
        };
        match prop.name.as_str() {
            "BEGIN" => {
                let component = prop.value.trim().to_ascii_uppercase();
                if !is_name(&component) {
                    return Err(syntax(
                        line,
                        format!("invalid component name {component:?}"),
                    ));
                }
                match (open.last().map(|(c, _)| c.as_str()), component.as_str()) {
                    (None, "VCALENDAR") => saw_calendar = true,
                    (None, _) if !saw_calendar => return Err(IcsError::NoCalendar),
                    (None, _) => {
                        return Err(syntax(line, format!("BEGIN:{component} outside VCALENDAR")));
                    }
                    (Some("VCALENDAR"), "VEVENT") => {
                        current = Some(RawEvent {
                            line,
                            props: Vec::new(),
                        });
                    }
                    (Some(parent), "VCALENDAR" | "VEVENT") => {
                        return Err(syntax(line, format!("BEGIN:{component} inside {parent}")));
                    }
                    _ => {}
                }
                open.push((component, line));
            }
            "END" => {
                let component = prop.value.trim().to_ascii_uppercase();
                match open.pop() {
                    Some((begun, _)) if begun == component => {
                        if component == "VEVENT"
                            && let Some(event) = current.take()
                        {
                            events.push(event);
                        }
                    }
                    Some((begun, begun_line)) => {
                        return Err(syntax(
                            line,
                            format!(
                                "END:{component} while BEGIN:{begun} of line {begun_line} is open"
                            ),
                        ));
                    }
                    None => return Err(syntax(line, format!("END:{component} without BEGIN"))),
                }
            }
            _ => match open.last() {
                None if !saw_calendar => return Err(IcsError::NoCalendar),
                None => {
                    return Err(syntax(line, format!("{} outside VCALENDAR", prop.name)));
                }
                Some((component, _)) if component == "VEVENT" => {
                    if let Some(event) = current.as_mut() {
                        event.props.push(prop);
                    }
                }
                Some(_) => {}
            },
        }
    }
    if let Some((component, line)) = open.pop() {
        return Err(IcsError::Unterminated { line, component });
    }
    if !saw_calendar {
        return Err(IcsError::NoCalendar);
    }
    Ok(events)
}

// ---------------------------------------------------------------------------
// Events

struct Event {
    label: String,
    uid: Option<String>,
    summary: String,
    recurrence_id: Option<NaiveDate>,
    /// `None` for events that produce no holiday: timed or cancelled ones.
    all_day: Option<AllDay>,
}

struct AllDay {
    start: NaiveDate,
    span_days: u64,
    rule: Option<Rule>,
    rdates: Vec<NaiveDate>,
    exdates: BTreeSet<NaiveDate>,
}

#[derive(Clone, Copy)]
enum DateValue {
    Date(NaiveDate),
    /// Only the date part is kept: the time matters just to tell that the
    /// event is not all-day, or to match dates of an all-day event.
    DateTime(NaiveDate),
}

impl DateValue {
    fn date(self) -> NaiveDate {
        match self {
            DateValue::Date(d) | DateValue::DateTime(d) => d,
        }
    }
}

fn digits(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit())
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    if !digits(s, 8) {
        return None;
    }
    let year = s.get(0..4)?.parse().ok()?;
    let month = s.get(4..6)?.parse().ok()?;
    let day = s.get(6..8)?.parse().ok()?;
    NaiveDate::from_ymd_opt(year, month, day)
}

fn parse_date_time(s: &str) -> Option<NaiveDate> {
    let (date, time) = s.split_once('T')?;
    let date = parse_date(date)?;
    let time = time.strip_suffix('Z').unwrap_or(time);
    if !digits(time, 6) {
        return None;
    }
    let hour: u32 = time.get(0..2)?.parse().ok()?;
    let minute: u32 = time.get(2..4)?.parse().ok()?;
    let second: u32 = time.get(4..6)?.parse().ok()?;
    // 60 is a leap second, which RFC 5545 allows.
    (hour < 24 && minute < 60 && second <= 60).then_some(date)
}

fn parse_date_value(prop: &Property, raw: &str) -> Result<DateValue, String> {
    let raw = raw.trim();
    let as_date = || {
        parse_date(raw)
            .map(DateValue::Date)
            .ok_or_else(|| format!("{raw:?} is not a date (YYYYMMDD)"))
    };
    let as_date_time = || {
        parse_date_time(raw)
            .map(DateValue::DateTime)
            .ok_or_else(|| format!("{raw:?} is not a date-time (YYYYMMDDTHHMMSS)"))
    };
    match prop.value_type().as_deref() {
        Some("DATE") => as_date(),
        Some("DATE-TIME") => as_date_time(),
        Some(other) => Err(format!("VALUE={other} is not supported here")),
        // Many feeds omit VALUE=DATE; the shape tells the two apart.
        None if raw.contains('T') => as_date_time(),
        None => as_date(),
    }
}

/// Length in seconds of an RFC 5545 duration such as `P3D`, `P1W`, `PT12H`.
fn parse_duration_seconds(text: &str) -> Option<i64> {
    let text = text.trim().to_ascii_uppercase();
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(&text)),
    };
    let mut rest = unsigned.strip_prefix('P')?;
    let mut total: i64 = 0;
    let mut in_time = false;
    let mut any = false;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('T') {
            if in_time {
                return None;
            }
            in_time = true;
            rest = after;
            continue;
        }
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(end);
        let number: i64 = number.parse().ok()?;
        let mut chars = after.chars();
        let unit = chars.next()?;
        rest = chars.as_str();
        let seconds = match (in_time, unit) {
            (false, 'W') => 604_800,
            (false, 'D') => 86_400,
            (true, 'H') => 3_600,
            (true, 'M') => 60,
            (true, 'S') => 1,
            _ => return None,
        };
        total = total.checked_add(number.checked_mul(seconds)?)?;
        any = true;
    }
    match (any, negative) {
        (false, _) => None,
        (true, false) => Some(total),
        (true, true) => total.checked_neg(),
    }
}

fn unescape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n' | 'N') => out.push('\n'),
            Some(escaped @ ('\\' | ';' | ',')) => out.push(escaped),
            // Not an RFC 5545 escape: keep what the producer wrote.
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn event_label(line: usize, uid: Option<&str>, summary: &str) -> String {
    let short = |s: &str| s.chars().take(LABEL_CHARS).collect::<String>();
    let mut label = String::from("VEVENT");
    if !summary.is_empty() {
        label.push_str(&format!(" {:?}", short(summary)));
    }
    if let Some(uid) = uid {
        label.push_str(&format!(" (UID {})", short(uid)));
    }
    label.push_str(&format!(" at line {line}"));
    label
}

fn read_event(raw: &RawEvent) -> Result<Event, IcsError> {
    let all = |name: &'static str| raw.props.iter().filter(move |p| p.name == name);
    let uid = all("UID").next().map(|p| p.value.trim().to_owned());
    let summary = all("SUMMARY")
        .next()
        .map(|p| unescape_text(&p.value))
        .unwrap_or_default();
    let label = event_label(raw.line, uid.as_deref(), &summary);
    let invalid = |prop: &Property, message: String| IcsError::InvalidProperty {
        line: prop.line,
        property: prop.name.clone(),
        event: label.clone(),
        message,
    };
    let unsupported = |line: usize, message: String| IcsError::UnsupportedRecurrence {
        line,
        event: label.clone(),
        message,
    };
    let single = |name: &'static str| -> Result<Option<&Property>, IcsError> {
        let mut found = all(name);
        let first = found.next();
        match found.next() {
            Some(second) => Err(invalid(second, "appears more than once".into())),
            None => Ok(first),
        }
    };

    let recurrence_id = match single("RECURRENCE-ID")? {
        None => None,
        Some(prop) => {
            let range = prop.param("RANGE").unwrap_or_default();
            if range
                .iter()
                .any(|r| r.eq_ignore_ascii_case("THISANDFUTURE"))
            {
                return Err(unsupported(prop.line, "RANGE=THISANDFUTURE".into()));
            }
            let date = parse_date_value(prop, &prop.value).map_err(|m| invalid(prop, m))?;
            Some(date.date())
        }
    };
    let mut event = Event {
        label: label.clone(),
        uid,
        summary,
        recurrence_id,
        all_day: None,
    };

    let Some(dtstart) = single("DTSTART")? else {
        return Err(IcsError::InvalidEvent {
            event: label.clone(),
            message: "has no DTSTART".into(),
        });
    };
    let start = match parse_date_value(dtstart, &dtstart.value).map_err(|m| invalid(dtstart, m))? {
        DateValue::Date(date) => date,
        // A feed may mix in meetings; only whole days are closures.
        DateValue::DateTime(_) => return Ok(event),
    };
    let cancelled = all("STATUS")
        .next()
        .is_some_and(|p| p.value.trim().eq_ignore_ascii_case("CANCELLED"));
    // Still recorded above when it is an override, so that cancelling one
    // occurrence removes it from its master.
    if cancelled {
        return Ok(event);
    }

    let span_days = match (single("DTEND")?, single("DURATION")?) {
        (Some(_), Some(duration)) => {
            return Err(invalid(duration, "cannot be combined with DTEND".into()));
        }
        (Some(dtend), None) => {
            let end = match parse_date_value(dtend, &dtend.value).map_err(|m| invalid(dtend, m))? {
                DateValue::Date(date) => date,
                DateValue::DateTime(_) => {
                    return Err(invalid(
                        dtend,
                        "is a date-time but DTSTART is a date".into(),
                    ));
                }
            };
            let days = end.signed_duration_since(start).num_days();
            match u64::try_from(days) {
                Ok(days) if days > 0 => days,
                _ => {
                    return Err(invalid(
                        dtend,
                        format!("{end} is not after DTSTART {start} (DTEND is exclusive)"),
                    ));
                }
            }
        }
        (None, Some(duration)) => {
            let seconds = parse_duration_seconds(&duration.value).ok_or_else(|| {
                invalid(duration, format!("{:?} is not a duration", duration.value))
            })?;
            // Zero time parts (P1DT0H) are tolerated: some exporters write them.
            match u64::try_from(seconds) {
                Ok(s) if s > 0 && s % 86_400 == 0 => s / 86_400,
                _ => {
                    return Err(invalid(
                        duration,
                        format!(
                            "{:?} is not a positive number of whole days",
                            duration.value
                        ),
                    ));
                }
            }
        }
        (None, None) => 1,
    };

    let mut rules = all("RRULE");
    let rule = rules.next();
    if let Some(second) = rules.next() {
        return Err(unsupported(second.line, "more than one RRULE".into()));
    }
    if let Some(exrule) = all("EXRULE").next() {
        return Err(unsupported(exrule.line, "EXRULE".into()));
    }
    let rule = match rule {
        None => None,
        Some(prop) if recurrence_id.is_some() => {
            return Err(unsupported(
                prop.line,
                "RRULE on a RECURRENCE-ID override".into(),
            ));
        }
        Some(prop) => Some(parse_rule(&prop.value, start).map_err(|e| match e {
            RuleError::Unsupported(m) => unsupported(prop.line, m),
            RuleError::Invalid(m) => invalid(prop, m),
        })?),
    };

    let mut rdates = Vec::new();
    for prop in all("RDATE") {
        if prop.value_type().as_deref() == Some("PERIOD") {
            return Err(unsupported(prop.line, "RDATE with VALUE=PERIOD".into()));
        }
        for item in prop.value.split(',') {
            rdates.push(
                parse_date_value(prop, item)
                    .map_err(|m| invalid(prop, m))?
                    .date(),
            );
        }
    }
    let mut exdates = BTreeSet::new();
    for prop in all("EXDATE") {
        for item in prop.value.split(',') {
            exdates.insert(
                parse_date_value(prop, item)
                    .map_err(|m| invalid(prop, m))?
                    .date(),
            );
        }
    }

    event.all_day = Some(AllDay {
        start,
        span_days,
        rule,
        rdates,
        exdates,
    });
    Ok(event)
}

// ---------------------------------------------------------------------------
// Yearly recurrence

struct Rule {
    interval: u32,
    count: Option<u32>,
    until: Option<NaiveDate>,
    /// Sorted, deduplicated; empty means every month.
    by_month: Vec<u32>,
    by_month_day: Vec<i32>,
    /// (ordinal, days from Monday); ordinal 0 means every such weekday.
    by_day: Vec<(i32, u32)>,
    by_set_pos: Vec<i32>,
}

enum RuleError {
    Unsupported(String),
    Invalid(String),
}

fn parse_list<T: Ord>(
    key: &str,
    value: &str,
    item: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, RuleError> {
    let mut items = value
        .split(',')
        .map(|s| item(s).ok_or_else(|| RuleError::Invalid(format!("{key}: bad value {s:?}"))))
        .collect::<Result<Vec<_>, _>>()?;
    // Deduplicated so that a list repeating one value thousands of times
    // cannot multiply the work done for every year.
    items.sort_unstable();
    items.dedup();
    Ok(items)
}

/// A non-zero number within ±`max`.
fn signed_in_range(s: &str, max: u32) -> Option<i32> {
    let n: i32 = s.parse().ok()?;
    (n != 0 && n.unsigned_abs() <= max).then_some(n)
}

fn parse_weekday(s: &str) -> Option<Weekday> {
    Some(match s {
        "MO" => Weekday::Mon,
        "TU" => Weekday::Tue,
        "WE" => Weekday::Wed,
        "TH" => Weekday::Thu,
        "FR" => Weekday::Fri,
        "SA" => Weekday::Sat,
        "SU" => Weekday::Sun,
        _ => return None,
    })
}

/// `[+|-][n]WD`, e.g. `MO`, `3MO`, `-1MO`, as (ordinal, days from Monday).
fn parse_by_day(s: &str) -> Option<(i32, u32)> {
    let split = s.len().checked_sub(2)?;
    let weekday = parse_weekday(s.get(split..)?)?;
    let ordinal = match s.get(..split)? {
        "" => 0,
        n => signed_in_range(n, 53)?,
    };
    Some((ordinal, weekday.num_days_from_monday()))
}

fn parse_rule(value: &str, start: NaiveDate) -> Result<Rule, RuleError> {
    let upper = value.trim().to_ascii_uppercase();
    let mut parts: Vec<(&str, &str)> = Vec::new();
    for part in upper.split(';').filter(|p| !p.is_empty()) {
        let Some((key, val)) = part.split_once('=') else {
            return Err(RuleError::Invalid(format!("{part:?} is not NAME=VALUE")));
        };
        if parts.iter().any(|(k, _)| *k == key) {
            return Err(RuleError::Invalid(format!("{key} appears twice")));
        }
        parts.push((key, val));
    }
    // FREQ first, so that a DAILY rule is reported as such and not by
    // whichever of its parts happens to be unsupported.
    match parts.iter().find(|(k, _)| *k == "FREQ").map(|(_, v)| *v) {
        Some("YEARLY") => {}
        Some(f @ ("SECONDLY" | "MINUTELY" | "HOURLY" | "DAILY" | "WEEKLY" | "MONTHLY")) => {
            return Err(RuleError::Unsupported(format!(
                "FREQ={f} (only FREQ=YEARLY is supported)"
            )));
        }
        Some(f) => return Err(RuleError::Invalid(format!("unknown FREQ={f}"))),
        None => return Err(RuleError::Invalid("FREQ is missing".into())),
    }

    let mut rule = Rule {
        interval: 1,
        count: None,
        until: None,
        by_month: Vec::new(),
        by_month_day: Vec::new(),
        by_day: Vec::new(),
        by_set_pos: Vec::new(),
    };
    for (key, val) in parts {
        let bad = || RuleError::Invalid(format!("{key}: bad value {val:?}"));
        match key {
            "FREQ" => {}
            "INTERVAL" => {
                rule.interval = val.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
            }
            "COUNT" => rule.count = Some(val.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?),
            // A date-time UNTIL on an all-day event (common in exports) is
            // taken by its date; the event's time zone is unknown here.
            "UNTIL" => {
                rule.until = Some(
                    parse_date(val)
                        .or_else(|| parse_date_time(val))
                        .ok_or_else(bad)?,
                );
            }
            "BYMONTH" => {
                rule.by_month = parse_list(key, val, |s| {
                    s.parse().ok().filter(|m| (1..=12).contains(m))
                })?;
            }
            "BYMONTHDAY" => rule.by_month_day = parse_list(key, val, |s| signed_in_range(s, 31))?,
            "BYDAY" => rule.by_day = parse_list(key, val, parse_by_day)?,
            "BYSETPOS" => rule.by_set_pos = parse_list(key, val, |s| signed_in_range(s, 366))?,
            // WKST only affects BYWEEKNO and weekly rules, neither of which is
            // expanded, so it is checked and then has no effect.
            "WKST" => {
                parse_weekday(val).ok_or_else(bad)?;
            }
            "BYYEARDAY" | "BYWEEKNO" | "BYHOUR" | "BYMINUTE" | "BYSECOND" => {
                return Err(RuleError::Unsupported(format!("{key} is not supported")));
            }
            _ => return Err(RuleError::Unsupported(format!("unknown rule part {key}"))),
        }
    }
    if rule.count.is_some() && rule.until.is_some() {
        return Err(RuleError::Invalid(
            "COUNT and UNTIL cannot both be set".into(),
        ));
    }
    if !rule.by_set_pos.is_empty()
        && rule.by_month.is_empty()
        && rule.by_month_day.is_empty()
        && rule.by_day.is_empty()
    {
        return Err(RuleError::Invalid(
            "BYSETPOS needs another BYxxx part".into(),
        ));
    }
    // Without day parts a yearly rule repeats DTSTART's month and day.
    if rule.by_month_day.is_empty() && rule.by_day.is_empty() {
        if rule.by_month.is_empty() {
            rule.by_month.push(start.month());
        }
        rule.by_month_day
            .push(i32::try_from(start.day()).unwrap_or(1));
    }
    Ok(rule)
}

fn is_leap(year: i32) -> bool {
    NaiveDate::from_ymd_opt(year, 2, 29).is_some()
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Whether `date` is the `ordinal`-th (negative: from the end) of its weekday
/// within its month, or within its year when the rule has no BYMONTH, as
/// RFC 5545 specifies for YEARLY rules.
fn ordinal_matches(ordinal: i32, date: NaiveDate, within_month: bool) -> bool {
    if ordinal == 0 {
        return true;
    }
    let (index, len) = if within_month {
        (date.day(), days_in_month(date.year(), date.month()))
    } else {
        (date.ordinal(), if is_leap(date.year()) { 366 } else { 365 })
    };
    // Zero-based: how many same weekdays precede / follow this one.
    let before = index.saturating_sub(1) / 7;
    let after = len.saturating_sub(index) / 7;
    let wanted = ordinal.unsigned_abs().checked_sub(1);
    wanted == Some(if ordinal > 0 { before } else { after })
}

const ALL_MONTHS: [u32; 12] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

/// The rule's dates in `year`, sorted; `work` grows by the candidates tried.
fn year_candidates(rule: &Rule, year: i32, out: &mut Vec<NaiveDate>, work: &mut u64) {
    out.clear();
    let within_month = !rule.by_month.is_empty();
    let months: &[u32] = if within_month {
        &rule.by_month
    } else {
        &ALL_MONTHS
    };
    let weekday_ok = |date: NaiveDate| {
        rule.by_day.is_empty()
            || rule.by_day.iter().any(|&(ordinal, weekday)| {
                date.weekday().num_days_from_monday() == weekday
                    && ordinal_matches(ordinal, date, within_month)
            })
    };
    for &month in months {
        let Some(first) = NaiveDate::from_ymd_opt(year, month, 1) else {
            continue;
        };
        if rule.by_month_day.is_empty() {
            // Walk only the matching weekdays instead of every day.
            for &(ordinal, weekday) in &rule.by_day {
                let Some(skip) = first
                    .iter_days()
                    .take(7)
                    .position(|d| d.weekday().num_days_from_monday() == weekday)
                else {
                    continue;
                };
                let dates = first.iter_days().skip(skip).step_by(7);
                for date in dates.take_while(|d| d.month() == month) {
                    *work = work.saturating_add(1);
                    if ordinal_matches(ordinal, date, within_month) {
                        out.push(date);
                    }
                }
            }
        } else {
            for &month_day in &rule.by_month_day {
                *work = work.saturating_add(1);
                let day = if month_day > 0 {
                    Some(month_day.unsigned_abs())
                } else {
                    // -1 is the last day; too negative for a short month is
                    // simply no date, like day 31 of April.
                    let back = month_day.unsigned_abs().saturating_sub(1);
                    days_in_month(year, month).checked_sub(back)
                };
                if let Some(date) = day.and_then(|d| first.with_day(d))
                    && weekday_ok(date)
                {
                    out.push(date);
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    if !rule.by_set_pos.is_empty() {
        let set = std::mem::take(out);
        for &position in &rule.by_set_pos {
            let index = if position > 0 {
                position
                    .checked_sub(1)
                    .and_then(|i| usize::try_from(i).ok())
            } else {
                usize::try_from(position.unsigned_abs())
                    .ok()
                    .and_then(|back| set.len().checked_sub(back))
            };
            if let Some(&date) = index.and_then(|i| set.get(i)) {
                out.push(date);
            }
        }
        out.sort_unstable();
        out.dedup();
    }
}

/// Calls `emit` for each occurrence after DTSTART (DTSTART itself, always the
/// first occurrence, is the caller's) that starts within [lo, hi].
fn expand_yearly(
    rule: &Rule,
    start: NaiveDate,
    lo: NaiveDate,
    hi: NaiveDate,
    work: &mut u64,
    event: &str,
    emit: &mut impl FnMut(NaiveDate) -> Result<(), IcsError>,
) -> Result<(), IcsError> {
    // DTSTART counts as the first of COUNT occurrences (RFC 5545 3.8.5.3).
    let mut remaining = rule.count.map(|c| c.saturating_sub(1));
    if remaining == Some(0) {
        return Ok(());
    }
    let step = i64::from(rule.interval);
    let mut year = i64::from(start.year());
    // Without COUNT nothing before the window needs counting, so jump to it.
    if remaining.is_none() && lo.year() > start.year() {
        let gap = i64::from(lo.year()).saturating_sub(year);
        let steps = gap
            .saturating_add(step.saturating_sub(1))
            .checked_div(step)
            .unwrap_or(0);
        year = year.saturating_add(steps.saturating_mul(step));
    }
    let last_year = i64::from(rule.until.map_or(hi, |u| u.min(hi)).year());
    let mut dates = Vec::new();
    while year <= last_year {
        let Ok(y) = i32::try_from(year) else {
            break;
        };
        *work = work.saturating_add(1);
        year_candidates(rule, y, &mut dates, work);
        if *work > MAX_WORK {
            return Err(IcsError::TooMuchWork {
                event: event.to_owned(),
            });
        }
        for &date in &dates {
            if date <= start {
                continue;
            }
            if date > hi || rule.until.is_some_and(|until| date > until) {
                return Ok(());
            }
            if let Some(left) = remaining.as_mut() {
                if *left == 0 {
                    return Ok(());
                }
                *left = left.saturating_sub(1);
            }
            if date >= lo {
                emit(date)?;
            }
        }
        if remaining == Some(0) {
            return Ok(());
        }
        year = year.saturating_add(step);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    /// Shaped like an exported Ontario holiday feed; written with LF here and
    /// sent as CRLF, as RFC 5545 requires, by `fixture()`.
    const FIXTURE_LF: &str = r"BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Example Corp//Ontario Holidays//EN
CALSCALE:GREGORIAN
METHOD:PUBLISH
X-WR-CALNAME:Ontario holidays
BEGIN:VTIMEZONE
TZID:America/Toronto
BEGIN:STANDARD
DTSTART:19701101T020000
TZOFFSETFROM:-0400
TZOFFSETTO:-0500
RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:19700308T020000
TZOFFSETFROM:-0500
TZOFFSETTO:-0400
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU
END:DAYLIGHT
END:VTIMEZONE
BEGIN:VEVENT
UID:new-years-day@example.com
DTSTAMP:20250101T000000Z
DTSTART;VALUE=DATE:20000101
DTEND;VALUE=DATE:20000102
RRULE:FREQ=YEARLY
SUMMARY;LANGUAGE=en-CA:New Year's Day
TRANSP:TRANSPARENT
END:VEVENT
BEGIN:VEVENT
UID:family-day@example.com
DTSTAMP:20250101T000000Z
DTSTART;VALUE=DATE:20080218
RRULE:FREQ=YEARLY;BYMONTH=2;BYDAY=3MO
SUMMARY:Family Day
DESCRIPTION:Third Monday of February\, observed in Ontario since 2008. Thi
 s description is long enough that the exporter folded it.
END:VEVENT
BEGIN:VEVENT
UID:good-friday-2026@example.com
DTSTAMP:20250101T000000Z
DTSTART;VALUE=DATE:20260403
SUMMARY:Good Friday
END:VEVENT
BEGIN:VEVENT
UID:good-friday-2027@example.com
DTSTAMP:20250101T000000Z
DTSTART;VALUE=DATE:20270326
DTEND;VALUE=DATE:20270327
SUMMARY:Good Friday
END:VEVENT
BEGIN:VEVENT
UID:victoria-day@example.com
DTSTAMP:20250101T000000Z
DTSTART;VALUE=DATE:20000522
RRULE:FREQ=YEARLY;BYMONTH=5;BYMONTHDAY=18,19,20,21,22,2
 3,24;BYDAY=MO
SUMMARY:Victoria Day
END:VEVENT
BEGIN:VEVENT
UID:canada-day@example.com
DTSTAMP:20250101T000000Z
DTSTART;VALUE=DATE:18670701
RRULE:FREQ=YEARLY;INTERVAL=1;WKST=SU
SUMMARY:Canada Day
END:VEVENT
BEGIN:VEVENT
UID:civic-holiday@example.com
DTSTAMP:20250101T000000Z
DTSTART;VALUE=DATE:20200803
RRULE:FREQ=YEARLY;BYMONTH=8;BYDAY=1MO
EXDATE;VALUE=DATE:20210802,20270802
SUMMARY:Civic Holiday
COMMENT:Not observed in 2021 or 2027.
END:VEVENT
BEGIN:VEVENT
UID:labour-day@example.com
DTSTAMP:20250101T000000Z
DTSTART;VALUE=DATE:20000904
RRULE:FREQ=YEARLY;BYDAY=1MO;BYMONTH=9
SUMMARY:Labour Day
END:VEVENT
BEGIN:VEVENT
UID:thanksgiving@example.com
DTSTAMP:20250101T000000Z
DTSTART;VALUE=DATE:20001009
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=2MO
SUMMARY:Thanksgiving\, Action de grâce
END:VEVENT
BEGIN:VEVENT
UID:remembrance-day@example.com
DTSTAMP:20250101T000000Z
DTSTART;VALUE=DATE:20201111
RRULE:FREQ=YEARLY;UNTIL=20261111T050000Z
SUMMARY:Remembrance Day
END:VEVENT
BEGIN:VEVENT
UID:staff-party@example.com
DTSTAMP:20250101T000000Z
DTSTART;TZID=America/Toronto:20261218T170000
DTEND;TZID=America/Toronto:20261218T220000
RRULE:FREQ=WEEKLY;COUNT=3
SUMMARY:Staff party
END:VEVENT
BEGIN:VEVENT
UID:christmas@example.com
DTSTAMP:20250101T000000Z
DTSTART;VALUE=DATE:20001225
RRULE:FREQ=YEARLY
SUMMARY:Christmas Day
END:VEVENT
BEGIN:VEVENT
UID:boxing-day@example.com
DTSTAMP:20250101T000000Z
DTSTART;VALUE=DATE:20001226
RRULE:FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=26
SUMMARY:Boxing Day
END:VEVENT
BEGIN:VEVENT
UID:winter-closure@example.com
DTSTAMP:20250101T000000Z
DTSTART;VALUE=DATE:20261224
DTEND;VALUE=DATE:20270103
RRULE:FREQ=YEARLY;COUNT=2
BEGIN:VALARM
ACTION:EMAIL
TRIGGER:-P7D
SUMMARY:Reminder
DESCRIPTION:The office closes next week.
ATTENDEE:mailto:staff@example.com
END:VALARM
SUMMARY:Winter office closure
DESCRIPTION:Closed from Christmas Eve through January 2nd and reopens the
	 next business day.
END:VEVENT
END:VCALENDAR
";

    fn fixture() -> String {
        FIXTURE_LF.replace('\n', "\r\n")
    }

    fn pairs(holidays: &[IcsHoliday]) -> Vec<(NaiveDate, &str)> {
        holidays
            .iter()
            .map(|h| (h.date, h.summary.as_str()))
            .collect()
    }

    fn closure(y: i32, m: u32, d: u32) -> (NaiveDate, &'static str) {
        (date(y, m, d), "Winter office closure")
    }

    fn expected_2026_2027() -> Vec<(NaiveDate, &'static str)> {
        vec![
            (date(2026, 1, 1), "New Year's Day"),
            (date(2026, 2, 16), "Family Day"),
            (date(2026, 4, 3), "Good Friday"),
            (date(2026, 5, 18), "Victoria Day"),
            (date(2026, 7, 1), "Canada Day"),
            (date(2026, 8, 3), "Civic Holiday"),
            (date(2026, 9, 7), "Labour Day"),
            (date(2026, 10, 12), "Thanksgiving, Action de grâce"),
            (date(2026, 11, 11), "Remembrance Day"),
            closure(2026, 12, 24),
            (date(2026, 12, 25), "Christmas Day"),
            (date(2026, 12, 26), "Boxing Day"),
            closure(2026, 12, 27),
            closure(2026, 12, 28),
            closure(2026, 12, 29),
            closure(2026, 12, 30),
            closure(2026, 12, 31),
            // The closure covers Jan 1 too; the earlier event's name wins.
            (date(2027, 1, 1), "New Year's Day"),
            closure(2027, 1, 2),
            (date(2027, 2, 15), "Family Day"),
            (date(2027, 3, 26), "Good Friday"),
            (date(2027, 5, 24), "Victoria Day"),
            (date(2027, 7, 1), "Canada Day"),
            // Civic Holiday 2027-08-02 is an EXDATE; Remembrance Day ended
            // with UNTIL in 2026.
            (date(2027, 9, 6), "Labour Day"),
            (date(2027, 10, 11), "Thanksgiving, Action de grâce"),
            closure(2027, 12, 24),
            (date(2027, 12, 25), "Christmas Day"),
            (date(2027, 12, 26), "Boxing Day"),
            closure(2027, 12, 27),
            closure(2027, 12, 28),
            closure(2027, 12, 29),
            closure(2027, 12, 30),
            closure(2027, 12, 31),
        ]
    }

    #[test]
    fn fixture_2026_and_2027() {
        let got = holidays_from_ics(&fixture(), date(2026, 1, 1), date(2027, 12, 31)).unwrap();
        assert_eq!(pairs(&got), expected_2026_2027());
    }

    #[test]
    fn fixture_statutory_dates_2026() {
        let got = holidays_from_ics(&fixture(), date(2026, 1, 1), date(2026, 12, 31)).unwrap();
        let statutory: Vec<NaiveDate> = got
            .iter()
            .filter(|h| {
                !matches!(
                    h.summary.as_str(),
                    "Winter office closure" | "Civic Holiday" | "Remembrance Day"
                )
            })
            .map(|h| h.date)
            .collect();
        let expected = [
            (1, 1),
            (2, 16),
            (4, 3),
            (5, 18),
            (7, 1),
            (9, 7),
            (10, 12),
            (12, 25),
            (12, 26),
        ]
        .map(|(m, d)| date(2026, m, d));
        assert_eq!(statutory, expected);
    }

    #[test]
    fn fixture_2028_after_count_runs_out() {
        let got = holidays_from_ics(&fixture(), date(2028, 1, 1), date(2028, 12, 31)).unwrap();
        let expected = vec![
            (date(2028, 1, 1), "New Year's Day"),
            // Tail of the second and last (COUNT=2) closure.
            closure(2028, 1, 2),
            (date(2028, 2, 21), "Family Day"),
            (date(2028, 5, 22), "Victoria Day"),
            (date(2028, 7, 1), "Canada Day"),
            (date(2028, 8, 7), "Civic Holiday"),
            (date(2028, 9, 4), "Labour Day"),
            (date(2028, 10, 9), "Thanksgiving, Action de grâce"),
            (date(2028, 12, 25), "Christmas Day"),
            (date(2028, 12, 26), "Boxing Day"),
        ];
        assert_eq!(pairs(&got), expected);
    }

    #[test]
    fn lf_only_gives_the_same_result() {
        let crlf = holidays_from_ics(&fixture(), date(2026, 1, 1), date(2027, 12, 31)).unwrap();
        let lf = holidays_from_ics(FIXTURE_LF, date(2026, 1, 1), date(2027, 12, 31)).unwrap();
        assert_eq!(crlf, lf);
    }

    #[test]
    fn window_clips_a_span_that_started_before_it() {
        let got = holidays_from_ics(&fixture(), date(2027, 1, 2), date(2027, 2, 1)).unwrap();
        assert_eq!(pairs(&got), vec![closure(2027, 1, 2)]);
    }

    #[test]
    fn empty_or_reversed_window_yields_nothing() {
        let got = holidays_from_ics(&fixture(), date(2027, 1, 3), date(2027, 1, 4)).unwrap();
        assert!(got.is_empty());
        let got = holidays_from_ics(&fixture(), date(2027, 12, 31), date(2026, 1, 1)).unwrap();
        assert!(got.is_empty());
    }

    /// A calendar holding `body` between VCALENDAR lines.
    fn cal(body: &str) -> String {
        format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n{body}END:VCALENDAR\r\n")
    }

    /// A calendar with one VEVENT made of `props` (one per line).
    fn one_event(props: &[&str]) -> String {
        let mut body = String::from("BEGIN:VEVENT\r\nUID:test@example.com\r\n");
        for prop in props {
            body.push_str(prop);
            body.push_str("\r\n");
        }
        body.push_str("END:VEVENT\r\n");
        cal(&body)
    }

    fn dates_of(text: &str, from: NaiveDate, to: NaiveDate) -> Vec<NaiveDate> {
        holidays_from_ics(text, from, to)
            .unwrap()
            .into_iter()
            .map(|h| h.date)
            .collect()
    }

    fn years_2026_2028() -> (NaiveDate, NaiveDate) {
        (date(2026, 1, 1), date(2028, 12, 31))
    }

    #[test]
    fn last_monday_of_may_by_ordinal_and_by_setpos() {
        let (from, to) = years_2026_2028();
        let expected = vec![date(2026, 5, 25), date(2027, 5, 31), date(2028, 5, 29)];
        let ordinal = one_event(&[
            "DTSTART;VALUE=DATE:20260525",
            "RRULE:FREQ=YEARLY;BYMONTH=5;BYDAY=-1MO",
        ]);
        assert_eq!(dates_of(&ordinal, from, to), expected);
        // Outlook writes "last Monday" this way.
        let setpos = one_event(&[
            "DTSTART;VALUE=DATE:20260525",
            "RRULE:FREQ=YEARLY;BYDAY=MO;BYMONTH=5;BYSETPOS=-1",
        ]);
        assert_eq!(dates_of(&setpos, from, to), expected);
    }

    #[test]
    fn ordinal_weekday_without_bymonth_counts_within_the_year() {
        let (from, to) = years_2026_2028();
        let first_monday =
            one_event(&["DTSTART;VALUE=DATE:20260105", "RRULE:FREQ=YEARLY;BYDAY=1MO"]);
        assert_eq!(
            dates_of(&first_monday, from, to),
            vec![date(2026, 1, 5), date(2027, 1, 4), date(2028, 1, 3)]
        );
        let last_friday = one_event(&[
            "DTSTART;VALUE=DATE:20261225",
            "RRULE:FREQ=YEARLY;BYDAY=-1FR",
        ]);
        assert_eq!(
            dates_of(&last_friday, from, to),
            vec![date(2026, 12, 25), date(2027, 12, 31), date(2028, 12, 29)]
        );
    }

    #[test]
    fn negative_month_day_is_counted_from_the_end() {
        let (from, to) = years_2026_2028();
        let text = one_event(&[
            "DTSTART;VALUE=DATE:20260228",
            "RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=-1",
        ]);
        assert_eq!(
            dates_of(&text, from, to),
            vec![date(2026, 2, 28), date(2027, 2, 28), date(2028, 2, 29)]
        );
    }

    #[test]
    fn duration_in_days_and_weeks() {
        let (from, to) = years_2026_2028();
        let days = one_event(&["DTSTART;VALUE=DATE:20260706", "DURATION:P3D"]);
        assert_eq!(
            dates_of(&days, from, to),
            vec![date(2026, 7, 6), date(2026, 7, 7), date(2026, 7, 8)]
        );
        let week = one_event(&["DTSTART;VALUE=DATE:20260706", "DURATION:P1W"]);
        assert_eq!(dates_of(&week, from, to).len(), 7);
        let zero_time = one_event(&["DTSTART;VALUE=DATE:20260706", "DURATION:P1DT0H0M0S"]);
        assert_eq!(dates_of(&zero_time, from, to), vec![date(2026, 7, 6)]);
    }

    #[test]
    fn recurring_span_repeats_whole_span() {
        let (from, to) = years_2026_2028();
        let text = one_event(&[
            "DTSTART;VALUE=DATE:20260803",
            "DURATION:P2D",
            "RRULE:FREQ=YEARLY;BYMONTH=8;BYDAY=1MO;COUNT=2",
        ]);
        assert_eq!(
            dates_of(&text, from, to),
            vec![
                date(2026, 8, 3),
                date(2026, 8, 4),
                date(2027, 8, 2),
                date(2027, 8, 3)
            ]
        );
    }

    #[test]
    fn interval_and_date_until() {
        let text = one_event(&[
            "DTSTART;VALUE=DATE:20200615",
            "RRULE:FREQ=YEARLY;INTERVAL=2;UNTIL=20260615",
        ]);
        assert_eq!(
            dates_of(&text, date(2019, 1, 1), date(2030, 12, 31)),
            vec![
                date(2020, 6, 15),
                date(2022, 6, 15),
                date(2024, 6, 15),
                date(2026, 6, 15)
            ]
        );
        // The jump to the window keeps the INTERVAL phase.
        let endless = one_event(&[
            "DTSTART;VALUE=DATE:19010615",
            "RRULE:FREQ=YEARLY;INTERVAL=2",
        ]);
        assert_eq!(
            dates_of(&endless, date(2026, 1, 1), date(2028, 12, 31)),
            vec![date(2027, 6, 15)]
        );
    }

    #[test]
    fn dtstart_is_the_first_occurrence_even_off_rule() {
        let text = one_event(&[
            "DTSTART;VALUE=DATE:20260101",
            "RRULE:FREQ=YEARLY;BYMONTH=7;BYMONTHDAY=1;COUNT=2",
        ]);
        assert_eq!(
            dates_of(&text, date(2026, 1, 1), date(2030, 12, 31)),
            vec![date(2026, 1, 1), date(2026, 7, 1)]
        );
    }

    #[test]
    fn february_29_recurs_only_in_leap_years() {
        let text = one_event(&["DTSTART;VALUE=DATE:20240229", "RRULE:FREQ=YEARLY"]);
        assert_eq!(
            dates_of(&text, date(2024, 1, 1), date(2032, 12, 31)),
            vec![date(2024, 2, 29), date(2028, 2, 29), date(2032, 2, 29)]
        );
    }

    #[test]
    fn rdate_adds_and_exdate_removes_dtstart() {
        let text = one_event(&[
            "DTSTART;VALUE=DATE:20260101",
            "RDATE;VALUE=DATE:20260301,20260401",
            "EXDATE;VALUE=DATE:20260101",
        ]);
        assert_eq!(
            dates_of(&text, date(2026, 1, 1), date(2026, 12, 31)),
            vec![date(2026, 3, 1), date(2026, 4, 1)]
        );
    }

    #[test]
    fn bare_dates_without_value_param_are_all_day() {
        let text = one_event(&["DTSTART:20261225", "DTEND:20261227"]);
        assert_eq!(
            dates_of(&text, date(2026, 1, 1), date(2026, 12, 31)),
            vec![date(2026, 12, 25), date(2026, 12, 26)]
        );
    }

    #[test]
    fn recurrence_id_moves_or_cancels_one_occurrence() {
        let text = cal(concat!(
            "BEGIN:VEVENT\r\nUID:xmas@example.com\r\nDTSTART;VALUE=DATE:20251225\r\n",
            "RRULE:FREQ=YEARLY\r\nSUMMARY:Christmas Day\r\nEND:VEVENT\r\n",
            // 2027 falls on a Saturday: observed on Monday the 27th instead.
            "BEGIN:VEVENT\r\nUID:xmas@example.com\r\nRECURRENCE-ID;VALUE=DATE:20271225\r\n",
            "DTSTART;VALUE=DATE:20271227\r\nSUMMARY:Christmas Day (observed)\r\nEND:VEVENT\r\n",
            "BEGIN:VEVENT\r\nUID:xmas@example.com\r\nRECURRENCE-ID;VALUE=DATE:20281225\r\n",
            "DTSTART;VALUE=DATE:20281225\r\nSTATUS:CANCELLED\r\nEND:VEVENT\r\n",
        ));
        let got = holidays_from_ics(&text, date(2026, 1, 1), date(2029, 12, 31)).unwrap();
        assert_eq!(
            pairs(&got),
            vec![
                (date(2026, 12, 25), "Christmas Day"),
                (date(2027, 12, 27), "Christmas Day (observed)"),
                (date(2029, 12, 25), "Christmas Day"),
            ]
        );
    }

    #[test]
    fn summary_escapes_and_params() {
        let text = one_event(&[
            "DTSTART;VALUE=DATE:20260101",
            r#"SUMMARY;LANGUAGE=en;X-NOTE="a:b;c":A\, B\; C\\ D\nE"#,
        ]);
        let got = holidays_from_ics(&text, date(2026, 1, 1), date(2026, 1, 1)).unwrap();
        assert_eq!(got[0].summary, "A, B; C\\ D\nE");
    }

    #[test]
    fn folding_with_space_or_tab() {
        let text = one_event(&[
            "DTSTART;VALUE=DA",
            " TE:20260101",
            "SUMMARY:New Y",
            "\tear's D",
            " ay",
        ]);
        let got = holidays_from_ics(&text, date(2026, 1, 1), date(2026, 1, 1)).unwrap();
        assert_eq!(pairs(&got), vec![(date(2026, 1, 1), "New Year's Day")]);
    }

    #[test]
    fn duplicate_dates_keep_the_first_summary() {
        let text = cal(concat!(
            "BEGIN:VEVENT\r\nUID:a\r\nDTSTART;VALUE=DATE:20260701\r\nSUMMARY:Canada Day\r\nEND:VEVENT\r\n",
            "BEGIN:VEVENT\r\nUID:b\r\nDTSTART;VALUE=DATE:20260630\r\nDURATION:P3D\r\n",
            "SUMMARY:Summer shutdown\r\nEND:VEVENT\r\n",
        ));
        let got = holidays_from_ics(&text, date(2026, 1, 1), date(2026, 12, 31)).unwrap();
        assert_eq!(
            pairs(&got),
            vec![
                (date(2026, 6, 30), "Summer shutdown"),
                (date(2026, 7, 1), "Canada Day"),
                (date(2026, 7, 2), "Summer shutdown"),
            ]
        );
    }

    #[test]
    fn timed_and_cancelled_events_are_skipped() {
        let text = cal(concat!(
            "BEGIN:VEVENT\r\nUID:a\r\nDTSTART:20260701T090000Z\r\nRRULE:FREQ=DAILY\r\nEND:VEVENT\r\n",
            "BEGIN:VEVENT\r\nUID:b\r\nDTSTART;VALUE=DATE:20260702\r\nSTATUS:CANCELLED\r\nEND:VEVENT\r\n",
        ));
        assert!(dates_of(&text, date(2026, 1, 1), date(2026, 12, 31)).is_empty());
    }

    fn err(text: &str) -> IcsError {
        holidays_from_ics(text, date(2026, 1, 1), date(2027, 12, 31)).unwrap_err()
    }

    #[test]
    fn not_a_calendar() {
        assert_eq!(err(""), IcsError::NoCalendar);
        assert_eq!(err("\r\n\r\n"), IcsError::NoCalendar);
        assert_eq!(
            err("<!DOCTYPE html>\n<html></html>\n"),
            IcsError::NoCalendar
        );
        assert_eq!(err("BEGIN:VEVENT\r\nEND:VEVENT\r\n"), IcsError::NoCalendar);
    }

    #[test]
    fn bad_date_names_line_and_event() {
        let e = err(&one_event(&["SUMMARY:Bad", "DTSTART;VALUE=DATE:20261332"]));
        let IcsError::InvalidProperty {
            line,
            property,
            event,
            ..
        } = &e
        else {
            panic!("{e:?}");
        };
        assert_eq!((*line, property.as_str()), (6, "DTSTART"));
        assert!(
            event.contains("\"Bad\"") && event.contains("test@example.com"),
            "{event}"
        );
        assert!(e.to_string().contains("20261332"), "{e}");
        // VALUE=DATE with a time is not a date either.
        assert!(matches!(
            err(&one_event(&["DTSTART;VALUE=DATE:20261225T000000"])),
            IcsError::InvalidProperty { .. }
        ));
        assert!(matches!(
            err(&one_event(&["DTSTART:20261225T250000"])),
            IcsError::InvalidProperty { .. }
        ));
    }

    #[test]
    fn unterminated_components() {
        let text = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nDTSTART;VALUE=DATE:20260101\r\n";
        assert_eq!(
            err(text),
            IcsError::Unterminated {
                line: 2,
                component: "VEVENT".into()
            }
        );
        assert_eq!(
            err("BEGIN:VCALENDAR\r\n"),
            IcsError::Unterminated {
                line: 1,
                component: "VCALENDAR".into()
            }
        );
    }

    #[test]
    fn structural_errors() {
        assert!(matches!(
            err("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nEND:VCALENDAR\r\n"),
            IcsError::Syntax { line: 3, .. }
        ));
        assert!(matches!(
            err(&cal(
                "BEGIN:VEVENT\r\nBEGIN:VEVENT\r\nEND:VEVENT\r\nEND:VEVENT\r\n"
            )),
            IcsError::Syntax { line: 4, .. }
        ));
        assert!(matches!(
            err(&cal("no colon here\r\n")),
            IcsError::Syntax { line: 3, .. }
        ));
        assert!(matches!(
            err(&format!("{}X-AFTER:1\r\n", cal(""))),
            IcsError::Syntax { line: 4, .. }
        ));
        assert!(matches!(
            err(&cal("END:VEVENT\r\n")),
            IcsError::Syntax { line: 3, .. }
        ));
    }

    #[test]
    fn dtend_must_be_after_dtstart() {
        for dtend in ["DTEND;VALUE=DATE:20261225", "DTEND;VALUE=DATE:20261224"] {
            let e = err(&one_event(&["DTSTART;VALUE=DATE:20261225", dtend]));
            assert!(
                matches!(&e, IcsError::InvalidProperty { property, .. } if property == "DTEND"),
                "{e:?}"
            );
        }
        let e = err(&one_event(&[
            "DTSTART;VALUE=DATE:20261225",
            "DTEND:20261226T000000",
        ]));
        assert!(e.to_string().contains("date-time"), "{e}");
        for duration in [
            "DURATION:P0D",
            "DURATION:-P1D",
            "DURATION:PT12H",
            "DURATION:P",
        ] {
            let e = err(&one_event(&["DTSTART;VALUE=DATE:20261225", duration]));
            assert!(
                matches!(e, IcsError::InvalidProperty { .. }),
                "{duration}: {e:?}"
            );
        }
        let e = err(&one_event(&[
            "DTSTART;VALUE=DATE:20261225",
            "DTEND;VALUE=DATE:20261226",
            "DURATION:P1D",
        ]));
        assert!(matches!(e, IcsError::InvalidProperty { .. }), "{e:?}");
    }

    #[test]
    fn missing_or_repeated_dtstart() {
        let e = err(&one_event(&["SUMMARY:Nothing"]));
        assert!(matches!(e, IcsError::InvalidEvent { .. }), "{e:?}");
        let e = err(&one_event(&[
            "DTSTART;VALUE=DATE:20260101",
            "DTSTART;VALUE=DATE:20260102",
        ]));
        assert!(matches!(e, IcsError::InvalidProperty { .. }), "{e:?}");
    }

    #[test]
    fn other_frequencies_are_refused_naming_the_event() {
        for freq in ["DAILY", "WEEKLY", "MONTHLY"] {
            let e = err(&one_event(&[
                "SUMMARY:Payday",
                "DTSTART;VALUE=DATE:20260115",
                &format!("RRULE:FREQ={freq};BYMONTHDAY=15"),
            ]));
            let IcsError::UnsupportedRecurrence {
                line,
                event,
                message,
            } = &e
            else {
                panic!("{e:?}");
            };
            assert_eq!(*line, 7);
            assert!(event.contains("Payday") && event.contains("test@example.com"));
            assert!(message.contains(freq), "{message}");
        }
    }

    #[test]
    fn unsupported_rule_parts_are_refused() {
        for rule in [
            "RRULE:FREQ=YEARLY;BYWEEKNO=20;BYDAY=MO",
            "RRULE:FREQ=YEARLY;BYYEARDAY=100",
            "RRULE:FREQ=YEARLY;BYHOUR=9",
            "RRULE:FREQ=YEARLY;X-FOO=1",
        ] {
            let e = err(&one_event(&["DTSTART;VALUE=DATE:20260101", rule]));
            assert!(
                matches!(e, IcsError::UnsupportedRecurrence { .. }),
                "{rule}: {e:?}"
            );
        }
        let e = err(&one_event(&[
            "DTSTART;VALUE=DATE:20260101",
            "RRULE:FREQ=YEARLY",
            "RRULE:FREQ=YEARLY;BYMONTH=7",
        ]));
        assert!(matches!(e, IcsError::UnsupportedRecurrence { .. }), "{e:?}");
        let e = err(&one_event(&[
            "DTSTART;VALUE=DATE:20260101",
            "EXRULE:FREQ=YEARLY",
        ]));
        assert!(matches!(e, IcsError::UnsupportedRecurrence { .. }), "{e:?}");
        let e = err(&one_event(&[
            "DTSTART;VALUE=DATE:20260101",
            "RDATE;VALUE=PERIOD:20260101T000000Z/P1D",
        ]));
        assert!(matches!(e, IcsError::UnsupportedRecurrence { .. }), "{e:?}");
    }

    #[test]
    fn malformed_rules_are_invalid() {
        for rule in [
            "RRULE:BYMONTH=1",
            "RRULE:FREQ=YEARLY;COUNT=2;UNTIL=20300101",
            "RRULE:FREQ=YEARLY;COUNT=0",
            "RRULE:FREQ=YEARLY;INTERVAL=0",
            "RRULE:FREQ=YEARLY;BYMONTH=13",
            "RRULE:FREQ=YEARLY;BYMONTHDAY=0",
            "RRULE:FREQ=YEARLY;BYMONTHDAY=-2147483648",
            "RRULE:FREQ=YEARLY;BYSETPOS=-2147483648;BYMONTH=1",
            "RRULE:FREQ=YEARLY;BYDAY=0MO",
            "RRULE:FREQ=YEARLY;BYDAY=-2147483648MO",
            "RRULE:FREQ=YEARLY;BYDAY=54MO",
            "RRULE:FREQ=YEARLY;BYDAY=3XX",
            "RRULE:FREQ=YEARLY;BYDAY=",
            "RRULE:FREQ=YEARLY;UNTIL=2030",
            "RRULE:FREQ=YEARLY;FREQ=YEARLY",
            "RRULE:FREQ=FORTNIGHTLY",
            "RRULE:FREQ=YEARLY;BYSETPOS=1",
        ] {
            let e = err(&one_event(&["DTSTART;VALUE=DATE:20260101", rule]));
            assert!(
                matches!(e, IcsError::InvalidProperty { .. }),
                "{rule}: {e:?}"
            );
        }
    }

    #[test]
    fn too_many_dates_is_an_error() {
        let text = one_event(&["DTSTART;VALUE=DATE:20000101", "DURATION:P200000D"]);
        let e = holidays_from_ics(&text, date(2000, 1, 1), date(2600, 1, 1)).unwrap_err();
        assert_eq!(e, IcsError::TooManyDates { limit: MAX_DATES });
    }

    #[test]
    fn expansion_work_is_bounded() {
        // COUNT forces counting from year 1; every day of every year is a
        // candidate, and none lands in the window until year 9999. Each such
        // event costs about 3.7 million steps, so the second one trips the
        // budget shared by the whole import.
        let rule = "RRULE:FREQ=YEARLY;COUNT=4000000000;BYMONTHDAY=1,2,3,4,5,6,7,8,9,10,11,12,13,\
                    14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31";
        let event = format!(
            "BEGIN:VEVENT\r\nUID:x\r\nDTSTART;VALUE=DATE:00010101\r\n{rule}\r\nEND:VEVENT\r\n"
        );
        let text = cal(&event.repeat(2));
        let e = holidays_from_ics(&text, date(9999, 12, 1), date(9999, 12, 31)).unwrap_err();
        assert!(matches!(e, IcsError::TooMuchWork { .. }), "{e:?}");
        // Without COUNT the same rule jumps straight to the window.
        let rule = rule.replace("COUNT=4000000000;", "");
        let text = one_event(&["DTSTART;VALUE=DATE:00010101", &rule]);
        let got = dates_of(&text, date(9999, 12, 1), date(9999, 12, 31));
        assert_eq!(got.len(), 31);
    }

    #[test]
    fn extreme_dates_do_not_overflow() {
        let text = one_event(&[
            "DTSTART;VALUE=DATE:99991231",
            "DURATION:P9999999999D",
            "RRULE:FREQ=YEARLY;INTERVAL=4294967295",
        ]);
        let got = dates_of(&text, NaiveDate::MAX, NaiveDate::MAX);
        assert_eq!(got, vec![NaiveDate::MAX]);
        let got = dates_of(&text, NaiveDate::MIN, date(9999, 12, 31));
        assert_eq!(got, vec![date(9999, 12, 31)]);
        let huge = one_event(&[
            "DTSTART;VALUE=DATE:20260101",
            "DURATION:P99999999999999999999D",
        ]);
        assert!(holidays_from_ics(&huge, NaiveDate::MIN, NaiveDate::MAX).is_err());
    }

    fn check_no_panic(text: &str) {
        // Both outcomes are fine; only a panic fails the test.
        let _ = holidays_from_ics(text, date(2026, 1, 1), date(2027, 12, 31));
    }

    #[test]
    fn truncated_prefixes_never_panic() {
        let text = fixture();
        for (end, _) in text.char_indices() {
            check_no_panic(&text[..end]);
        }
        check_no_panic(&text);
    }

    #[test]
    fn damaged_fixtures_never_panic() {
        let text = fixture();
        let lines: Vec<&str> = text.split("\r\n").collect();
        for skip in 0..lines.len() {
            let mut damaged: Vec<&str> = lines.clone();
            damaged.remove(skip);
            check_no_panic(&damaged.join("\r\n"));
        }
        // Deterministic pseudo-random byte swaps with characters that matter
        // to the grammar.
        let specials = [
            ':', ';', ',', '=', '"', '\\', '-', '+', 'T', 'Z', '0', '9', ' ', '\n', 'P', 'D',
        ];
        let chars: Vec<char> = text.chars().collect();
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..3000 {
            let mut mutated = chars.clone();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed % mutated.len() as u64) as usize;
                let with = specials[((seed >> 32) % specials.len() as u64) as usize];
                mutated[at] = with;
            }
            check_no_panic(&mutated.into_iter().collect::<String>());
        }
    }
}
