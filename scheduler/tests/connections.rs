//! The scheduler's connection limits over real sockets: clients that stall are closed within
//! their bounds, connections beyond the cap wait, and long-lived gRPC streams outlive every
//! bound.

#![allow(clippy::unwrap_used)]

// This binary needs only some of the helpers.
#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant};

use drover_proto::domain::{RunStatus, UpdateRun};
use drover_proto::execution::{
    FollowRun, RunEvent, SchedulerMessage, WorkerEvent, WorkerMessage, WorkerRegistration,
};
use drover_scheduler::{ConnectionOptions, SchedulerOptions};
use support::TestScheduler;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

/// Every bound the tests shorten, so that they pass in seconds.
const BOUND: Duration = Duration::from_secs(1);
/// How late past its bound a close may come on a busy machine.
const SLACK: Duration = Duration::from_secs(3);

const GET_DEFAULT_EXPERIMENT: &[u8] =
    b"GET /api/2.0/mlflow/experiments/get?experiment_id=0 HTTP/1.1\r\nHost: localhost\r\n\r\n";

fn short_bounds(max_connections: usize) -> SchedulerOptions {
    SchedulerOptions {
        connections: ConnectionOptions {
            max_connections,
            header_read_timeout: BOUND,
            body_stall_timeout: BOUND,
            keep_alive_interval: BOUND / 2,
            keep_alive_timeout: BOUND,
        },
        ..SchedulerOptions::default()
    }
}

/// Reads (and ignores) whatever comes until the server closes the connection, within
/// `within`; how long that took.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Duration {
    let started = Instant::now();
    let mut buffer = [0u8; 4096];
    let closed = async {
        // A reset closes it too: the server may leave unread bytes behind.
        while let Ok(1..) = stream.read(&mut buffer).await {}
    };
    tokio::time::timeout(within, closed).await.expect("the server kept the connection open");
    started.elapsed()
}

/// Reads one HTTP/1 response with a Content-Length: its status and body.
async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(end) = received.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
            let status = head.split(' ').nth(1).unwrap().parse().unwrap();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |value| value.trim().parse().unwrap());
            let body_end = end + 4 + length;
            while received.len() < body_end {
                let read = stream.read(&mut buffer).await.unwrap();
                assert!(read > 0, "the connection closed inside a response");
                received.extend_from_slice(&buffer[..read]);
            }
            return (status, String::from_utf8_lossy(&received[end + 4..body_end]).into_owned());
        }
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(read > 0, "the connection closed before a response");
        received.extend_from_slice(&buffer[..read]);
    }
}

#[tokio::test]
async fn clients_that_send_nothing_or_half_a_head_are_closed_within_the_header_bound() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = TestScheduler::start_with(dir.path(), short_bounds(64)).await;

    let openings: [&[u8]; 4] = [
        b"",
        b"GET /api/2.0/mlflow/experiments/get?experiment_id=0 HTTP/1.1\r\nHost: sch",
        // Half of HTTP/2's preface: not yet known to be HTTP/2.
        b"PRI * HTTP/2.0\r\n",
        // Half of "POST": one byte that could still start the preface.
        b"P",
    ];
    let closes = openings.map(|opening| {
        let address = scheduler.address.clone();
        tokio::spawn(async move {
            let mut stream = TcpStream::connect(&address).await.unwrap();
            stream.write_all(opening).await.unwrap();
            closed_within(&mut stream, BOUND + SLACK).await
        })
    });
    for (opening, close) in openings.iter().zip(closes) {
        let after = close.await.unwrap();
        assert!(after >= BOUND / 2, "{opening:?} was closed after only {after:?}");
    }
    scheduler.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_served_again_then_closed_after_the_header_bound() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = TestScheduler::start_with(dir.path(), short_bounds(64)).await;
    let mut stream = TcpStream::connect(&scheduler.address).await.unwrap();

    stream.write_all(GET_DEFAULT_EXPERIMENT).await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);
    tokio::time::sleep(BOUND / 2).await;
    stream.write_all(GET_DEFAULT_EXPERIMENT).await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200, "kept alive within the bound");

    let after = closed_within(&mut stream, BOUND + SLACK).await;
    assert!(after >= BOUND / 2, "closed after only {after:?} idle");
    scheduler.stop().await;
}

