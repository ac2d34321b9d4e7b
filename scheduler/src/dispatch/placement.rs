//! Where a run may go: what it asks of a worker (slots, CPUs, memory, GPUs, labels, Docker),
//! which worker's free resources hold that now (the one with the most free slots, to spread
//! load), which GPU devices it then holds, why it waits when none does, and whether any
//! registered worker could ever hold it. Pure functions over a view of the workers; the
//! dispatcher keeps the books.

use drover_proto::domain::Tag;
use drover_proto::execution::{EnvManager, RunSpec};

/// What a run asks of the worker it runs on.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub cpus: f64,
    pub memory_bytes: u64,
    pub gpus: Gpus,
    pub labels: Vec<(String, String)>,
    pub docker: bool,
}

/// A run's GPUs: none, a number of any, every one of the worker's, or named devices.
#[derive(Clone, Debug, PartialEq)]
pub enum Gpus {
    None,
    Count(u32),
    All,
    Devices(Vec<String>),
}

impl Request {
    /// The request a run spec makes; an unreadable `--gpus` is an error naming it.
    pub fn of(spec: &RunSpec) -> Result<Request, String> {
        let gpus = match spec.docker.gpus.as_deref().map(str::trim) {
            None | Some("") | Some("0") => Gpus::None,
            Some("all") => Gpus::All,
            Some(text) => match text.strip_prefix("device=") {
                Some(devices) => {
                    let ids: Vec<String> = devices
                        .split(',')
                        .map(|id| id.trim().to_string())
                        .filter(|id| !id.is_empty())
                        .collect();
                    if ids.is_empty() {
                        return Err(format!("--gpus '{text}' names no device"));
                    }
                    Gpus::Devices(ids)
                }
                None => Gpus::Count(text.parse().map_err(|_| {
                    format!("--gpus '{text}' is not a number, all, or device=ID,...")
                })?),
            },
        };
        Ok(Request {
            cpus: spec.docker.cpus.unwrap_or(0.0).max(0.0),
            memory_bytes: spec.docker.memory_bytes.unwrap_or(0),
            gpus,
            labels: spec.labels.clone(),
            docker: spec.env_manager == EnvManager::Docker,
        })
    }
}

/// A worker as placement sees it: its capacity, and what its runs hold of it.
#[derive(Clone, Debug)]
pub struct WorkerView {
    pub id: String,
    /// Connected and not drained: it may take a run now.
    pub open: bool,
    pub docker: bool,
    pub labels: Vec<Tag>,
    pub slots: u32,
    pub slots_used: u32,
    pub cpus: u32,
    pub cpus_used: f64,
    /// 0: unknown, so not limited.
    pub memory_bytes: u64,
    pub memory_used: u64,
    pub gpus: Vec<String>,
    pub gpus_used: Vec<String>,
}

impl WorkerView {
    /// Counts a run placed here with `gpus`, so later choices in the same pass see it.
    pub fn take(&mut self, request: &Request, gpus: &[String]) {
        self.slots_used += 1;
        self.cpus_used += request.cpus;
        self.memory_used += request.memory_bytes;
        self.gpus_used.extend(gpus.iter().cloned());
    }

    fn has_labels(&self, request: &Request) -> bool {
        request.labels.iter().all(|(key, value)| {
            self.labels.iter().any(|label| label.key == *key && label.value == *value)
        })
    }

    fn free_gpus(&self) -> Vec<&str> {
        self.gpus
            .iter()
            .map(String::as_str)
            .filter(|id| !self.gpus_used.iter().any(|used| used == id))
            .collect()
    }

    /// The devices the request would hold here, if they are free now.
    fn gpus_for(&self, request: &Request) -> Option<Vec<String>> {
        let free = self.free_gpus();
        match &request.gpus {
            Gpus::None => Some(Vec::new()),
            Gpus::Count(count) => (free.len() >= *count as usize)
                .then(|| free[..*count as usize].iter().map(|id| id.to_string()).collect()),
            Gpus::All => {
                (!self.gpus.is_empty() && free.len() == self.gpus.len()).then(|| self.gpus.to_vec())
            }
            Gpus::Devices(ids) => {
                ids.iter().all(|id| free.contains(&id.as_str())).then(|| ids.to_vec())
            }
        }
    }

    /// Whether the request could ever run here, with the worker empty.
    fn could_hold(&self, request: &Request) -> bool {
        let empty = WorkerView {
            slots_used: 0,
            cpus_used: 0.0,
            memory_used: 0,
            gpus_used: Vec::new(),
            ..self.clone()
        };
        (!request.docker || self.docker)
            && self.has_labels(request)
            && self.slots > 0
            && request.cpus <= f64::from(self.cpus)
            && (self.memory_bytes == 0 || request.memory_bytes <= self.memory_bytes)
            && empty.gpus_for(request).is_some()
    }
}

