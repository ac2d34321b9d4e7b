//! drover against Slurm on this machine: 1,000 jobs whose command is `true`, two at a time
//! on each side (one `drover worker --slots 2`; one slurmd with CPUs=2):
//! 1. one batch: a drover grid sweep of 1,000 trials against a 1,000-task Slurm job array,
//!    jobs per second from the submit until all have completed;
//! 2. one by one: 1,000 sequential `drover run --detach` against 1,000 sequential
//!    `sbatch --wrap true`, whole CLI invocations: submits per second, and jobs per second
//!    from the first submit until all have completed;
//! 3. a lone submit to an idle scheduler: median and p90 of 50 whole CLI invocations each,
//!    interleaved, each waiting for its job to complete before the next.
//!
//! Slurm (Debian's slurm-wlm) is configured and started here in a temporary directory, as
//! root: munged on its own key and socket, slurmctld and slurmd in the foreground, no
//! accounting database. A Slurm job has completed once jobcomp/filetxt holds its record and
//! squeue no longer lists it. `DROVER_BENCH_JOBS` changes the 1,000.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use drover_bench::{LocalCluster, Process, drover_binary, print_table, quantile};
use drover_proto::Client;
use drover_proto::domain::{ListRuns, RunId, ViewType};

const DEFAULT_JOBS: u32 = 1_000;
/// Trials the sweep keeps queued or running: enough that the worker's two slots never wait
/// for the sweep to create the next trial.
const SWEEP_PARALLEL: u32 = 16;
const LONE_SUBMITS: usize = 50;
/// How often completion is looked at, on both sides.
const POLL: Duration = Duration::from_millis(20);
/// The longest any one measure may take before the benchmark gives up.
const MEASURE_TIMEOUT: Duration = Duration::from_secs(1_200);
/// The longest a daemon may take to be ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Set once SIGINT or SIGTERM arrives: every wait and every command then fails, so that
/// both clusters are stopped and their directories removed on the way out.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn main() -> anyhow::Result<()> {
    watch_signals()?;
    let jobs: u32 = match std::env::var("DROVER_BENCH_JOBS") {
        Ok(value) => value.parse().context("DROVER_BENCH_JOBS must be a number of jobs")?,
        Err(_) => DEFAULT_JOBS,
    };
    ensure!(jobs > 0, "DROVER_BENCH_JOBS must be at least 1");
    let mut slurm = Slurm::start()?;
    let mut drover = Drover::start()?;
    eprintln!("Slurm {} and drover are up; {jobs} jobs each way", slurm.version);

    // Warm both: the first submit uploads drover's snapshot, and each side's first job
    // pays for cold caches.
    slurm.submit_one()?;
    slurm.wait_until_idle()?;
    drover.submit_one()?;
    drover.wait_until_idle()?;

    eprintln!("one batch: Slurm job array");
    let slurm_batch = slurm.batch(jobs)?;
    eprintln!("  {:.1} s", slurm_batch.as_secs_f64());
    eprintln!("one batch: drover grid sweep");
    let drover_batch = drover.batch(jobs)?;
    eprintln!("  {:.1} s", drover_batch.as_secs_f64());

    eprintln!("one by one: {jobs} sbatch --wrap true");
    let slurm_one_by_one = one_by_one(&mut slurm, jobs)?;
    eprintln!("  {slurm_one_by_one}");
    eprintln!("one by one: {jobs} drover run --detach");
    let drover_one_by_one = one_by_one(&mut drover, jobs)?;
    eprintln!("  {drover_one_by_one}");

    eprintln!("lone submits: {LONE_SUBMITS} each, interleaved");
    let mut slurm_lone = Vec::with_capacity(LONE_SUBMITS);
    let mut drover_lone = Vec::with_capacity(LONE_SUBMITS);
    for _ in 0..LONE_SUBMITS {
        slurm_lone.push(millis(slurm.submit_one()?));
        slurm.wait_until_idle()?;
        drover_lone.push(millis(drover.submit_one()?));
        drover.wait_until_idle()?;
    }

    let rate = |count: u32, elapsed: Duration| f64::from(count) / elapsed.as_secs_f64();
    let batch_cell = |elapsed: Duration| {
        format!("{:.1} jobs/s ({:.1} s)", rate(jobs, elapsed), elapsed.as_secs_f64())
    };
    let submits_cell =
        |figures: &OneByOne| format!("{:.1} submits/s", rate(jobs, figures.submitted));
    let completed_cell = |figures: &OneByOne| batch_cell(figures.completed);
    let ms = |samples: &[f64], q: f64| format!("{:.1} ms", quantile(samples, q));
    let slurm_header = format!("Slurm {}", slurm.version);
    println!(
        "\ndrover against Slurm (this machine, {jobs} jobs whose command is `true`, 2 at a time)\n"
    );
    print_table(
        &["measure", "drover", slurm_header.as_str(), "goal"],
        &[
            vec![
                format!(
                    "one batch: grid sweep (--parallel {SWEEP_PARALLEL}) / job array, submit -> all completed"
                ),
                batch_cell(drover_batch),
                batch_cell(slurm_batch),
                "-".to_string(),
            ],
            vec![
                format!("one by one: {jobs} sequential CLI submits"),
                submits_cell(&drover_one_by_one),
                submits_cell(&slurm_one_by_one),
                "-".to_string(),
            ],
            vec![
                "  first submit -> all completed".to_string(),
                completed_cell(&drover_one_by_one),
                completed_cell(&slurm_one_by_one),
                "-".to_string(),
            ],
            vec![
                format!("lone submit to an idle scheduler, median of {LONE_SUBMITS}"),
                ms(&drover_lone, 0.5),
                ms(&slurm_lone, 0.5),
                "< 15 ms".to_string(),
            ],
            vec!["  p90".to_string(), ms(&drover_lone, 0.9), ms(&slurm_lone, 0.9), "-".to_string()],
        ],
    );
    Ok(())
}

