//! What only the Phidget backend does, on the vendor's real libphidget22
//! and a virtual board at the USB boundary: board identity, the 1017_2's
//! hardware failsafe (armed, fed, tripped and recovered, as the library and
//! the board enforce it), and a 1017_1 that has none.

use std::time::Duration;

use delestage_relay_service::board::Board;
use delestage_relay_service::board::phidget::PhidgetBoard;
use delestage_tests::VirtualUsb;
use delestage_tests::in_process::relay::Running;
use tokio::net::TcpListener;

use super::*;

fn usb() -> &'static VirtualUsb {
    delestage_tests::in_process::relay::usb::virtual_usb()
}

fn failsafe_of(board: &pb::Board) -> pb::HardwareFailsafe {
    board.hardware_failsafe()
}

#[tokio::test]
async fn a_board_with_another_serial_is_not_opened() {
    let h = Harness::new(Backend::Phidget("1017_2")).await;
    let mut settings = h.settings();
    settings.serial = Some(h.serial as i32 + 1000);
    let mut svc = h.start_with(settings).await;
    let board = svc.relays().await.board.expect("board");
    assert!(!board.attached);
    let err = svc.set(0, true).await.expect_err("not attached");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("not attached"), "{}", err.message());
    svc.stop().await;
}

#[tokio::test]
async fn the_board_says_its_version_and_that_no_failsafe_was_asked_for() {
    let h = Harness::new(Backend::Phidget("1017_2")).await;
    usb().plug_version("1017_2", h.serial, 215);
    let mut svc = h.start().await;
    let board = svc.wait_attached().await;
    assert_eq!(board.version, 215);
    assert_eq!(failsafe_of(&board), pb::HardwareFailsafe::Off);
    svc.stop().await;
}

#[tokio::test]
async fn closing_the_service_turns_the_relays_off_as_libphidget22_does() {
    let h = Harness::new(Backend::Phidget("1017_2")).await;
    let mut svc = h.start().await;
    svc.set(1, true).await.expect("1");
    assert_eq!(usb().energized(h.serial), vec![1]);
    svc.stop().await;
    assert_eq!(usb().energized(h.serial), Vec::<u32>::new());
}

