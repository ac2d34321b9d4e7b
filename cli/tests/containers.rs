//! drover's own image on a private Docker network: a scheduler in one container and a worker
//! in another (the Docker socket mounted, its work directory at a different path on the host),
//! as deploy/docker-compose.yml runs them. A Docker run placed on that worker mounts its
//! snapshot and logs through the worker's tracking proxy; the token stays out of the run.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use support::{
    DockerCleanup, build_drover_image, docker, docker_ready, drover, project, run,
    start_scheduler_container, tracking_script, unique_name,
};

const TOKEN: &str = "drover-test-token-in-containers";

#[test]
fn a_worker_in_a_container_runs_docker_runs_beside_itself() {
    if !docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unique = unique_name(dir.path());
    let image = build_drover_image(&unique);

    let network = format!("drover-test-{unique}");
    let (scheduler, worker) = (format!("sched-{unique}"), format!("worker-{unique}"));
    let _cleanup = DockerCleanup {
        containers: vec![scheduler.clone(), worker.clone()],
        network: network.clone(),
        image: image.clone(),
    };
    docker(&["network", "create", &network]);
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let token_mount = format!("{}:/etc/drover/token:ro", token_file.display());
    start_scheduler_container(&scheduler, &network, &image, &[&token_mount], &[]);
    // The worker's work directory is /work inside, somewhere else on the host.
    let host_work = dir.path().join("worker-work");
    std::fs::create_dir_all(&host_work).unwrap();
    let work_mount = format!("{}:/work", host_work.display());
    let scheduler_address = format!("http://{scheduler}:7070");
    docker(&[
        "run",
        "-d",
        "--name",
        &worker,
        "--network",
        &network,
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        "-v",
        &work_mount,
        "-v",
        &token_mount,
        &image,
        "--scheduler",
        &scheduler_address,
        "--token-file",
        "/etc/drover/token",
        "worker",
        "--worker-id",
        &worker,
        "--work-dir",
        "/work",
        "--host-work-dir",
        host_work.to_str().unwrap(),
    ]);
    let published = docker(&["port", &scheduler, "7070"]);
    let address = format!("http://{}", published.lines().next().unwrap());

    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let client = || {
        let mut command = drover(&home);
        command.args(["--scheduler", &address]).env("DROVER_TOKEN", TOKEN);
        command
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !run(client().args(["workers", "list"])).stdout.contains(&worker) {
        assert!(Instant::now() < deadline, "the worker in its container did not register");
        std::thread::sleep(Duration::from_millis(200));
    }
    let tracked = project(
        &dir.path().join("tracked"),
        "docker_env: {image: drover/python:3}\nentry_points: {main: {command: 'python3 track.py'}}\n",
        &[("track.py", &tracking_script("from_container"))],
    );
    let outcome = run(client().arg("run").arg(&tracked));
    let printed = format!("{}{}", outcome.stdout, outcome.stderr);
    assert!(
        outcome.success && printed.contains("succeeded"),
        "{printed}\n{}",
        docker(&["logs", &worker])
    );
    assert!(printed.contains("environment:") && !printed.contains(TOKEN), "{printed}");
    let run_id = printed.split("ID='").nth(1).and_then(|rest| rest.split('\'').next()).unwrap();
    let described = run(client().args(["runs", "describe", run_id]));
    assert!(described.stdout.contains("from_container"), "{}", described.stdout);
    assert!(described.stdout.contains(&worker), "{}", described.stdout);
}