fn watch_signals() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // The handlers are installed here, before any cluster starts.
    let (mut interrupt, mut terminate) = runtime.block_on(async {
        anyhow::Ok((signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?))
    })?;
    std::thread::spawn(move || {
        runtime.block_on(async {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        });
        INTERRUPTED.store(true, Ordering::SeqCst);
    });
    Ok(())
}

fn check_interrupted() -> anyhow::Result<()> {
    ensure!(!INTERRUPTED.load(Ordering::SeqCst), "interrupted; stopping both clusters");
    Ok(())
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// How long `jobs` sequential submits took, and how long until all their jobs completed,
/// both from the first submit.
struct OneByOne {
    submitted: Duration,
    completed: Duration,
}

impl std::fmt::Display for OneByOne {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "submitted in {:.1} s, all completed after {:.1} s",
            self.submitted.as_secs_f64(),
            self.completed.as_secs_f64()
        )
    }
}

fn one_by_one(side: &mut impl JobSystem, jobs: u32) -> anyhow::Result<OneByOne> {
    let started = Instant::now();
    for _ in 0..jobs {
        side.submit_one()?;
    }
    let submitted = started.elapsed();
    side.wait_until_idle()?;
    Ok(OneByOne { submitted, completed: started.elapsed() })
}

/// What each side does for the measures.
trait JobSystem {
    /// One job, submitted as a user types it: the time the command took.
    fn submit_one(&mut self) -> anyhow::Result<Duration>;
    /// `jobs` jobs submitted as one batch: the time from the submit until all completed.
    fn batch(&mut self, jobs: u32) -> anyhow::Result<Duration>;
    /// Waits until every job submitted so far has completed; a job that failed is an error.
    fn wait_until_idle(&mut self) -> anyhow::Result<()>;
}

/// Runs `command` to success with its output thrown away, and returns how long it took.
fn time_command(command: &mut Command) -> anyhow::Result<Duration> {
    check_interrupted()?;
    let started = Instant::now();
    let output = command.stdin(Stdio::null()).stdout(Stdio::null()).output()?;
    let elapsed = started.elapsed();
    ensure!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(elapsed)
}