/// The worker a run goes to now, and the GPU devices it holds there; else why it waits.
pub fn choose(workers: &[WorkerView], request: &Request) -> Result<(String, Vec<String>), String> {
    type Check<'c> = (String, Box<dyn Fn(&WorkerView) -> bool + 'c>);
    let checks: Vec<Check> = vec![
        ("no worker is connected and taking runs".to_string(), Box::new(|w: &WorkerView| w.open)),
        (
            "no worker with Docker".to_string(),
            Box::new(|w: &WorkerView| !request.docker || w.docker),
        ),
        (
            format!("no worker with the labels {}", labels_text(&request.labels)),
            Box::new(|w: &WorkerView| w.has_labels(request)),
        ),
        (
            "no worker with a free slot".to_string(),
            Box::new(|w: &WorkerView| w.slots_used < w.slots),
        ),
        (
            format!("no worker with {} free CPUs", request.cpus),
            Box::new(|w: &WorkerView| request.cpus <= f64::from(w.cpus) - w.cpus_used + 1e-9),
        ),
        (
            format!("no worker with {} of free memory", bytes_text(request.memory_bytes)),
            Box::new(|w: &WorkerView| {
                w.memory_bytes == 0
                    || request.memory_bytes <= w.memory_bytes.saturating_sub(w.memory_used)
            }),
        ),
        (gpu_shortfall(&request.gpus), Box::new(|w: &WorkerView| w.gpus_for(request).is_some())),
    ];
    let mut candidates: Vec<&WorkerView> = workers.iter().collect();
    for (reason, check) in &checks {
        candidates.retain(|worker| check(worker));
        if candidates.is_empty() {
            return Err(reason.clone());
        }
    }
    let best = candidates
        .into_iter()
        .max_by(|a, b| {
            (a.slots - a.slots_used)
                .cmp(&(b.slots - b.slots_used))
                .then_with(|| a.free_gpus().len().cmp(&b.free_gpus().len()))
                .then_with(|| b.id.cmp(&a.id))
        })
        .expect("candidates is not empty");
    let gpus = best.gpus_for(request).unwrap_or_default();
    Ok((best.id.to_string(), gpus))
}

/// Whether some registered worker could ever hold the request, else why not. With no
/// worker registered yet nothing is known, so every request may wait for one.
pub fn possible(workers: &[WorkerView], request: &Request) -> Result<(), String> {
    if workers.is_empty() || workers.iter().any(|worker| worker.could_hold(request)) {
        return Ok(());
    }
    let mut needs = Vec::new();
    if request.docker {
        needs.push("Docker".to_string());
    }
    if !request.labels.is_empty() {
        needs.push(format!("the labels {}", labels_text(&request.labels)));
    }
    if request.cpus > 0.0 {
        needs.push(format!("{} CPUs", request.cpus));
    }
    if request.memory_bytes > 0 {
        needs.push(format!("{} of memory", bytes_text(request.memory_bytes)));
    }
    match &request.gpus {
        Gpus::None => {}
        Gpus::Count(count) => needs.push(format!("{count} GPUs")),
        Gpus::All => needs.push("GPUs".to_string()),
        Gpus::Devices(ids) => needs.push(format!("the GPU devices {}", ids.join(","))),
    }
    let mut ids: Vec<&str> = workers.iter().map(|worker| worker.id.as_str()).collect();
    ids.sort_unstable();
    Err(format!(
        "no registered worker could ever run this: it asks for {}, and none of the workers ({}) has that (see drover workers list)",
        needs.join(", "),
        ids.join(", ")
    ))
}

fn gpu_shortfall(gpus: &Gpus) -> String {
    match gpus {
        Gpus::None => "no worker can take it".to_string(),
        Gpus::Count(1) => "no worker with a free GPU".to_string(),
        Gpus::Count(count) => format!("no worker with {count} free GPUs"),
        Gpus::All => "no worker with GPUs, all of them free".to_string(),
        Gpus::Devices(ids) => format!("no worker with the GPU devices {} free", ids.join(",")),
    }
}

fn labels_text(labels: &[(String, String)]) -> String {
    labels.iter().map(|(key, value)| format!("{key}={value}")).collect::<Vec<_>>().join(",")
}

