use jiff::SignedDuration;
use proptest::prelude::*;

use super::*;
use crate::enforce::observe::SeenRelay;
use crate::model::{RelayAddress, RelaySeen, Wiring};
use crate::policy::{Interval, LoadPlan};

const NOW: Timestamp = Timestamp::UNIX_EPOCH;

/// One load as a test case: its priority, wiring, what the plan wants, its
/// channel (past the board's end: unknown), and its last refusal.
#[derive(Debug, Clone)]
struct Case {
    priority: i32,
    normally_closed: bool,
    planned: bool,
    channel: u32,
    refusal: Option<(u32, i64)>,
    in_flight: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        -3i32..=3,
        any::<bool>(),
        any::<bool>(),
        0u32..10,
        proptest::option::of((0u32..3, -10i64..10)),
        proptest::bool::weighted(0.2),
    )
        .prop_map(
            |(priority, normally_closed, planned, channel, refusal, in_flight)| Case {
                priority,
                normally_closed,
                planned,
                channel,
                refusal,
                in_flight,
            },
        )
}

fn seen() -> impl Strategy<Value = RelaySeen> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec((any::<bool>(), proptest::bool::weighted(0.8)), 0..8),
    )
        .prop_map(|(settled, connected, attached, relays)| RelaySeen {
            settled: settled || connected,
            connected,
            attached,
            energized: relays.iter().map(|r| r.0).collect(),
            applied: relays.iter().map(|r| r.1).collect(),
            problem: (!connected).then(|| "down".to_owned()),
        })
}

#[derive(Debug)]
struct World {
    loads: Vec<Load>,
    plan: Plan,
    relays: Vec<SeenRelay<'static>>,
    refusals: HashMap<String, Refusal>,
    in_flight: HashSet<String>,
}

impl World {
    fn new(cases: &[Case], seen: Vec<RelaySeen>) -> Self {
        let names = ["a", "b"];
        let mut loads = Vec::new();
        let mut plans = Vec::new();
        let mut refusals = HashMap::new();
        let mut in_flight = HashSet::new();
        for (i, c) in cases.iter().enumerate() {
            let name = format!("load-{i}");
            if c.in_flight {
                in_flight.insert(name.clone());
            }
            let relay = RelayAddress {
                relay_service: names[i % 2].to_owned(),
                channel: c.channel,
            };
            let wiring = if c.normally_closed {
                Wiring::NormallyClosed
            } else {
                Wiring::NormallyOpen
            };
            loads.push(Load {
                priority: c.priority,
                ..Load::new(&name, relay, wiring, SignalLevel::Red)
            });
            plans.push(LoadPlan {
                load: name.clone(),
                budget: None,
                intervals: vec![Interval {
                    start: NOW,
                    end: NOW + SignedDuration::from_hours(1),
                    powered: c.planned,
                    reason: if c.planned {
                        Reason::Normal
                    } else {
                        Reason::ShedForLevel(SignalLevel::Red)
                    },
                }],
            });
            if let Some((attempts, retry_in)) = c.refusal {
                refusals.insert(
                    name,
                    Refusal {
                        message: "refused".to_owned(),
                        attempts,
                        retry_at: NOW + SignedDuration::from_secs(retry_in),
                    },
                );
            }
        }
        Self {
            loads,
            plan: Plan {
                computed_at: NOW,
                horizon: NOW + SignedDuration::from_hours(1),
                loads: plans,
            },
            relays: names
                .into_iter()
                .zip(seen)
                .map(|(name, seen)| SeenRelay {
                    name,
                    endpoint: "http://127.0.0.1:1",
                    seen,
                })
                .collect(),
            refusals,
            in_flight,
        }
    }

    fn view(&self) -> RelayView<'_> {
        RelayView {
            relays: &self.relays,
        }
    }

    fn diff(&self) -> Diff {
        diff(
            &self.loads,
            &self.plan,
            &self.view(),
            &self.refusals,
            &self.in_flight,
            Some(SignalLevel::Red),
            NOW,
        )
    }

    fn waiting(&self, load: &Load) -> bool {
        self.in_flight.contains(&load.name)
            || self
                .refusals
                .get(&load.name)
                .is_some_and(|r| r.attempts > 0 && r.retry_at > NOW)
    }
}