/// Runs `command` to success and returns its standard output, trimmed.
fn command_output(command: &mut Command) -> anyhow::Result<String> {
    let output =
        command.stdin(Stdio::null()).output().with_context(|| format!("cannot run {command:?}"))?;
    ensure!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Calls `done` every [`POLL`] until it says yes, for at most `timeout`.
fn poll_until(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !done()? {
        check_interrupted()?;
        ensure!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(POLL);
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A one-node Slurm cluster of its own: munged, slurmctld and slurmd, killed when dropped,
/// and their configuration and state in a temporary directory removed after them.
struct Slurm {
    version: String,
    config: PathBuf,
    jobs_dir: PathBuf,
    completions: Completions,
    /// How many jobs this cluster has been given.
    submitted: u64,
    // Fields drop in order: the daemons, then their directory.
    slurmd: Process,
    slurmctld: Process,
    munged: Process,
    dir: tempfile::TempDir,
}

impl Slurm {
    fn start() -> anyhow::Result<Slurm> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        let root = status
            .lines()
            .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"));
        ensure!(
            root,
            "the Slurm side runs as root (its daemons run jobs as their submitter and write their own state); run this as root"
        );
        let version = command_output(Command::new("slurmctld").arg("-V"))
            .context("Slurm is missing: install Debian's slurm-wlm (bench/run.sh does)")?;
        let version = version.rsplit(' ').next().unwrap_or(&version).to_string();

        let dir = tempfile::Builder::new().prefix("drover-bench-slurm-").tempdir()?;
        let path = dir.path();
        let jobs_dir = path.join("jobs");
        for sub in ["state", "spool", "jobs"] {
            std::fs::create_dir(path.join(sub))?;
        }
        let mut key = [0u8; 1024];
        File::open("/dev/urandom")?.read_exact(&mut key)?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(path.join("munge.key"))?
            .write_all(&key)?;
        let socket = path.join("munge.socket");
        let mut munged = spawn_daemon(
            Command::new("munged")
                .args(["--foreground", "--force"])
                .arg(flag("--socket", &socket))
                .arg(flag("--key-file", &path.join("munge.key")))
                .arg(flag("--pid-file", &path.join("munged.pid")))
                .arg(flag("--seed-file", &path.join("munged.seed"))),
            &path.join("munged.log"),
        )?;
        poll_until("munged to open its socket", START_TIMEOUT, || {
            ensure_running(&mut munged, &path.join("munged.log"))?;
            Ok(socket.exists())
        })?;

        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
        let host = hostname.trim().split('.').next().unwrap_or_default().to_string();
        let config = path.join("slurm.conf");
        std::fs::write(&config, slurm_conf(path, &host, free_port()?, free_port()?))?;
        let slurmctld = spawn_daemon(
            Command::new("slurmctld").arg("-D").arg("-f").arg(&config),
            &path.join("slurmctld.log"),
        )?;
        let slurmd = spawn_daemon(
            Command::new("slurmd").arg("-D").arg("-f").arg(&config),
            &path.join("slurmd.log"),
        )?;
        let completions = Completions::new(path.join("jobcomp.txt"));
        let mut slurm = Slurm {
            version,
            config,
            jobs_dir,
            completions,
            submitted: 0,
            slurmd,
            slurmctld,
            munged,
            dir,
        };
        poll_until("the Slurm node to be idle", START_TIMEOUT, || {
            let logs = slurm.dir.path();
            ensure_running(&mut slurm.munged, &logs.join("munged.log"))?;
            ensure_running(&mut slurm.slurmctld, &logs.join("slurmctld.log"))?;
            ensure_running(&mut slurm.slurmd, &logs.join("slurmd.log"))?;
            Ok(slurm.command("sinfo").args(["-h", "-o", "%T"]).output()?.stdout == b"idle\n")
        })?;
        Ok(slurm)
    }

    /// A Slurm client command for this cluster, run from its jobs directory.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("SLURM_CONF", &self.config).current_dir(&self.jobs_dir);
        command
    }
}

impl JobSystem for Slurm {
    /// One `sbatch --wrap true`, as a user types it (with its output going nowhere).
    fn submit_one(&mut self) -> anyhow::Result<Duration> {
        let elapsed = time_command(self.command("sbatch").args([
            "--quiet",
            "--output=/dev/null",
            "--wrap",
            "true",
        ]))?;
        self.submitted += 1;
        Ok(elapsed)
    }

    /// A job array of `jobs` tasks: the time from its submit until all have completed.
    fn batch(&mut self, jobs: u32) -> anyhow::Result<Duration> {
        let started = Instant::now();
        time_command(self.command("sbatch").args([
            "--quiet",
            "--output=/dev/null",
            &format!("--array=0-{}", jobs - 1),
            "--wrap",
            "true",
        ]))?;
        self.submitted += u64::from(jobs);
        self.wait_until_idle()?;
        Ok(started.elapsed())
    }

    /// Waits until every job submitted so far has completed: recorded by jobcomp (read
    /// without asking slurmctld anything), then gone from squeue (its epilog done too).
    fn wait_until_idle(&mut self) -> anyhow::Result<()> {
        let submitted = self.submitted;
        poll_until("Slurm's jobs to be recorded as completed", MEASURE_TIMEOUT, || {
            Ok(self.completions.count()? >= submitted)
        })?;
        poll_until("squeue to be empty", MEASURE_TIMEOUT, || {
            Ok(command_output(self.command("squeue").args(["-h", "-o", "%i"]))?.is_empty())
        })
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        // Jobs a failed or interrupted measure left are cancelled and given time to end
        // while slurmctld and slurmd still run: a step daemon that cannot report its job's
        // end would outlive the cluster.
        if self.command("scancel").args(["--quiet", "--user=root"]).status().is_err() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            match command_output(self.command("squeue").args(["-h", "-o", "%i"])) {
                Ok(listed) if !listed.is_empty() => std::thread::sleep(POLL),
                _ => break,
            }
        }
    }
}

