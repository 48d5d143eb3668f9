//! An organisation's hours contract: when it starts (the periods' anchor) and which plan
//! it is on from which date, turned into the terms history its ledgers run on.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::catalog::{Dated, in_force};
use super::ledger::{
    BucketName, Contract, LedgerError, Plan, TermsHistory, TermsVersion, start_of_day,
};
use super::names::{PlanName, ResourceId};

/// From a local date on, the organisation is on a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanAssignment {
    pub plan: ResourceId,
    pub effective_date: NaiveDate,
}

/// What an organisation bought: stored as a versioned resource of the organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoursContractSpec {
    /// The contract start date: monthly and yearly periods are anchored on it.
    pub start: NaiveDate,
    /// Plans over time; sorted by date, no two on one date.
    pub assignments: Vec<PlanAssignment>,
}

/// One problem with a contract, by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractViolation {
    pub path: String,
    pub reason: String,
}

impl HoursContractSpec {
    /// A contract with its assignments sorted; every problem named by its field.
    pub fn new(
        start: NaiveDate,
        mut assignments: Vec<PlanAssignment>,
    ) -> Result<Self, Vec<ContractViolation>> {
        let mut errors = Vec::new();
        if assignments.is_empty() {
            errors.push(ContractViolation {
                path: "assignments".into(),
                reason: "at least one plan assignment is needed".into(),
            });
        }
        let dates: BTreeSet<NaiveDate> = assignments.iter().map(|a| a.effective_date).collect();
        if dates.len() != assignments.len() {
            errors.push(ContractViolation {
                path: "assignments".into(),
                reason: "two assignments share an effective date".into(),
            });
        }
        if let Some(first) = dates.first()
            && *first > start
        {
            // Periods start at the contract start; a gap before the first plan would leave
            // them without terms.
            errors.push(ContractViolation {
                path: "assignments[0].effective_date".into(),
                reason: format!("the first plan must apply from the start date {start} or before"),
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        assignments.sort_by_key(|a| a.effective_date);
        Ok(HoursContractSpec { start, assignments })
    }

    /// The plans the contract uses.
    pub fn plans(&self) -> BTreeSet<&ResourceId> {
        self.assignments.iter().map(|a| &a.plan).collect()
    }

    /// The ledger contract: the terms in force at each instant are the version, then in
    /// force, of the plan assigned then. Versions start wherever the assignment or the
    /// plan's terms change.
    pub fn contract(
        &self,
        zone: Tz,
        plans: &BTreeMap<ResourceId, Vec<Dated<Plan>>>,
    ) -> Result<Contract, LedgerError> {
        let mut assigned: Vec<Dated<&ResourceId>> = Vec::new();
        for a in &self.assignments {
            let at = start_of_day(zone, a.effective_date)
                .ok_or_else(|| LedgerError::OutOfRange(a.effective_date.to_string()))?;
            assigned.push(Dated {
                effective_at: at,
                value: &a.plan,
            });
        }
        let mut boundaries: BTreeSet<DateTime<Utc>> =
            assigned.iter().map(|a| a.effective_at).collect();
        let first = boundaries.first().copied();
        for id in self.plans() {
            let versions = plans.get(id).ok_or_else(|| missing(id))?;
            boundaries.extend(
                versions
                    .iter()
                    .map(|v| v.effective_at)
                    .filter(|t| first.is_some_and(|f| *t > f)),
            );
        }
        let mut versions: Vec<TermsVersion> = Vec::new();
        for at in boundaries {
            let Some(id) = in_force(&assigned, at) else {
                continue;
            };
            let plan_versions = plans.get(*id).ok_or_else(|| missing(id))?;
            let plan = in_force(plan_versions, at).ok_or_else(|| missing(id))?;
            if versions.last().is_some_and(|v| v.plan == *plan) {
                continue;
            }
            versions.push(TermsVersion {
                effective_from: at,
                plan: plan.clone(),
            });
        }
        Ok(Contract {
            zone,
            start: self.start,
            terms: TermsHistory::new(versions)?,
        })
    }

    /// Every bucket any of its plans' versions defines.
    pub fn buckets(plans: &BTreeMap<ResourceId, Vec<Dated<Plan>>>) -> BTreeSet<BucketName> {
        plans
            .values()
            .flatten()
            .flat_map(|v| v.value.buckets.iter().map(|b| b.bucket.clone()))
            .collect()
    }
}

fn missing(id: &ResourceId) -> LedgerError {
    LedgerError::InvalidTerms(vec![super::ledger::TermsViolation {
        path: "assignments".into(),
        reason: format!("plan {id} has no versions"),
    }])
}

/// A plan named after its resource id.
pub fn plan_name(id: &ResourceId) -> Result<PlanName, LedgerError> {
    PlanName::parse(id.as_str()).map_err(|e| {
        LedgerError::InvalidTerms(vec![super::ledger::TermsViolation {
            path: "plan".into(),
            reason: e.to_string(),
        }])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ledger::{BucketTerms, PeriodUnit};
    use chrono::TimeZone;

    fn plan(name: &str, minutes: u32) -> Plan {
        Plan {
            name: PlanName::parse(name).expect("valid"),
            buckets: vec![BucketTerms::new(
                BucketName::parse("meetings").expect("valid"),
                PeriodUnit::Month,
                minutes,
            )],
        }
    }

    fn id(s: &str) -> ResourceId {
        ResourceId::parse(s).expect("valid")
    }

    fn date(m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, m, d).expect("valid")
    }

    #[test]
    fn assignments_and_plan_versions_interleave() {
        // tier-3 from the 1 January start, tier-4 from 1 April; tier-3's own terms change
        // on 15 February (90 minutes instead of 60).
        let zone = chrono_tz::Europe::London;
        let spec = HoursContractSpec::new(
            date(1, 1),
            vec![
                PlanAssignment {
                    plan: id("tier-4"),
                    effective_date: date(4, 1),
                },
                PlanAssignment {
                    plan: id("tier-3"),
                    effective_date: date(1, 1),
                },
            ],
        )
        .expect("valid");
        let feb15 = Utc
            .with_ymd_and_hms(2026, 2, 15, 0, 0, 0)
            .single()
            .expect("valid");
        let plans = BTreeMap::from([
            (
                id("tier-3"),
                vec![
                    Dated {
                        effective_at: Utc
                            .with_ymd_and_hms(2026, 1, 10, 0, 0, 0)
                            .single()
                            .expect("valid"),
                        value: plan("tier-3", 60),
                    },
                    Dated {
                        effective_at: feb15,
                        value: plan("tier-3", 90),
                    },
                ],
            ),
            (
                id("tier-4"),
                vec![Dated {
                    effective_at: Utc
                        .with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
                        .single()
                        .expect("valid"),
                    value: plan("tier-4", 180),
                }],
            ),
        ]);
        let contract = spec.contract(zone, &plans).expect("assembles");
        let minutes: Vec<(DateTime<Utc>, u32)> = contract
            .terms
            .versions()
            .iter()
            .map(|v| (v.effective_from, v.plan.buckets[0].allowance_minutes))
            .collect();
        // 1 April is in BST: local midnight is 23:00 UTC on 31 March.
        assert_eq!(
            minutes,
            vec![
                (
                    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                        .single()
                        .expect("valid"),
                    60
                ),
                (feb15, 90),
                (
                    Utc.with_ymd_and_hms(2026, 3, 31, 23, 0, 0)
                        .single()
                        .expect("valid"),
                    180
                ),
            ]
        );
    }

    #[test]
    fn contracts_are_checked() {
        assert!(HoursContractSpec::new(date(1, 1), vec![]).is_err());
        let late = HoursContractSpec::new(
            date(1, 1),
            vec![PlanAssignment {
                plan: id("tier-3"),
                effective_date: date(2, 1),
            }],
        );
        assert_eq!(
            late.err().map(|e| e[0].path.clone()),
            Some("assignments[0].effective_date".to_string())
        );
    }
}