#[tokio::test]
async fn a_stalled_upload_fails_and_its_connection_closes_while_a_slow_one_completes() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = TestScheduler::start_with(dir.path(), short_bounds(64)).await;
    let put = |path: &str, length: usize| {
        format!(
            "PUT /api/2.0/mlflow-artifacts/artifacts/{path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {length}\r\n\r\n"
        )
    };

    let mut stalled = TcpStream::connect(&scheduler.address).await.unwrap();
    stalled.write_all(put("1/stalled/model.bin", 1000).as_bytes()).await.unwrap();
    stalled.write_all(&[7u8; 100]).await.unwrap();
    let started = Instant::now();
    let (status, body) = tokio::time::timeout(BOUND + SLACK, read_response(&mut stalled))
        .await
        .expect("the stalled upload is answered");
    assert!(started.elapsed() >= BOUND / 2, "answered after only {:?}", started.elapsed());
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no bytes of the request body arrived"), "{body}");
    closed_within(&mut stalled, SLACK).await;
    let left = std::fs::read_dir(dir.path().join("artifacts/1/stalled")).unwrap().count();
    assert_eq!(left, 0, "the half upload was removed");

    // Slower in all than the bound, but never silent for it.
    let mut slow = TcpStream::connect(&scheduler.address).await.unwrap();
    slow.write_all(put("1/slow/model.bin", 1000).as_bytes()).await.unwrap();
    for _ in 0..5 {
        tokio::time::sleep(BOUND * 2 / 5).await;
        slow.write_all(&[7u8; 200]).await.unwrap();
    }
    assert_eq!(read_response(&mut slow).await.0, 200);
    let stored = std::fs::read(dir.path().join("artifacts/1/slow/model.bin")).unwrap();
    assert_eq!(stored.len(), 1000);
    scheduler.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let dir = tempfile::tempdir().unwrap();
    let options = SchedulerOptions {
        connections: ConnectionOptions { max_connections: 2, ..ConnectionOptions::default() },
        ..SchedulerOptions::default()
    };
    // The test's gRPC client holds the first of the two.
    let scheduler = TestScheduler::start_with(dir.path(), options).await;
    let mut second = TcpStream::connect(&scheduler.address).await.unwrap();
    second.write_all(GET_DEFAULT_EXPERIMENT).await.unwrap();
    assert_eq!(read_response(&mut second).await.0, 200);

    let mut third = TcpStream::connect(&scheduler.address).await.unwrap();
    third.write_all(GET_DEFAULT_EXPERIMENT).await.unwrap();
    let waited = tokio::time::timeout(BOUND, read_response(&mut third)).await;
    assert!(waited.is_err(), "a third connection was served beyond the cap");

    drop(second);
    let served = tokio::time::timeout(SLACK, read_response(&mut third)).await;
    assert_eq!(served.expect("served once a connection closed").0, 200);
    scheduler.experiment("served-throughout").await;
    scheduler.stop().await;
}

#[tokio::test]
async fn an_http2_peer_that_leaves_a_ping_unanswered_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = TestScheduler::start_with(dir.path(), short_bounds(64)).await;
    let mut stream = TcpStream::connect(&scheduler.address).await.unwrap();
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    // An empty SETTINGS frame, then silence, as from a peer that vanished.
    stream.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let after = closed_within(&mut stream, BOUND / 2 + BOUND + SLACK).await;
    assert!(after >= BOUND, "closed after only {after:?}");
    scheduler.stop().await;
}