fn world() -> impl Strategy<Value = World> {
    (
        proptest::collection::vec(case(), 1..10),
        proptest::collection::vec(seen(), 2),
    )
        .prop_map(|(cases, seen)| World::new(&cases, seen))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A relay whose state is unknown, or that cannot be switched now, is
    /// never switched; every switch goes from what is seen to the plan.
    #[test]
    fn never_switches_an_unknown_or_blocked_relay(w in world()) {
        for s in w.diff().switches {
            let load = &w.loads[s.load];
            prop_assert_eq!(w.view().powered(load), Some(s.from));
            prop_assert_ne!(s.from, s.to);
            prop_assert_eq!(w.plan.loads[s.load].at(NOW).map(|i| i.powered), Some(s.to));
            prop_assert!(w.view().blocked(load).is_none());
        }
    }

    /// Cuts come first, least important first; then restores, most
    /// important first.
    #[test]
    fn cuts_before_restores_in_priority_order(w in world()) {
        let switches = w.diff().switches;
        for pair in switches.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let (pa, pb) = (w.loads[a.load].priority, w.loads[b.load].priority);
            prop_assert!(a.to <= b.to, "a restore before a cut: {:?}", switches);
            if a.to == b.to {
                if a.to {
                    prop_assert!(pa >= pb, "restores out of order: {:?}", switches);
                } else {
                    prop_assert!(pa <= pb, "cuts out of order: {:?}", switches);
                }
            }
        }
    }

    /// A refused load waits for its retry time, a load being switched for
    /// its switch to end; every other load that differs from the plan and
    /// can be switched is switched, once.
    #[test]
    fn respects_retry_times_and_misses_nothing(w in world()) {
        let d = w.diff();
        for (i, load) in w.loads.iter().enumerate() {
            let times = d.switches.iter().filter(|s| s.load == i).count();
            let planned = w.plan.loads[i].at(NOW).map(|iv| iv.powered);
            let actual = w.view().powered(load);
            let due = actual.is_some()
                && actual != planned
                && w.view().blocked(load).is_none()
                && !w.waiting(load);
            prop_assert_eq!(times, usize::from(due), "load {}: {:?}", i, d);
            if actual.is_some() && actual == planned {
                prop_assert!(d.settled.contains(&i));
            }
            if w.waiting(load) {
                prop_assert_eq!(times, 0);
            }
        }
    }
}

#[test]
fn a_retry_time_that_has_passed_allows_the_switch() {
    let case = Case {
        priority: 0,
        normally_closed: false,
        planned: false,
        channel: 0,
        refusal: Some((2, -1)),
        in_flight: false,
    };
    let seen = RelaySeen {
        settled: true,
        connected: true,
        attached: true,
        energized: vec![true],
        applied: vec![true],
        problem: None,
    };
    let w = World::new(&[case], vec![seen.clone(), seen]);
    let d = w.diff();
    assert_eq!(d.switches.len(), 1);
    assert!(!d.switches[0].to);
}

#[test]
fn an_anticipation_is_recorded_with_the_level_it_anticipates() {
    let case = Case {
        channel: 0,
        normally_closed: false,
        priority: 1,
        planned: false,
        refusal: None,
        in_flight: false,
    };
    // The relay is powered (normally-open, energised) and the plan cuts it.
    let box_a = RelaySeen {
        settled: true,
        connected: true,
        attached: true,
        energized: vec![true; 8],
        applied: vec![true; 8],
        problem: None,
    };
    let mut w = World::new(&[case], vec![box_a.clone(), box_a]);
    w.plan.loads[0].intervals[0].reason = Reason::Anticipation(SignalLevel::Red);
    let d = diff(
        &w.loads,
        &w.plan,
        &w.view(),
        &w.refusals,
        &w.in_flight,
        Some(SignalLevel::Green),
        NOW,
    );
    assert_eq!(d.switches.len(), 1, "{d:?}");
    assert_eq!(
        d.switches[0].level,
        Some(SignalLevel::Red),
        "not the green hour now"
    );
}