fn flag(name: &str, path: &Path) -> String {
    format!("{name}={}", path.display())
}

/// Fails, with the end of its log, if a daemon has exited.
fn ensure_running(daemon: &mut Process, log: &Path) -> anyhow::Result<()> {
    if let Some(status) = daemon.0.try_wait()? {
        let name = log.file_stem().unwrap_or_default().to_string_lossy();
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        bail!(
            "{name} exited ({status}); its log ends:\n{}",
            lines[lines.len().saturating_sub(20)..].join("\n")
        );
    }
    Ok(())
}

fn spawn_daemon(command: &mut Command, log: &Path) -> anyhow::Result<Process> {
    let log = File::create(log)?;
    let child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    Ok(Process(child))
}

/// One node of two CPUs, one CPU per job (cons_tres with CR_CPU), no accounting database;
/// job completions are written to jobcomp.txt.
fn slurm_conf(dir: &Path, host: &str, controller_port: u16, node_port: u16) -> String {
    let dir = dir.display();
    format!(
        "ClusterName=drover-bench
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={controller_port}
SlurmdPort={node_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={dir}/munge.socket
CredType=cred/munge
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
Epilog=/bin/true
JobCompType=jobcomp/filetxt
JobCompLoc={dir}/jobcomp.txt
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MaxArraySize=1000001
MaxJobCount=1000000
ReturnToService=2
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=bench Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"
    )
}

/// Counts the jobs jobcomp/filetxt has recorded, reading only what it appended since.
struct Completions {
    path: PathBuf,
    file: Option<File>,
    unfinished_line: String,
    completed: u64,
}

impl Completions {
    fn new(path: PathBuf) -> Completions {
        Completions { path, file: None, unfinished_line: String::new(), completed: 0 }
    }

    /// Jobs recorded as completed so far; a job recorded in any other state is an error.
    fn count(&mut self) -> anyhow::Result<u64> {
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(file) => self.file = Some(file),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(error) => return Err(error.into()),
            }
        }
        let Some(file) = self.file.as_mut() else { return Ok(0) };
        file.read_to_string(&mut self.unfinished_line)?;
        let Some(end) = self.unfinished_line.rfind('\n') else { return Ok(self.completed) };
        for record in self.unfinished_line[..end].lines() {
            ensure!(
                record.contains(" JobState=COMPLETED "),
                "a Slurm job did not complete: {record}"
            );
            self.completed += 1;
        }
        self.unfinished_line.drain(..=end);
        Ok(self.completed)
    }
}