#[tokio::test]
async fn the_hardware_failsafe_is_armed_fed_and_recovers_after_a_trip() {
    let h = Harness::new(Backend::Phidget("1017_2")).await;
    let mut settings = h.settings();
    settings.hardware_failsafe = Some(Duration::from_millis(500));
    let mut svc = h.start_with(settings).await;
    svc.set(2, true).await.expect("2");
    usb()
        .wait_board(h.serial, "every channel armed", |b| {
            b.failsafe.iter().all(|f| f == "armed")
        })
        .await;
    let board = svc
        .wait_board("armed", |b| failsafe_of(b) == pb::HardwareFailsafe::Armed)
        .await;
    assert!(board.attached);

    // Fed: four failsafe periods pass without a trip.
    let watch_until = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < watch_until {
        let board = usb().board(h.serial).expect("board");
        assert!(
            board.failsafe.iter().all(|f| f == "armed"),
            "tripped while fed: {board:?}"
        );
        assert_eq!(board.energized(), vec![2]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The board stops hearing from the service: it turns the relays off
    // by itself.
    usb().set_fault(h.serial, Some("stall"));
    let tripped = usb()
        .wait_board(h.serial, "the trip", |b| b.failsafe[2] == "tripped")
        .await;
    assert_eq!(tripped.energized(), Vec::<u32>::new());

    // The line is back: the board reports the trip, the service closes
    // and reopens the channels, re-arms them and puts the relay back.
    usb().set_fault(h.serial, None);
    usb()
        .wait_board(h.serial, "re-armed and re-applied", |b| {
            b.energized() == vec![2] && b.failsafe.iter().all(|f| f == "armed")
        })
        .await;
    svc.wait_board("armed again", |b| {
        b.attached && failsafe_of(b) == pb::HardwareFailsafe::Armed
    })
    .await;
    assert!(
        svc.relays()
            .await
            .relays
            .iter()
            .all(|r| r.applied == Some(true))
    );
    svc.stop().await;
}

#[tokio::test]
async fn a_1017_1_runs_without_the_hardware_failsafe_and_says_so() {
    let h = Harness::new(Backend::Phidget("1017_1")).await;
    let mut settings = h.settings();
    settings.hardware_failsafe = Some(Duration::from_millis(500));
    let mut svc = h.start_with(settings).await;
    svc.set(3, true).await.expect("3");
    let board = usb().board(h.serial).expect("board");
    assert_eq!(board.energized(), vec![3]);
    assert!(board.failsafe.iter().all(|f| f == "off"), "{board:?}");
    svc.wait_board("unsupported", |b| {
        failsafe_of(b) == pb::HardwareFailsafe::Unsupported
    })
    .await;
    svc.stop().await;
}

#[tokio::test]
async fn the_failsafe_is_fed_at_least_every_third_of_its_time() {
    let h = Harness::new(Backend::Phidget("1017_2")).await;
    let mut settings = h.settings();
    settings.hardware_failsafe = Some(Duration::from_millis(600));
    let mut svc = h.start_with(settings).await;
    usb()
        .wait_board(h.serial, "every channel armed", |b| {
            b.failsafe.iter().all(|f| f == "armed")
        })
        .await;
    // Two seconds of feeding, with commands in between (each wakes the
    // board's thread, which must not push the next feed back).
    let until = std::time::Instant::now() + Duration::from_secs(2);
    let mut switches = 0u32;
    while std::time::Instant::now() < until {
        // Round the channels, within the wear guard.
        svc.set(switches % 8, (switches / 8).is_multiple_of(2))
            .await
            .expect("switch");
        switches += 1;
        // Just under the feed period: a thread that let each command push
        // its next feed back would go twice as long without feeding.
        tokio::time::sleep(Duration::from_millis(140)).await;
    }
    let gaps = usb().failsafe_gaps(h.serial);
    assert_eq!(gaps.len(), 8, "{gaps:?}");
    for (channel, gap) in gaps.iter().enumerate() {
        assert!(
            (1..=200).contains(gap),
            "channel {channel}: fed {gap} ms apart at most; Phidgets ask for a third of 600 ms"
        );
    }
    svc.stop().await;
}

#[tokio::test]
async fn a_wedged_runtime_lets_the_board_fail_safe() {
    let h = Harness::new(Backend::Phidget("1017_2")).await;
    let mut settings = h.settings();
    settings.hardware_failsafe = Some(Duration::from_millis(500));
    let board = PhidgetBoard::open(None, settings.hardware_failsafe).expect("open");
    let stall = board.stall_heartbeat_hook();
    let mut svc = h.start_on(settings, Board::Phidget(board)).await;
    svc.set(4, true).await.expect("4");
    usb()
        .wait_board(h.serial, "armed", |b| b.failsafe[4] == "armed")
        .await;
    // The process and the board's thread run on; only the async side stops.
    stall();
    let tripped = usb()
        .wait_board(h.serial, "the trip", |b| b.failsafe[4] == "tripped")
        .await;
    assert!(!tripped.relays[4]);
    svc.stop().await;
}

#[tokio::test]
async fn a_failsafe_time_the_board_does_not_take_stops_the_start() {
    let h = Harness::new(Backend::Phidget("1017_2")).await;
    let board = PhidgetBoard::open(None, Some(Duration::from_millis(100))).expect("open");
    let msg = board
        .settle()
        .await
        .expect_err("100 ms is below the 1017_2's range")
        .to_string();
    assert!(
        msg.contains("--hardware-failsafe") && msg.contains("500ms to 30000ms"),
        "{msg}"
    );
    assert!(
        msg.contains(&h.serial.to_string()),
        "names the board: {msg}"
    );
    drop(board);

    // Through the service: the start stops with the same words.
    let mut settings = h.settings();
    settings.hardware_failsafe = Some(Duration::from_secs(40));
    let board = PhidgetBoard::open(None, settings.hardware_failsafe).expect("open");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let err = delestage_relay_service::serve(settings, Board::Phidget(board), listener, async {})
        .await
        .expect_err("the start stops");
    assert!(err.to_string().contains("500ms to 30000ms"), "{err}");
}

#[tokio::test]
async fn with_no_board_a_failsafe_no_1017_takes_is_refused_at_start() {
    let h = Harness::new(Backend::Phidget("1017_2")).await;
    usb().unplug(h.serial);
    let board =
        PhidgetBoard::open(Some(h.serial as i32), Some(Duration::from_secs(40))).expect("open");
    let msg = board.settle().await.expect_err("40 s").to_string();
    assert!(
        msg.contains("500ms to 30000ms") && msg.contains("no board"),
        "{msg}"
    );
}

#[tokio::test]
async fn two_1017s_without_a_serial_stop_the_start_naming_both() {
    let h = Harness::new(Backend::Phidget("1017_2")).await;
    let first = h.serial;
    let second = first + 5000;
    usb().plug("1017_1", second);
    let err = PhidgetBoard::open(None, None)
        .err()
        .expect("two boards, no --serial");
    let msg = err.to_string();
    assert!(
        msg.contains(&first.to_string()) && msg.contains(&second.to_string()),
        "{msg}"
    );
    assert!(msg.contains("--serial"), "{msg}");

    // With --serial, that board, and only its channels.
    let mut settings = h.settings();
    settings.serial = Some(first as i32);
    let mut svc = h.start_with(settings).await;
    svc.set(6, true).await.expect("6");
    assert_eq!(usb().energized(first), vec![6]);
    assert_eq!(usb().energized(second), Vec::<u32>::new());
    svc.stop().await;
    usb().unplug(second);
}

/// What the virtual libusb in this process holds now (contexts, devices,
/// handles, transfers, configuration descriptors), through its own
/// diagnostic function.
fn live_usb_objects() -> [i64; 5] {
    // SAFETY: looks a symbol up in the process's global scope, where the
    // virtual libusb is (loaded as libphidget22's dependency).
    let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"delestage_virtual_usb_live".as_ptr()) };
    assert!(
        !f.is_null(),
        "the virtual libusb is not the one loaded in this process"
    );
    // SAFETY: the function's signature, as the virtual libusb exports it.
    let f: unsafe extern "C" fn(*mut i64, usize) -> usize = unsafe { std::mem::transmute(f) };
    let mut out = [0i64; 5];
    // SAFETY: a buffer of five counts.
    unsafe { f(out.as_mut_ptr(), out.len()) };
    out
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// The process's threads, by name, but tokio's blocking pool (its threads
/// come and go by themselves: they end after 10 s idle).
fn threads() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(Result::ok)
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|n| n.trim().to_owned())
                .filter(|n| n != "tokio-rt-worker")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn fifty_plug_cycles_leak_nothing() {
    /// Each takes about 0.3 s (the library's USB scan): enough for a leak
    /// of one per cycle to show far above any noise.
    const CYCLES: usize = 50;
    let h = Harness::new(Backend::Phidget("1017_2")).await;
    let mut svc = h.start().await;
    async fn cycle(h: &Harness, svc: &mut Running) {
        usb().unplug(h.serial);
        svc.wait_board("detached", |b| !b.attached).await;
        usb().plug("1017_2", h.serial);
        svc.wait_attached().await;
    }
    // Warm up first: whatever is made on first use exists from here on,
    // and libphidget22's own worker pool (idle threads on one condition
    // variable) has grown to its size (13 threads in a Python process
    // after 20 cycles, still 13 after 120).
    for _ in 0..20 {
        cycle(&h, &mut svc).await;
    }
    let before = (live_usb_objects(), open_fds(), threads());
    for _ in 0..CYCLES {
        cycle(&h, &mut svc).await;
    }
    // What the virtual libusb allocates, the files it opens and its
    // reader threads (one per open handle) come back to no more than they
    // were. Its threads end a little after a detach: give them time. (No
    // more, rather than as many: what a test before this one left closing
    // when `before` was taken may be gone by now. A leak would grow by one
    // per cycle.)
    let ours = |t: &Vec<String>| t.iter().filter(|n| n.starts_with("virtual-1017")).count();
    let counts = |s: &([i64; 5], usize, Vec<String>)| {
        let mut c: Vec<i64> = s.0.to_vec();
        c.push(s.1 as i64);
        c.push(ours(&s.2) as i64);
        c
    };
    let grown = |before: &[i64], after: &[i64]| before.iter().zip(after).any(|(b, a)| a > b);
    let deadline = std::time::Instant::now() + BOUND;
    let mut after = (live_usb_objects(), open_fds(), threads());
    while grown(&counts(&before), &counts(&after)) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = (live_usb_objects(), open_fds(), threads());
    }
    assert!(
        !grown(&counts(&before), &counts(&after)),
        "(contexts, devices, handles, transfers, configs, open fds, our threads) before {:?}, after {:?}",
        counts(&before),
        counts(&after)
    );
    // libphidget22's own worker pool may still grow by a thread or two (it
    // is the vendor's; 13 threads at most in a Python process): nothing
    // like one per cycle.
    assert!(
        after.2.len() <= before.2.len() + 3,
        "threads before {:?}, after {:?}",
        before.2,
        after.2
    );
    svc.set(0, true).await.expect("still switches");
    svc.stop().await;
}
