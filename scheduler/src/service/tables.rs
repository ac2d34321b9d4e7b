//! The runs tables the web UI pages through, kept between requests: a [`RunTable`] for each
//! set of experiments recently shown, brought up to date before each use with the runs
//! written since (the store's change feed). A page then costs a pass over a few columns, not
//! a read of every run.

use drover_proto::ApiError;
use drover_proto::domain::{ExperimentId, ViewType};

use crate::search::RunTable;
use crate::store::Store;

/// Sets of experiments whose tables are kept; the least recently used goes first.
const MAX_TABLES: usize = 4;

#[derive(Default)]
pub struct Tables {
    entries: Vec<Entry>,
    /// Counts uses, to find the least recently used entry.
    clock: u64,
}

struct Entry {
    /// Sorted, without repeats.
    experiments: Vec<ExperimentId>,
    table: RunTable,
    used: u64,
}

impl Tables {
    /// Runs `work` on the up-to-date table of every run (of any lifecycle stage) of the
    /// experiments.
    pub fn with_table<T>(
        &mut self,
        store: &Store,
        mut experiments: Vec<ExperimentId>,
        work: impl FnOnce(&mut RunTable) -> T,
    ) -> Result<T, ApiError> {
        experiments.sort_unstable();
        experiments.dedup();
        // Changes are taken before any table is built, so a run written while one is being
        // built is read again on the next use rather than missed.
        self.catch_up(store)?;
        self.clock += 1;
        let index = match self.entries.iter().position(|entry| entry.experiments == experiments) {
            Some(index) => index,
            None => {
                let table = RunTable::new(store.runs_of(&experiments, ViewType::All)?);
                if self.entries.len() >= MAX_TABLES
                    && let Some(oldest) =
                        (0..self.entries.len()).min_by_key(|&i| self.entries[i].used)
                {
                    self.entries.swap_remove(oldest);
                }
                self.entries.push(Entry { experiments, table, used: 0 });
                self.entries.len() - 1
            }
        };
        let entry = &mut self.entries[index];
        entry.used = self.clock;
        Ok(work(&mut entry.table))
    }

    fn catch_up(&mut self, store: &Store) -> Result<(), ApiError> {
        let changed = store.take_changed_runs();
        if changed.is_empty() || self.entries.is_empty() {
            return Ok(());
        }
        let runs = match store.run_views(changed.into_iter().collect()) {
            Ok(runs) => runs,
            Err(error) => {
                // The changes are taken: tables that missed them are no longer true.
                self.entries.clear();
                return Err(error);
            }
        };
        for run in runs {
            for entry in &mut self.entries {
                if entry.experiments.binary_search(&run.info.experiment_id).is_ok() {
                    entry.table.upsert(run.clone());
                }
            }
        }
        Ok(())
    }
}
