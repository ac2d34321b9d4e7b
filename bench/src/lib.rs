//! Shared pieces of drover's benchmarks: a scheduler and worker as child processes of the
//! release binary, and the statistics the reports print.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use drover_project::snapshot;
use drover_proto::domain::{CreateExperiment, ExperimentId, ExperimentName};
use drover_proto::execution::{
    BoxStream, RunSpec, SchedulerMessage, WorkerEvent, WorkerMessage, WorkerRegistration,
};
use drover_proto::{ApiError, Client};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// The release `drover` binary (DROVER_BIN overrides).
pub fn drover_binary() -> PathBuf {
    std::env::var_os("DROVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/drover"))
}

/// A process killed when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A scheduler and one idle worker on loopback, over a fresh store.
pub struct LocalCluster {
    pub address: String,
    pub dir: tempfile::TempDir,
    _scheduler: Process,
    _worker: Option<Process>,
}

impl LocalCluster {
    /// A scheduler and one worker with `slots` slots; with no slots, the scheduler alone.
    pub fn start(slots: u32) -> anyhow::Result<LocalCluster> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let address = format!("127.0.0.1:{port}");
        let scheduler = Process(
            Command::new(drover_binary())
                .args(["scheduler", "--listen", &address, "--data-dir"])
                .arg(dir.path().join("store"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        wait_for_port(&address)?;
        if slots == 0 {
            return Ok(LocalCluster { address, dir, _scheduler: scheduler, _worker: None });
        }
        let worker = Process(
            Command::new(drover_binary())
                .args([
                    "--scheduler",
                    &address,
                    "worker",
                    "--worker-id",
                    "bench",
                    "--slots",
                    &slots.to_string(),
                    "--work-dir",
                ])
                .arg(dir.path().join("work"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        Ok(LocalCluster { address, dir, _scheduler: scheduler, _worker: Some(worker) })
    }
}

impl LocalCluster {
    /// Writes a project named `name` with `mlproject` under the cluster's directory, uploads
    /// its snapshot, and returns the spec of a local-process run of its `main` entry point.
    pub async fn local_project(
        &self,
        client: &Client,
        name: &str,
        mlproject: &str,
    ) -> anyhow::Result<RunSpec> {
        let project = self.dir.path().join(name);
        std::fs::create_dir_all(&project)?;
        std::fs::write(project.join("MLproject"), mlproject)?;
        let packed = snapshot::pack(&project, snapshot::DEFAULT_SIZE_LIMIT)?;
        let bytes = std::fs::read(packed.file.path())?;
        client
            .upload_snapshot(&packed.digest, packed.size, tokio_stream::iter(vec![bytes]))
            .await?;
        Ok(RunSpec::local(name, packed.digest.clone(), packed.size))
    }

    /// CPU time the scheduler process has used so far (user + system).
    pub fn scheduler_cpu(&self) -> anyhow::Result<Duration> {
        process_cpu(self._scheduler.0.id())
    }
}

/// Creates an experiment named `name`; its ID.
pub async fn create_experiment(client: &Client, name: &str) -> anyhow::Result<ExperimentId> {
    let request = CreateExperiment {
        name: ExperimentName::parse(name)?,
        artifact_location: None,
        tags: Vec::new(),
    };
    Ok(client.create_experiment(request).await?.id)
}

/// The bench process attached as a worker named `worker_id` with `slots` slots (and as many
/// CPUs): what it sends to the scheduler (`window` messages may wait) and what it is sent.
pub async fn attach_worker(
    client: &Client,
    worker_id: &str,
    slots: u32,
    window: usize,
) -> anyhow::Result<(mpsc::Sender<WorkerMessage>, BoxStream<Result<SchedulerMessage, ApiError>>)> {
    let (outgoing, to_scheduler) = mpsc::channel(window);
    let registration = WorkerRegistration {
        worker_id: worker_id.to_string(),
        hostname: worker_id.to_string(),
        slots,
        cpus: slots,
        memory_bytes: 64 << 30,
        docker_available: false,
        running: Vec::new(),
        labels: Vec::new(),
        gpus: Vec::new(),
    };
    outgoing.send(WorkerMessage { seq: None, event: WorkerEvent::Register(registration) }).await?;
    let incoming = client.attach_worker(ReceiverStream::new(to_scheduler)).await?;
    Ok((outgoing, incoming))
}

/// CPU time (user + system) a process has used, from /proc.
pub fn process_cpu(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is parenthesized and may contain spaces.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<u64> {
        Ok(fields.get(index).ok_or_else(|| anyhow::anyhow!("short /proc stat"))?.parse()?)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let total = ticks(11)? + ticks(12)?;
    // The kernel counts in USER_HZ, 100 per second on Linux.
    Ok(Duration::from_millis(total * 10))
}

fn wait_for_port(address: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(address).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "nothing listens on {address}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The value at quantile `q` (0..=1) of `samples`, nearest-rank.
pub fn quantile(samples: &[f64], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Prints a table: a header row, then rows, columns padded.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            widths[index] = widths[index].max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths[i]))
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    line(header.to_vec());
    println!("|{}|", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|"));
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// A minimal HTTP/1.1 client over one connection per request, enough for JSON calls.
pub struct HttpClient {
    address: String,
}

impl HttpClient {
    pub fn new(address: &str) -> HttpClient {
        HttpClient { address: address.to_string() }
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<String> {
        let host = &self.address;
        self.call(&format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"))
            .await
    }

    pub async fn post(&self, path: &str, body: &str) -> anyhow::Result<String> {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.address,
            body.len()
        );
        self.call(&request).await
    }

    async fn call(&self, request: &str) -> anyhow::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(&self.address).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(120), stream.read_to_end(&mut response)).await??;
        let text = String::from_utf8(response)?;
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| anyhow::anyhow!("malformed HTTP response"))?;
        anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
        // The server answers with a length or in chunks; decode chunks when present.
        if drover_testkit::http::is_chunked(head) {
            return Ok(drover_testkit::http::dechunk(body));
        }
        Ok(body.to_string())
    }
}