#[tokio::test]
async fn a_quiet_follower_outlives_every_bound_and_receives_the_run_s_end() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = TestScheduler::start_with(dir.path(), short_bounds(64)).await;
    let experiment = scheduler.experiment("quiet").await;
    let run_id = scheduler.run(experiment).await.info.run_id;

    let request = FollowRun { run_id, follow: true, after_cursor: 0 };
    let mut events = scheduler.client.follow_run(request).await.unwrap();
    let quiet = tokio::time::timeout(BOUND * 3, events.next()).await;
    assert!(quiet.is_err(), "the follower got {:?} from a run that printed nothing", quiet);

    let finish =
        UpdateRun { run_id, status: Some(RunStatus::Finished), end_time_ms: None, run_name: None };
    scheduler.client.update_run(finish).await.unwrap();
    let end = tokio::time::timeout(SLACK, events.next()).await.expect("the run's end arrives");
    match end {
        Some(Ok(RunEvent::State { status: RunStatus::Finished, .. })) => {}
        other => panic!("expected the run's end, got {other:?}"),
    }
    scheduler.stop().await;
}

#[tokio::test]
async fn a_silent_worker_stream_outlives_every_bound() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = TestScheduler::start_with(dir.path(), short_bounds(64)).await;
    let (outgoing, to_scheduler) = tokio::sync::mpsc::channel(8);
    let registration = WorkerRegistration {
        worker_id: "quiet-worker".into(),
        hostname: "test".into(),
        slots: 1,
        cpus: 1,
        memory_bytes: 1 << 30,
        docker_available: false,
        running: Vec::new(),
        labels: Vec::new(),
        gpus: Vec::new(),
    };
    let register = WorkerMessage { seq: None, event: WorkerEvent::Register(registration) };
    outgoing.send(register).await.unwrap();
    let mut incoming =
        scheduler.client.attach_worker(ReceiverStream::new(to_scheduler)).await.unwrap();
    match incoming.next().await {
        Some(Ok(SchedulerMessage::Registered { .. })) => {}
        other => panic!("expected the registration's answer, got {other:?}"),
    }

    // Quieter than any bound (though well within the lease): only PINGs cross.
    tokio::time::sleep(BOUND * 3).await;
    let heartbeat =
        WorkerMessage { seq: Some(1), event: WorkerEvent::Heartbeat { running: vec![] } };
    outgoing.send(heartbeat).await.unwrap();
    let acknowledged = async {
        loop {
            match incoming.next().await {
                Some(Ok(SchedulerMessage::Ack(1))) => return,
                Some(Ok(_)) => {}
                other => panic!("the worker stream ended: {other:?}"),
            }
        }
    };
    tokio::time::timeout(SLACK, acknowledged).await.expect("the heartbeat is acknowledged");
    let status = scheduler.client.cluster_status().await.unwrap();
    assert!(
        status.workers.iter().any(|worker| worker.worker_id == "quiet-worker" && worker.connected)
    );
    scheduler.stop().await;
}

#[tokio::test]
async fn shutdown_ends_streams_and_closes_idle_connections_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = TestScheduler::start(dir.path()).await;
    let experiment = scheduler.experiment("stopping").await;
    let run_id = scheduler.run(experiment).await.info.run_id;
    let request = FollowRun { run_id, follow: true, after_cursor: 0 };
    let mut events = scheduler.client.follow_run(request).await.unwrap();
    let mut silent = TcpStream::connect(&scheduler.address).await.unwrap();
    let mut idle = TcpStream::connect(&scheduler.address).await.unwrap();
    idle.write_all(GET_DEFAULT_EXPERIMENT).await.unwrap();
    assert_eq!(read_response(&mut idle).await.0, 200);

    tokio::time::timeout(SLACK, scheduler.stop()).await.expect("the scheduler stops promptly");
    closed_within(&mut silent, SLACK).await;
    closed_within(&mut idle, SLACK).await;
    let ended = async { while events.next().await.is_some() {} };
    tokio::time::timeout(SLACK, ended).await.expect("the follower's stream ends");
}