/// A drover scheduler and one two-slot worker over a fresh store, a project whose command
/// is `true`, and a client to watch them.
struct Drover {
    cluster: LocalCluster,
    project: PathBuf,
    home: PathBuf,
    runtime: tokio::runtime::Runtime,
    client: Client,
}

impl Drover {
    fn start() -> anyhow::Result<Drover> {
        let cluster = LocalCluster::start(2)?;
        let project = cluster.dir.path().join("noop");
        std::fs::create_dir(&project)?;
        std::fs::write(
            project.join("MLproject"),
            "name: noop\nentry_points:\n  main:\n    parameters: {i: {type: int, default: 0}}\n    command: 'true'\n",
        )?;
        let home = cluster.dir.path().join("home");
        std::fs::create_dir(&home)?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let client = runtime.block_on(Client::connect(&cluster.address))?;
        Ok(Drover { cluster, project, home, runtime, client })
    }

    /// A `drover` command for this cluster, as a user on this machine types it.
    fn command(&self) -> Command {
        let mut command = Command::new(drover_binary());
        command
            .arg("--scheduler")
            .arg(&self.cluster.address)
            .env("DROVER_HOME", &self.home)
            .current_dir(self.cluster.dir.path());
        command
    }
}

impl JobSystem for Drover {
    /// One `drover run PROJECT --detach`.
    fn submit_one(&mut self) -> anyhow::Result<Duration> {
        time_command(self.command().arg("run").arg(&self.project).arg("--detach"))
    }

    /// A grid sweep of `jobs` trials: the time from its submit until all have completed.
    fn batch(&mut self, jobs: u32) -> anyhow::Result<Duration> {
        let values: Vec<String> = (0..jobs).map(|value| value.to_string()).collect();
        let started = Instant::now();
        let sweep_id: RunId = command_output(
            self.command()
                .arg("sweep")
                .arg(&self.project)
                .arg("-P")
                .arg(format!("i={}", values.join(",")))
                .args(["--method", "grid", "--parallel", &SWEEP_PARALLEL.to_string(), "--detach"])
                .stderr(Stdio::null()),
        )?
        .parse()?;
        poll_until("the sweep to end", MEASURE_TIMEOUT, || {
            let sweep = self.runtime.block_on(self.client.get_sweep(sweep_id))?;
            Ok(sweep.status.is_terminal() && sweep.counts.active == 0)
        })?;
        let elapsed = started.elapsed();
        let sweep = self.runtime.block_on(self.client.get_sweep(sweep_id))?;
        ensure!(
            sweep.counts.finished == jobs,
            "the sweep ended with {} of {jobs} trials finished: {}",
            sweep.counts.finished,
            sweep.reason
        );
        Ok(elapsed)
    }

    /// Waits until no run is queued or running; a run that ended other than FINISHED is an
    /// error.
    fn wait_until_idle(&mut self) -> anyhow::Result<()> {
        poll_until("drover's runs to finish", MEASURE_TIMEOUT, || {
            let unfinished = self.runtime.block_on(self.client.list_runs(ListRuns {
                experiment_ids: Vec::new(),
                view_type: ViewType::All,
                max_results: Some(10),
                page_token: None,
                filter: Some("attributes.status != 'FINISHED'".into()),
                order_by: Vec::new(),
            }))?;
            if let Some(run) = unfinished.items.iter().find(|run| run.info.status.is_terminal()) {
                bail!("run {} ended {}", run.info.run_id, run.info.status);
            }
            Ok(unfinished.items.is_empty())
        })
    }
}
