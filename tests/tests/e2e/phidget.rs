//! relay-service built with `--features phidget`, as a separate process, on
//! the vendor's real libphidget22 and virtual 1017s at the USB boundary
//! (the loader finds both through LD_LIBRARY_PATH, from
//! `scripts/phidget-env`; the boards through DELESTAGE_VIRTUAL_USB). And
//! the vendor's own Python binding, from the same wheel, on a virtual board.

use std::time::{Duration, Instant};

use delestage_proto::relay::v1 as pb;
use delestage_tests::{BOUND, ServiceProcess, VirtualUsb, start_relay_env};
use nix::sys::signal::Signal;
use pb::relay_service_client::RelayServiceClient;
use tonic::transport::Channel;

async fn start_on(
    usb: &VirtualUsb,
    state: &std::path::Path,
    extra: &[&str],
) -> (ServiceProcess, Channel) {
    let mut args = vec!["--board", "phidget"];
    args.extend_from_slice(extra);
    let (name, dir) = usb.env();
    start_relay_env(state, &args, &[(name, &dir)]).await
}

async fn relays(channel: &Channel) -> pb::GetRelaysResponse {
    RelayServiceClient::new(channel.clone())
        .get_relays(pb::GetRelaysRequest {})
        .await
        .expect("GetRelays")
        .into_inner()
}

