//! The most of everything a request may hold ("put a limit on everything"): each list is
//! checked against its limit before any work on its items, so a small request cannot
//! cause large work (checking 3,000 targets pairwise) or a large answer. Each limit is at
//! least ten times the largest real use in the five seed contracts and the CRMs we know,
//! and is written in the proto field's comment. Stored resources are never checked
//! against limits: a limit applies to what comes in.

/// Opening windows of one day (calendar weekly hours and dated overrides).
pub const WINDOWS_PER_DAY: usize = super::calendar::MAX_WINDOWS_PER_DAY;
/// Entries of `weekly_hours`: one per weekday.
pub const WEEKDAYS: usize = 7;
/// Holidays of a calendar or of an organisation's binding: a national list over the
/// whole supported range (1970-2099) is about 1,500.
pub const HOLIDAYS: usize = 10_000;
/// Dated overrides of a calendar or of an organisation's binding.
pub const OVERRIDES: usize = 10_000;
/// Calendar bindings of an organisation (real: 1-2 slots).
pub const BINDINGS: usize = 32;
/// External references of an organisation (real: 1-2).
pub const EXTERNAL_IDS: usize = 64;
/// Contacts of an organisation (real: a handful; large customers a few dozen).
pub const CONTACTS: usize = 1_000;
/// Priority labels of a policy (real: at most 6).
pub const PRIORITIES: usize = 64;
/// Clocks of a policy (real: at most 4).
pub const CLOCKS: usize = 64;
/// Targets of a clock (real: at most 6).
pub const TARGETS: usize = 64;
/// Start, stop or cancel triggers of a clock (real: at most 5).
pub const TRIGGERS: usize = 32;
/// Pause statuses of a clock: there are 11 statuses.
pub const PAUSE_STATUSES: usize = 16;
/// Plans, priorities or request types a target applies to (real: at most 3).
pub const APPLICABILITY: usize = 64;
/// Warning thresholds of a target: distinct percentages 1-99.
pub const WARNINGS: usize = 99;
/// Estimate buckets of a rule (real: 3).
pub const ESTIMATE_BUCKETS: usize = 32;
/// Approval guards of a policy (real: 1).
pub const APPROVAL_GUARDS: usize = 32;
/// Buckets of an hour plan (real: 2).
pub const PLAN_BUCKETS: usize = 64;
/// Free activities of a bucket (real: 2).
pub const FREE_ACTIVITIES: usize = 64;
/// Plan assignments of an hours contract (real: one per plan change).
pub const ASSIGNMENTS: usize = 1_000;
/// Items of one `BatchUpsertTickets`.
pub const BATCH_ITEMS: usize = 500;
/// Events of one batch item (a CRM resyncing a ticket's history: real up to ~100).
pub const ITEM_EVENTS: usize = 1_000;
/// Entries of each map of a connection's mapping (a helpdesk's statuses, priorities or
/// types: real a dozen).
pub const MAPPING_ENTRIES: usize = 1_000;
/// Hypothetical events of one `QuoteDeadlines`.
pub const QUOTE_EVENTS: usize = 200;

/// The problem with a list over its limit, for the list's field.
pub fn too_many(count: usize, max: usize) -> String {
    format!("at most {max} are allowed, got {count}")
}
