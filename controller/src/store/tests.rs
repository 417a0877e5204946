//! The store: overrides and history across reopens, runtime from the
//! switches.

use super::*;

pub(super) fn record(load: &str, minute: i64, to: bool, reason: Reason) -> SwitchRecord {
    SwitchRecord {
        at: Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_mins(minute),
        load: load.to_owned(),
        relay: RelayAddress {
            relay_service: "garage".to_owned(),
            channel: 2,
        },
        from_powered: !to,
        to_powered: to,
        reason,
        level: Some(SignalLevel::Red),
        watched_since: None,
        tempo_source: None,
        delta_va: None,
    }
}

#[test]
fn powered_time_is_counted_from_the_switches() {
    let t = |m: i64| Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_mins(m);
    let h = |m: u64| Duration::from_secs(60 * m);
    let dir = tempfile::tempdir().expect("tempdir");
    // The same switches, made by a controller watching since 0, 5, 50,
    // or one from before `watched_since` was kept.
    let mut stores = Vec::new();
    for known in [Some(0), Some(5), Some(50), None] {
        let (mut store, _) = Store::open(&dir.path().join(format!("{known:?}"))).expect("open");
        assert_eq!(store.powered_between("pump", t(0), t(100)), None);
        // Cut at 10 (powered before), on at 30, cut at 50, on at 90.
        for (minute, to) in [(10, false), (30, true), (50, false), (90, true)] {
            let mut r = record("pump", minute, to, Reason::ScheduledRun);
            r.watched_since = known.map(t);
            store.record(r).expect("record");
        }
        store
            .record(record("other", 60, true, Reason::Normal))
            .expect("record");
        stores.push(store);
    }
    let between = |i: usize, from, to| stores[i].powered_between("pump", t(from), t(to));
    assert_eq!(between(0, 0, 100), Some(h(10 + 20 + 10)));
    // Watched from 5, or from 50 (a later run): what came before the
    // first switch is known from then on only.
    assert_eq!(between(1, 0, 100), Some(h(5 + 20 + 10)));
    assert_eq!(between(2, 0, 100), Some(h(20 + 10)));
    assert_eq!(between(3, 0, 100), Some(h(20 + 10)));
    assert_eq!(between(0, 40, 95), Some(h(10 + 5)));
    assert_eq!(between(0, 60, 80), Some(Duration::ZERO));
}

#[test]
fn overrides_and_history_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut store, report) = Store::open(dir.path()).expect("open");
    assert!(report.problems.is_empty());
    let o = StoredOverride {
        powered: true,
        until: "2026-12-08T12:00:00Z".parse().expect("ts"),
        set_at: "2026-12-08T10:00:00Z".parse().expect("ts"),
        force: false,
    };
    store.set_override("heater", o).expect("set");
    store
        .record(record(
            "heater",
            1,
            false,
            Reason::ShedForLevel(SignalLevel::Red),
        ))
        .expect("record");
    store
        .record(record("ev", 2, true, Reason::Normal))
        .expect("record");
    drop(store);

    let (store, report) = Store::open(dir.path()).expect("reopen");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(store.overrides().get("heater"), Some(&o));
    let all = store.history(None, None, 10);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].load, "ev", "newest first");
    assert_eq!(all[1].reason, Reason::ShedForLevel(SignalLevel::Red));
    assert_eq!(store.history(Some("heater"), None, 10).len(), 1);
    assert_eq!(store.history(None, Some(all[0].at), 10).len(), 1);
    assert_eq!(store.last_restore_at(), Some(all[0].at));
}

#[test]
fn a_torn_last_line_is_cut_off_and_the_rest_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut store, _) = Store::open(dir.path()).expect("open");
    store
        .record(record("heater", 1, false, Reason::Normal))
        .expect("record");
    drop(store);
    let path = dir.path().join(Store::HISTORY);
    let mut file = OpenOptions::new().append(true).open(&path).expect("open");
    file.write_all(b"{\"at\":\"2026-12-0").expect("tear");
    drop(file);

    let (mut store, report) = Store::open(dir.path()).expect("reopen");
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(store.history(None, None, 10).len(), 1);
    store
        .record(record("heater", 2, true, Reason::Normal))
        .expect("record");
    drop(store);
    let (store, report) = Store::open(dir.path()).expect("reopen");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(store.history(None, None, 10).len(), 2);
}

#[test]
fn corrupt_overrides_are_set_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(Store::OVERRIDES), b"{\"version\":1,").expect("write");
    let (store, report) = Store::open(dir.path()).expect("open");
    assert!(store.overrides().is_empty());
    assert!(
        report.problems[0].contains("kept aside"),
        "{:?}",
        report.problems
    );
}

#[test]
fn expired_overrides_are_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut store, _) = Store::open(dir.path()).expect("open");
    let now: Timestamp = "2026-12-08T12:00:00Z".parse().expect("ts");
    for (name, minutes) in [("a", -1), ("b", 0), ("c", 1)] {
        store
            .set_override(
                name,
                StoredOverride {
                    powered: false,
                    until: now + jiff::SignedDuration::from_mins(minutes),
                    set_at: now,
                    force: false,
                },
            )
            .expect("set");
    }
    let mut expired = store.expire_overrides(now).expect("expire");
    expired.sort();
    assert_eq!(expired, ["a", "b"]);
    assert!(store.overrides().contains_key("c"));
}

#[test]
fn an_override_lasts_a_year_at_most_and_ends_in_the_future() {
    let now: Timestamp = "2026-12-02T10:00:00Z".parse().expect("ts");
    let at = |s: &str| s.parse::<Timestamp>().expect("ts");
    assert!(check_override_until(at("2026-12-02T12:00:00Z"), now).is_ok());
    assert!(check_override_until(at("2027-12-02T10:00:00Z"), now).is_ok());
    let past = check_override_until(at("2026-12-02T09:00:00Z"), now).expect_err("past");
    assert!(past.contains("not in the future"), "{past}");
    let far = check_override_until(at("3026-12-02T10:00:00Z"), now).expect_err("a thousand years");
    assert!(
        far.contains("more than a year ahead") && far.contains("366 days"),
        "{far}"
    );
}

#[test]
fn a_tempo_sheds_source_survives_a_reopen_and_older_records_have_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut store, _) = Store::open(dir.path()).expect("open");
    let mut from_meter = record("radiators", 1, false, Reason::ShedForTempo(TempoColor::Red));
    from_meter.tempo_source = Some(TempoSource::Meter);
    store.record(from_meter).expect("record");
    store
        .record(record(
            "pump",
            2,
            false,
            Reason::ShedForLevel(SignalLevel::Red),
        ))
        .expect("record");
    drop(store);
    let (store, report) = Store::open(dir.path()).expect("reopen");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let sources: Vec<_> = store
        .history(None, None, 10)
        .iter()
        .map(|r| (r.load.clone(), r.tempo_source))
        .collect();
    assert!(sources.contains(&("radiators".to_owned(), Some(TempoSource::Meter))));
    assert!(sources.contains(&("pump".to_owned(), None)));
    let text = std::fs::read_to_string(dir.path().join(Store::HISTORY)).expect("read");
    assert!(text.contains("\"tempo_source\":\"meter\""), "{text}");
}
