//! Statements as CSV for billing jobs (docs/http.md): one row per organisation and
//! bucket, RFC 4180 quoting, and cells a spreadsheet would run as a formula escaped.

use crate::api::pb;

/// The columns, in order (docs/http.md describes each).
pub const COLUMNS: [&str; 23] = [
    "organization",
    "date",
    "bucket",
    "period_start",
    "period_end",
    "closes_time",
    "closed",
    "opening_minutes",
    "granted_minutes",
    "rolled_in_minutes",
    "consumed_from_allowance_minutes",
    "non_deducted_minutes",
    "overage_minutes",
    "overage_currency",
    "overage_minor_units",
    "expired_minutes",
    "adjustment_minutes",
    "closing_minutes",
    "raw_minutes",
    "billable_minutes",
    "held_minutes",
    "available_minutes",
    "as_of_time",
];

/// The header line.
pub fn header() -> String {
    let mut line = COLUMNS.join(",");
    line.push_str("\r\n");
    line
}

/// One cell: quoted when it holds a comma, quote or line break (RFC 4180), and prefixed
/// with `'` when it starts with a character a spreadsheet reads as a formula (OWASP's
/// advice against CSV injection). Integers are written by [`integer`], never escaped, so a
/// negative adjustment stays a number.
fn cell(value: &str) -> String {
    let guarded = match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}"),
        _ => value.to_string(),
    };
    if guarded.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

fn integer(n: i64) -> String {
    n.to_string()
}

fn timestamp(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

/// The rows of one statement, each ending in CRLF.
pub fn rows(s: &pb::Statement) -> String {
    let mut out = String::new();
    let as_of = timestamp(s.as_of_time.as_ref());
    for b in &s.buckets {
        // A bucket billed in more than one currency lists them in one cell each,
        // `;`-separated and in the same order (the usual plan has one).
        let currencies: Vec<&str> = b
            .overage_amounts
            .iter()
            .map(|m| m.currency.as_str())
            .collect();
        let amounts: Vec<String> = b
            .overage_amounts
            .iter()
            .map(|m| m.minor_units.to_string())
            .collect();
        let non_deducted: i64 = b.non_deducted.iter().map(|a| a.minutes).sum();
        let cells = [
            cell(&s.organization),
            cell(&s.date),
            cell(&b.bucket),
            cell(&b.period_start),
            cell(&b.period_end),
            timestamp(b.closes_time.as_ref()),
            b.closed.to_string(),
            integer(b.opening),
            integer(b.granted),
            integer(b.rolled_in),
            integer(b.consumed_from_allowance),
            integer(non_deducted),
            integer(b.overage_minutes),
            cell(&currencies.join(";")),
            amounts.join(";"),
            integer(b.expired),
            integer(b.adjustments),
            integer(b.closing),
            integer(b.raw_minutes),
            integer(b.billable_minutes),
            integer(b.held),
            integer(b.available),
            as_of.clone(),
        ];
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_and_formulas_escaped() {
        assert_eq!(cell("acme"), "acme");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("+1"), "'+1");
        assert_eq!(cell("-1"), "'-1");
        assert_eq!(cell("@sum"), "'@sum");
        assert_eq!(cell(""), "");
    }

    #[test]
    fn a_statement_is_one_row_per_bucket_with_integer_amounts() {
        let s = pb::Statement {
            organization: "organizations/acme".into(),
            date: "2026-11-15".into(),
            as_of_time: Some(prost_types::Timestamp {
                seconds: 1_795_000_000,
                nanos: 0,
            }),
            buckets: vec![
                pb::BucketStatement {
                    bucket: "meetings".into(),
                    period_start: "2026-11-01".into(),
                    period_end: "2026-12-01".into(),
                    granted: 180,
                    consumed_from_allowance: 180,
                    overage_minutes: 45,
                    overage_amounts: vec![pb::Money {
                        currency: "EUR".into(),
                        minor_units: 9000,
                    }],
                    adjustments: -30,
                    non_deducted: vec![
                        pb::ActivityMinutes {
                            activity_kind: "travel".into(),
                            minutes: 20,
                        },
                        pb::ActivityMinutes {
                            activity_kind: "admin".into(),
                            minutes: 5,
                        },
                    ],
                    ..Default::default()
                },
                pb::BucketStatement {
                    bucket: "support".into(),
                    ..Default::default()
                },
            ],
        };
        let text = rows(&s);
        let lines: Vec<&str> = text.split_terminator("\r\n").collect();
        assert_eq!(lines.len(), 2);
        let first: Vec<&str> = lines[0].split(',').collect();
        assert_eq!(first.len(), COLUMNS.len());
        let col = |name: &str| {
            let i = COLUMNS.iter().position(|c| *c == name).expect("column");
            first[i]
        };
        assert_eq!(col("organization"), "organizations/acme");
        assert_eq!(col("overage_currency"), "EUR");
        assert_eq!(col("overage_minor_units"), "9000");
        assert_eq!(col("adjustment_minutes"), "-30");
        assert_eq!(col("non_deducted_minutes"), "25");
        assert_eq!(col("as_of_time"), "2026-11-18T11:06:40Z");
        assert_eq!(header().trim_end().split(',').count(), COLUMNS.len());
    }
}