/// Polls GetRelays until `done` holds (bounded).
async fn wait_relays(
    channel: &Channel,
    what: &str,
    done: impl Fn(&pb::GetRelaysResponse) -> bool,
) -> pb::GetRelaysResponse {
    let deadline = Instant::now() + BOUND;
    loop {
        let answer = relays(channel).await;
        if done(&answer) {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn board(answer: &pb::GetRelaysResponse) -> &pb::Board {
    answer.board.as_ref().expect("board")
}

fn all_applied(answer: &pb::GetRelaysResponse) -> bool {
    answer.relays.iter().all(|r| r.applied == Some(true))
}

async fn set(channel: &Channel, ch: u32, on: bool) -> Result<pb::SetRelayResponse, tonic::Status> {
    RelayServiceClient::new(channel.clone())
        .set_relay(pb::SetRelayRequest {
            channel: ch,
            energized: on,
        })
        .await
        .map(tonic::Response::into_inner)
}

fn signal(svc: &ServiceProcess, sig: Signal) {
    svc.signal(sig);
}

#[tokio::test]
async fn the_phidget_board_is_opened_switched_and_restored() {
    let usb = VirtualUsb::new();
    usb.plug("1017_2", 424242);
    let state = tempfile::tempdir().expect("tempdir");
    let (svc, channel) = start_on(&usb, state.path(), &[]).await;
    let answer = wait_relays(&channel, "attached", |r| board(r).attached).await;
    let b = board(&answer);
    assert_eq!(b.kind(), pb::BoardKind::Phidget1017);
    assert_eq!(b.serial_number, 424242);
    assert_eq!(b.version, 200);
    set(&channel, 2, true).await.expect("2 on");
    assert_eq!(
        usb.energized(424242),
        vec![2],
        "the switch reached the coil"
    );
    svc.stop_with(Signal::SIGKILL).await;
    // A crashed process leaves the relays as they were.
    assert_eq!(usb.energized(424242), vec![2]);

    let (svc, channel) = start_on(&usb, state.path(), &["--serial", "424242"]).await;
    wait_relays(&channel, "restored", |r| {
        board(r).attached && all_applied(r)
    })
    .await;
    assert_eq!(usb.energized(424242), vec![2]);
    assert!(svc.stop_with(Signal::SIGTERM).await.success());
}

#[tokio::test]
async fn an_unplugged_board_leaves_the_service_up_unavailable_and_says_where_to_look() {
    let usb = VirtualUsb::new();
    let state = tempfile::tempdir().expect("tempdir");
    let (svc, channel) = start_on(&usb, state.path(), &[]).await;
    let err = set(&channel, 0, true).await.expect_err("no board");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    // After 2 s without a board, one warning that says where to look.
    let deadline = Instant::now() + BOUND;
    while !svc.log().contains("no Phidget 1017 found (serial any)") {
        assert!(Instant::now() < deadline, "no warning; log:\n{}", svc.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = svc.log();
    assert!(
        log.contains("lsusb -d 06c2:") && log.contains("deploy/udev"),
        "{log}"
    );
    assert_eq!(
        log.matches("no Phidget 1017 found").count(),
        1,
        "said once: {log}"
    );

    // The board comes: it attaches and switches.
    usb.plug("1017_1", 77);
    wait_relays(&channel, "attached", |r| board(r).attached).await;
    set(&channel, 4, true).await.expect("4 on");
    assert_eq!(usb.energized(77), vec![4]);
    assert!(svc.stop_with(Signal::SIGTERM).await.success());
}

/// A 1017_2 with its hardware failsafe: unplugged and back, then the
/// service frozen past the failsafe time (the board turns every coil off by
/// itself and says tripped), then thawed (the service re-arms and
/// re-applies within 2 s, and GetRelays never claims a coil it does not
/// hold once it has heard of the trip).
#[tokio::test]
async fn a_1017_2_survives_unplugging_and_fails_safe_when_the_service_freezes() {
    // It times the recovery after SIGCONT (2 s): not beside a machine-wide load.
    let _turn = delestage_tests::exclusive().await;
    let usb = VirtualUsb::new();
    let serial = 515151;
    usb.plug("1017_2", serial);
    let state = tempfile::tempdir().expect("tempdir");
    let (svc, channel) = start_on(&usb, state.path(), &["--hardware-failsafe", "500ms"]).await;
    wait_relays(&channel, "armed", |r| {
        board(r).attached && board(r).hardware_failsafe() == pb::HardwareFailsafe::Armed
    })
    .await;
    set(&channel, 1, true).await.expect("1 on");
    set(&channel, 5, true).await.expect("5 on");
    assert_eq!(usb.energized(serial), vec![1, 5]);

    // Unplugged: the coils lose power, the service says nothing is held.
    usb.unplug(serial);
    usb.wait_board(serial, "unplugged", |b| !b.plugged).await;
    let answer = wait_relays(&channel, "detached", |r| {
        !board(r).attached && r.relays.iter().all(|x| x.applied == Some(false))
    })
    .await;
    assert!(answer.relays[1].energized, "the intended state is kept");

    // Plugged back: the intended states are on the coils again, armed.
    usb.plug("1017_2", serial);
    usb.wait_board(serial, "re-applied and armed", |b| {
        b.plugged && b.energized() == vec![1, 5] && b.failsafe.iter().all(|f| f == "armed")
    })
    .await;
    wait_relays(&channel, "applied again", |r| {
        board(r).attached && all_applied(r)
    })
    .await;

    // Frozen past the failsafe time: the board fails safe on its own.
    signal(&svc, Signal::SIGSTOP);
    let tripped = usb
        .wait_board(serial, "every channel tripped", |b| {
            b.failsafe.iter().all(|f| f == "tripped")
        })
        .await;
    assert_eq!(tripped.energized(), Vec::<u32>::new(), "every coil off");

    // Thawed: re-armed and re-applied within 2 s.
    let thawed = Instant::now();
    signal(&svc, Signal::SIGCONT);
    // Until the service has heard of the trip, it cannot know; from then
    // on, it must not claim a coil that is off. (The recovery can be over
    // before the first answer: then there is nothing to check but the end.)
    let mut noticed = false;
    loop {
        let answer = relays(&channel).await;
        let b = board(&answer);
        let coils = usb.board(serial).expect("board");
        if !b.attached
            || b.hardware_failsafe() == pb::HardwareFailsafe::Tripped
            || answer.relays.iter().any(|r| r.applied == Some(false))
        {
            noticed = true;
        }
        if noticed {
            // Truthful: what it says it holds, the coils hold (read after
            // the answer, and coils only come back on).
            for r in answer
                .relays
                .iter()
                .filter(|r| r.applied == Some(true) && r.energized)
            {
                assert!(
                    coils.relays[r.channel as usize],
                    "GetRelays claims channel {} is held, the coil is off: board {:?}, applied {:?}, coils {coils:?}\n{}",
                    r.channel,
                    b,
                    answer.relays.iter().map(|r| r.applied).collect::<Vec<_>>(),
                    svc.log()
                );
            }
        }
        if coils.energized() == vec![1, 5]
            && coils.failsafe.iter().all(|f| f == "armed")
            && b.hardware_failsafe() == pb::HardwareFailsafe::Armed
            && all_applied(&answer)
        {
            break;
        }
        assert!(
            thawed.elapsed() < Duration::from_secs(2),
            "not re-armed and re-applied within 2 s of SIGCONT: {answer:?} {coils:?}\n{}",
            svc.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        svc.log().contains("the hardware failsafe tripped"),
        "{}",
        svc.log()
    );
    assert!(svc.stop_with(Signal::SIGTERM).await.success());
}

#[tokio::test]
async fn a_1017_1_with_a_hardware_failsafe_says_unsupported_and_still_switches() {
    let usb = VirtualUsb::new();
    usb.plug("1017_1", 616161);
    let state = tempfile::tempdir().expect("tempdir");
    let (svc, channel) = start_on(&usb, state.path(), &["--hardware-failsafe", "1s"]).await;
    wait_relays(&channel, "unsupported", |r| {
        board(r).attached && board(r).hardware_failsafe() == pb::HardwareFailsafe::Unsupported
    })
    .await;
    set(&channel, 7, true).await.expect("7 on");
    let b = usb.board(616161).expect("board");
    assert_eq!(b.energized(), vec![7]);
    assert!(b.failsafe.iter().all(|f| f == "off"));
    assert!(svc.log().contains("no hardware failsafe"), "{}", svc.log());
    assert!(svc.stop_with(Signal::SIGTERM).await.success());
}

/// A board that stops answering (`stall`) or whose every transfer fails
/// (`io-error`): a switch asked meanwhile is refused as UNAVAILABLE and
/// shows as not applied (what the coil holds is not known), the intended
/// states are held again once the fault is cleared, and switching works.
async fn a_faulty_line_shows_as_not_applied_and_recovers(model: &str, fault: &str) {
    let usb = VirtualUsb::new();
    let serial = 717171;
    usb.plug(model, serial);
    let state = tempfile::tempdir().expect("tempdir");
    let (svc, channel) = start_on(&usb, state.path(), &[]).await;
    wait_relays(&channel, "attached", |r| board(r).attached).await;
    set(&channel, 0, true).await.expect("0 on");

    usb.set_fault(serial, Some(fault));
    let err = set(&channel, 3, true)
        .await
        .expect_err("the board does not take it");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    let answer = wait_relays(&channel, "channel 3 not applied", |r| {
        r.relays[3].applied == Some(false)
    })
    .await;
    assert!(
        !answer.relays[3].energized,
        "a refused switch changes nothing"
    );
    assert!(
        !usb.board(serial).expect("board").relays[3],
        "the coil never got it"
    );

    usb.set_fault(serial, None);
    wait_relays(&channel, "all applied again", |r| {
        board(r).attached && all_applied(r)
    })
    .await;
    assert_eq!(usb.energized(serial), vec![0]);
    set(&channel, 3, true)
        .await
        .expect("3 on, once the line is back");
    assert_eq!(usb.energized(serial), vec![0, 3]);
    assert!(svc.stop_with(Signal::SIGTERM).await.success());
}

#[tokio::test]
async fn a_stalled_1017_2_shows_as_not_applied_and_recovers() {
    a_faulty_line_shows_as_not_applied_and_recovers("1017_2", "stall").await;
}

#[tokio::test]
async fn a_failing_1017_2_shows_as_not_applied_and_recovers() {
    a_faulty_line_shows_as_not_applied_and_recovers("1017_2", "io-error").await;
}

#[tokio::test]
async fn a_stalled_1017_1_shows_as_not_applied_and_recovers() {
    a_faulty_line_shows_as_not_applied_and_recovers("1017_1", "stall").await;
}

#[tokio::test]
async fn a_failing_1017_1_shows_as_not_applied_and_recovers() {
    a_faulty_line_shows_as_not_applied_and_recovers("1017_1", "io-error").await;
}

/// The seed's own path: the vendor's Python binding, from the same wheel,
/// opens channel 0 of the virtual board by serial and switches it.
#[tokio::test]
async fn the_vendors_python_binding_drives_the_virtual_board() {
    let python_path = std::env::var("PHIDGET22_PYTHONPATH").expect(
        "PHIDGET22_PYTHONPATH is not set: run the tests through scripts/test, or after `eval \"$(scripts/phidget-env)\"`",
    );
    let usb = VirtualUsb::new();
    usb.plug("1017_2", 818181);
    let script = r#"
import json, os, sys
from Phidget22.Devices.DigitalOutput import DigitalOutput
state = os.path.join(os.environ["DELESTAGE_VIRTUAL_USB"], "818181.json")
out = DigitalOutput()
out.setDeviceSerialNumber(818181)
out.setChannel(0)
out.openWaitForAttachment(5000)
print("device_id", out.getDeviceID())
out.setState(True)
print("on", json.load(open(state))["relays"][0])
out.setState(False)
print("off", json.load(open(state))["relays"][0])
out.close()
"#;
    let (name, dir) = usb.env();
    let output = tokio::time::timeout(
        BOUND,
        tokio::process::Command::new("python3")
            .args(["-c", script])
            .env("PYTHONPATH", python_path)
            .env(name, dir)
            .output(),
    )
    .await
    .expect("python3 finishes within the bound")
    .expect("run python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        vec!["device_id 12", "on True", "off False"]
    );
}