fn bytes_text(bytes: u64) -> String {
    let gib = bytes as f64 / (1u64 << 30) as f64;
    if gib >= 1.0 { format!("{gib:.1} GiB") } else { format!("{} MiB", bytes >> 20) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: &str, gpus: &[String], labels: &[Tag]) -> WorkerView {
        WorkerView {
            id: id.to_string(),
            open: true,
            docker: true,
            labels: labels.to_vec(),
            slots: 4,
            slots_used: 0,
            cpus: 8,
            cpus_used: 0.0,
            memory_bytes: 16 << 30,
            memory_used: 0,
            gpus: gpus.to_vec(),
            gpus_used: Vec::new(),
        }
    }

    fn request(gpus: Gpus) -> Request {
        Request { cpus: 0.0, memory_bytes: 0, gpus, labels: Vec::new(), docker: false }
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| i.to_string()).collect()
    }

    #[test]
    fn gpus_are_never_shared() {
        let eight = ids(8);
        let mut view = worker("w", &eight, &[]);
        let (_, first) = choose(std::slice::from_ref(&view), &request(Gpus::Count(1))).unwrap();
        view.gpus_used.push("0".to_string());
        view.slots_used = 1;
        let (_, second) = choose(std::slice::from_ref(&view), &request(Gpus::Count(1))).unwrap();
        assert_eq!((first, second), (vec!["0".to_string()], vec!["1".to_string()]));
        view.gpus_used = eight.clone();
        let waiting = choose(std::slice::from_ref(&view), &request(Gpus::Count(1))).unwrap_err();
        assert_eq!(waiting, "no worker with a free GPU");
        let waiting = choose(&[view], &request(Gpus::Count(2))).unwrap_err();
        assert_eq!(waiting, "no worker with 2 free GPUs");
    }

    #[test]
    fn labels_docker_cpus_and_memory_narrow_the_choice_and_load_spreads() {
        let zone_a = [Tag::new("zone", "a")];
        let none: Vec<String> = Vec::new();
        let mut busy = worker("busy", &none, &zone_a);
        busy.slots_used = 3;
        let idle = worker("idle", &none, &zone_a);
        let other = worker("other", &none, &[]);
        let mut wants = request(Gpus::None);
        wants.labels = vec![("zone".into(), "a".into())];
        let (chosen, _) = choose(&[busy.clone(), idle.clone(), other.clone()], &wants).unwrap();
        assert_eq!(chosen, "idle");
        wants.labels = vec![("zone".into(), "b".into())];
        assert_eq!(
            choose(&[busy.clone(), other.clone()], &wants).unwrap_err(),
            "no worker with the labels zone=b"
        );
        let mut big = request(Gpus::None);
        big.cpus = 6.0;
        let mut loaded = idle.clone();
        loaded.cpus_used = 4.0;
        assert_eq!(choose(&[loaded], &big).unwrap_err(), "no worker with 6 free CPUs");
        big.memory_bytes = 32 << 30;
        assert_eq!(
            choose(std::slice::from_ref(&idle), &big).unwrap_err(),
            "no worker with 32.0 GiB of free memory"
        );
    }

    #[test]
    fn impossible_requests_are_known_at_submission() {
        let four = ids(4);
        let workers = [worker("w1", &four, &[]), worker("w2", &[], &[])];
        assert!(possible(&workers, &request(Gpus::Count(4))).is_ok());
        let refused = possible(&workers, &request(Gpus::Count(64))).unwrap_err();
        assert!(refused.contains("64 GPUs") && refused.contains("w1, w2"), "{refused}");
        let mut labelled = request(Gpus::None);
        labelled.labels = vec![("zone".into(), "nowhere".into())];
        assert!(possible(&workers, &labelled).unwrap_err().contains("zone=nowhere"));
        assert!(possible(&[], &request(Gpus::Count(64))).is_ok(), "no worker yet: it waits");
    }

    #[test]
    fn gpu_requests_read_as_docker_reads_them() {
        let spec = |gpus: &str| {
            let mut spec = crate::dispatch::placement::tests::spec();
            spec.docker.gpus = Some(gpus.to_string());
            Request::of(&spec).map(|request| request.gpus)
        };
        assert_eq!(spec("2"), Ok(Gpus::Count(2)));
        assert_eq!(spec("all"), Ok(Gpus::All));
        assert_eq!(spec("device=1,3"), Ok(Gpus::Devices(vec!["1".into(), "3".into()])));
        assert!(spec("two").unwrap_err().contains("'two'"));
        assert!(spec("device=").is_err());
    }

    pub(super) fn spec() -> RunSpec {
        let digest = format!("sha256:{}", "0".repeat(64)).parse().unwrap();
        RunSpec::local("p", digest, 0)
    }
}
