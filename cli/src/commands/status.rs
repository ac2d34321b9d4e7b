//! `drover status`: the cluster's workers, their capacity, the queue, and the attempts lost
//! with a worker recently.

use clap::Args;

use drover_proto::execution::ClusterStatus;

use crate::GlobalOptions;
use crate::backend::with_client;
use crate::output::{OutputFormat, Table, format_time, print_json};

#[derive(Args, Debug)]
pub struct Options {
    #[arg(long, short = 'o', value_enum, default_value_t)]
    output: OutputFormat,
}

/// One line per worker: its state (connected, draining, or lost while its lease runs), and
/// what its runs hold of its slots, CPUs, memory and GPUs (used/total), Docker, labels and
/// last heartbeat.
pub fn worker_table(status: &ClusterStatus) -> Table {
    let mut table = Table::new(&[
        "WORKER",
        "HOST",
        "STATE",
        "SLOTS",
        "CPUS",
        "MEMORY",
        "GPUS",
        "DOCKER",
        "LABELS",
        "LAST SEEN",
    ]);
    for worker in &status.workers {
        let state = match (worker.connected, worker.draining) {
            (true, false) => "connected",
            (true, true) => "draining",
            (false, false) => "lost (lease running)",
            (false, true) => "lost, draining",
        };
        let labels: Vec<String> =
            worker.labels.iter().map(|label| format!("{}={}", label.key, label.value)).collect();
        table.row(vec![
            worker.worker_id.clone(),
            worker.hostname.clone(),
            state.to_string(),
            format!("{}/{}", worker.busy_slots, worker.slots),
            format!("{}/{}", worker.cpus_in_use, worker.cpus),
            format!(
                "{:.1}/{:.1} GiB",
                worker.memory_in_use_bytes as f64 / (1u64 << 30) as f64,
                worker.memory_bytes as f64 / (1u64 << 30) as f64
            ),
            if worker.gpus.is_empty() {
                "-".to_string()
            } else {
                format!(
                    "{}/{} ({})",
                    worker.gpus_in_use.len(),
                    worker.gpus.len(),
                    worker.gpus.join(",")
                )
            },
            if worker.docker_available { "yes" } else { "no" }.to_string(),
            labels.join(","),
            format_time(worker.last_seen_ms),
        ]);
    }
    table
}

pub async fn run(global: &GlobalOptions, options: Options) -> anyhow::Result<()> {
    let status = with_client(global, async |client| Ok(client.cluster_status().await?)).await?;
    if options.output == OutputFormat::Json {
        return print_json(&status);
    }
    print!("{}", worker_table(&status).render());
    let busy: u32 = status.workers.iter().map(|w| w.busy_slots).sum();
    let slots: u32 = status.workers.iter().filter(|w| w.connected).map(|w| w.slots).sum();
    println!(
        "\n{} worker(s), {busy}/{slots} slots busy, {} run(s) queued",
        status.workers.len(),
        status.queued_runs
    );
    if !status.recent_losses.is_empty() {
        let mut losses = Table::new(&["LOST", "RUN", "ATTEMPT", "WORKER", "THEN", "WHY"]);
        for lost in &status.recent_losses {
            losses.row(vec![
                format_time(lost.time_ms),
                lost.attempt.run_id.to_string(),
                lost.attempt.attempt.to_string(),
                lost.worker_id.clone(),
                if lost.requeued { "requeued" } else { "ended" }.to_string(),
                lost.reason.clone(),
            ]);
        }
        println!("\nAttempts lost with their worker since the scheduler started:");
        print!("{}", losses.render());
    }
    Ok(())
}
