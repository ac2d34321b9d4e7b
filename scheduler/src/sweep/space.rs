//! The search space of a sweep and the three ways through it: grid (every combination, by
//! index), random (each trial drawn from its own seeded stream, so trial i is the same
//! whatever order trials finish in) and TPE, the tree-structured Parzen estimator: finished
//! trials are split into the best few and the rest, a density is fitted to each per
//! parameter, and of candidates drawn from the good density the one with the highest ratio
//! good/rest wins.

use drover_project::sweep::{Domain, SweepParameter, format_number};

/// Trials drawn at random before TPE models the results.
pub const TPE_STARTUP: usize = 10;
/// Candidates TPE scores per suggestion.
const TPE_CANDIDATES: usize = 24;
/// At most this many of the best finished trials form the "good" density.
const TPE_MAX_GOOD: usize = 25;
/// Observations are binned this finely before densities are evaluated, so a suggestion costs
/// the same with ten thousand finished trials as with a hundred.
const DENSITY_BINS: usize = 256;

/// SplitMix64: small, fast and stable across releases, so a seed means the same trials in
/// every version of drover.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// The stream of trial `stream` of a sweep seeded with `seed`.
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut rng = Rng(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        rng.next_u64();
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: usize) -> usize {
        ((self.unit() * n as f64) as usize).min(n.saturating_sub(1))
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = 1.0 - self.unit();
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// An index drawn with probability proportional to `weights`.
    fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut target = self.unit() * total;
        for (index, weight) in weights.iter().enumerate() {
            if target < *weight {
                return index;
            }
            target -= weight;
        }
        weights.len().saturating_sub(1)
    }
}

/// One parameter as the search sees it.
#[derive(Clone, Debug)]
enum Dim {
    Fixed(String),
    Choice(Vec<String>),
    /// Searched in internal coordinates: the value, or its log for log-uniform domains.
    Numeric {
        low: f64,
        high: f64,
        log: bool,
        integer: bool,
        step: Option<(f64, f64)>,
    },
}

impl Dim {
    fn new(parameter: &SweepParameter) -> Dim {
        let integer = parameter.integer;
        match &parameter.domain {
            Domain::Fixed(value) => Dim::Fixed(value.clone()),
            Domain::Values(values) => Dim::Choice(values.clone()),
            Domain::Int { low, high } => Dim::Numeric {
                // Rounding spreads [low - ½, high + ½) evenly over the integers.
                low: *low as f64 - 0.5,
                high: *high as f64 + 0.5,
                log: false,
                integer: true,
                step: None,
            },
            Domain::Uniform { low, high } if integer => Dim::Numeric {
                low: low.ceil() - 0.5,
                high: high.floor() + 0.5,
                log: false,
                integer: true,
                step: None,
            },
            Domain::Uniform { low, high } => {
                Dim::Numeric { low: *low, high: *high, log: false, integer: false, step: None }
            }
            Domain::LogUniform { low, high } => {
                Dim::Numeric { low: low.ln(), high: high.ln(), log: true, integer, step: None }
            }
            Domain::QUniform { low, high, q } => Dim::Numeric {
                low: *low - q / 2.0,
                high: *high + q / 2.0,
                log: false,
                integer,
                step: Some((*low, *q)),
            },
        }
    }

    /// The parameter value at internal coordinate `x`.
    fn value_at(&self, x: f64, bounds: (f64, f64)) -> String {
        let Dim::Numeric { log, integer, step, .. } = self else { return String::new() };
        let mut value = if *log { x.exp() } else { x };
        if let Some((base, q)) = step {
            let max_k = ((bounds.1 - base) / q + 1e-9).floor().max(0.0);
            value = base + ((value - base) / q).round().clamp(0.0, max_k) * q;
        }
        if *integer {
            // Checked when the sweep was made: the range holds at least one integer.
            let (low, high) = (bounds.0.ceil(), bounds.1.floor());
            value = if low <= high { value.round().clamp(low, high) } else { value.round() };
        }
        format_number(value.clamp(bounds.0, bounds.1), *integer)
    }

    /// The internal coordinate of a stored parameter value.
    fn coordinate(&self, value: &str) -> Option<Coordinate> {
        match self {
            Dim::Fixed(_) => None,
            Dim::Choice(values) => values.iter().position(|v| v == value).map(Coordinate::Choice),
            Dim::Numeric { log, .. } => {
                let number: f64 = value.trim().parse().ok()?;
                let x = if *log { number.ln() } else { number };
                x.is_finite().then_some(Coordinate::Number(x))
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Coordinate {
    Number(f64),
    Choice(usize),
}

/// A finished trial as TPE learns from it: its parameters and its loss (lower is better).
#[derive(Clone, Debug)]
pub struct Observation<'a> {
    pub params: &'a [(String, String)],
    pub loss: f64,
}

/// A sweep's search space.
#[derive(Clone, Debug)]
pub struct Space {
    names: Vec<String>,
    dims: Vec<Dim>,
    /// The values each numeric dimension must stay within, in parameter units.
    bounds: Vec<(f64, f64)>,
    parameters: Vec<SweepParameter>,
    /// Every value of each parameter, built the first time a grid point is asked for.
    grid: std::sync::OnceLock<Vec<Vec<String>>>,
}

impl Space {
    pub fn new(parameters: &[SweepParameter]) -> Space {
        let bounds = parameters
            .iter()
            .map(|parameter| match &parameter.domain {
                Domain::Uniform { low, high }
                | Domain::LogUniform { low, high }
                | Domain::QUniform { low, high, .. } => (*low, *high),
                Domain::Int { low, high } => (*low as f64, *high as f64),
                Domain::Fixed(_) | Domain::Values(_) => (0.0, 0.0),
            })
            .collect();
        Space {
            names: parameters.iter().map(|parameter| parameter.name.clone()).collect(),
            dims: parameters.iter().map(Dim::new).collect(),
            bounds,
            parameters: parameters.to_vec(),
            grid: std::sync::OnceLock::new(),
        }
    }

    fn grid(&self) -> &[Vec<String>] {
        self.grid.get_or_init(|| {
            self.parameters
                .iter()
                .map(|parameter| {
                    parameter.domain.grid_values(parameter.integer).unwrap_or_default()
                })
                .collect()
        })
    }

    /// Combinations in the grid.
    pub fn grid_size(&self) -> u64 {
        self.grid().iter().map(|values| values.len() as u64).product()
    }

    /// Grid combination `index` (the last parameter varies fastest), or `None` past the end.
    pub fn grid_point(&self, index: u64) -> Option<Vec<(String, String)>> {
        if index >= self.grid_size() {
            return None;
        }
        let mut rest = index;
        let grid = self.grid();
        let mut values = vec![String::new(); grid.len()];
        for (slot, options) in grid.iter().enumerate().rev() {
            let count = options.len() as u64;
            values[slot] = options[(rest % count) as usize].clone();
            rest /= count;
        }
        Some(self.names.iter().cloned().zip(values).collect())
    }

    /// Trial `trial` of a random search seeded with `seed`.
    pub fn random_point(&self, seed: u64, trial: u64) -> Vec<(String, String)> {
        let mut rng = Rng::new(seed, trial);
        self.dims
            .iter()
            .enumerate()
            .map(|(slot, dim)| (self.names[slot].clone(), self.sample(slot, dim, &mut rng)))
            .collect()
    }

    fn sample(&self, slot: usize, dim: &Dim, rng: &mut Rng) -> String {
        match dim {
            Dim::Fixed(value) => value.clone(),
            Dim::Choice(values) => values[rng.below(values.len())].clone(),
            Dim::Numeric { low, high, .. } => {
                dim.value_at(low + rng.unit() * (high - low), self.bounds[slot])
            }
        }
    }

    /// Trial `trial` of a TPE search: random until TPE_STARTUP trials have finished, then
    /// the candidate with the best good/rest density ratio, parameter by parameter.
    pub fn tpe_point(
        &self,
        seed: u64,
        trial: u64,
        history: &[Observation<'_>],
    ) -> Vec<(String, String)> {
        let usable: Vec<&Observation<'_>> =
            history.iter().filter(|observation| observation.loss.is_finite()).collect();
        if usable.len() < TPE_STARTUP {
            return self.random_point(seed, trial);
        }
        let mut order: Vec<usize> = (0..usable.len()).collect();
        order.sort_by(|a, b| usable[*a].loss.total_cmp(&usable[*b].loss));
        let good_count = usable.len().div_ceil(10).clamp(1, TPE_MAX_GOOD);
        let mut is_good = vec![false; usable.len()];
        for index in &order[..good_count] {
            is_good[*index] = true;
        }
        let mut rng = Rng::new(seed, trial);
        self.dims
            .iter()
            .enumerate()
            .map(|(slot, dim)| {
                let mut good = Vec::new();
                let mut rest = Vec::new();
                for (index, observation) in usable.iter().enumerate() {
                    let value = observation
                        .params
                        .iter()
                        .find(|(name, _)| *name == self.names[slot])
                        .and_then(|(_, value)| dim.coordinate(value));
                    if let Some(value) = value {
                        if is_good[index] { good.push(value) } else { rest.push(value) }
                    }
                }
                let value = match dim {
                    Dim::Fixed(value) => value.clone(),
                    Dim::Choice(values) => {
                        values[suggest_choice(values.len(), &good, &rest, &mut rng)].clone()
                    }
                    Dim::Numeric { low, high, .. } => {
                        let x = suggest_number(*low, *high, &good, &rest, &mut rng);
                        dim.value_at(x, self.bounds[slot])
                    }
                };
                (self.names[slot].clone(), value)
            })
            .collect()
    }
}

/// A Parzen density over [low, high]: Gaussian kernels on binned observations plus a flat
/// prior worth one observation.
struct Parzen {
    low: f64,
    high: f64,
    sigma: f64,
    /// (center, weight) of each non-empty bin.
    bins: Vec<(f64, f64)>,
    total: f64,
}

impl Parzen {
    fn new(low: f64, high: f64, points: &[f64]) -> Parzen {
        let range = high - low;
        let n = points.len().max(1) as f64;
        // Scott's rule, kept between a hundredth and the whole of the range.
        let sigma = (0.5 * range * n.powf(-0.2)).clamp(range / 100.0, range);
        let width = range / DENSITY_BINS as f64;
        let mut counts = vec![0.0; DENSITY_BINS];
        for x in points {
            let bin = (((x - low) / width) as usize).min(DENSITY_BINS - 1);
            counts[bin] += 1.0;
        }
        let bins = counts
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0.0)
            .map(|(bin, count)| (low + (bin as f64 + 0.5) * width, *count))
            .collect();
        Parzen { low, high, sigma, bins, total: points.len() as f64 + 1.0 }
    }

    fn density(&self, x: f64) -> f64 {
        let norm = 1.0 / (self.sigma * (std::f64::consts::TAU).sqrt());
        let kernels: f64 = self
            .bins
            .iter()
            .map(|(center, weight)| {
                let z = (x - center) / self.sigma;
                weight * norm * (-0.5 * z * z).exp()
            })
            .sum();
        (kernels + 1.0 / (self.high - self.low)) / self.total
    }

    fn sample(&self, rng: &mut Rng) -> f64 {
        let mut weights: Vec<f64> = self.bins.iter().map(|(_, weight)| *weight).collect();
        weights.push(1.0);
        let component = rng.weighted(&weights);
        let Some((center, _)) = self.bins.get(component) else {
            return self.low + rng.unit() * (self.high - self.low);
        };
        for _ in 0..16 {
            let x = center + self.sigma * rng.normal();
            if (self.low..self.high).contains(&x) {
                return x;
            }
        }
        center.clamp(self.low, self.high)
    }
}

fn numbers(coordinates: &[Coordinate]) -> Vec<f64> {
    coordinates
        .iter()
        .filter_map(|c| match c {
            Coordinate::Number(x) => Some(*x),
            Coordinate::Choice(_) => None,
        })
        .collect()
}

fn suggest_number(
    low: f64,
    high: f64,
    good: &[Coordinate],
    rest: &[Coordinate],
    rng: &mut Rng,
) -> f64 {
    let good = Parzen::new(low, high, &numbers(good));
    let rest = Parzen::new(low, high, &numbers(rest));
    let mut best = (f64::NEG_INFINITY, low);
    for _ in 0..TPE_CANDIDATES {
        let x = good.sample(rng);
        let score = good.density(x).ln() - rest.density(x).ln();
        if score > best.0 {
            best = (score, x);
        }
    }
    best.1
}

fn suggest_choice(count: usize, good: &[Coordinate], rest: &[Coordinate], rng: &mut Rng) -> usize {
    let weights = |coordinates: &[Coordinate]| {
        // One observation's worth of prior, spread over the choices.
        let mut weights = vec![1.0 / count as f64; count];
        for coordinate in coordinates {
            if let Coordinate::Choice(index) = coordinate
                && let Some(weight) = weights.get_mut(*index)
            {
                *weight += 1.0;
            }
        }
        let total: f64 = weights.iter().sum();
        weights.iter().map(|weight| weight / total).collect::<Vec<f64>>()
    };
    let good = weights(good);
    let rest = weights(rest);
    let mut best = (f64::NEG_INFINITY, 0);
    for _ in 0..TPE_CANDIDATES {
        let choice = rng.weighted(&good);
        let score = good[choice].ln() - rest[choice].ln();
        if score > best.0 {
            best = (score, choice);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameter(name: &str, domain: Domain, integer: bool) -> SweepParameter {
        SweepParameter { name: name.to_string(), domain, integer }
    }

    #[test]
    fn grid_visits_every_combination_once() {
        let space = Space::new(&[
            parameter("a", Domain::Values(vec!["x".into(), "y".into(), "z".into()]), false),
            parameter("b", Domain::Int { low: 1, high: 4 }, true),
            parameter("c", Domain::Fixed("k".into()), false),
        ]);
        assert_eq!(space.grid_size(), 12);
        let points: Vec<_> = (0..12).map(|i| space.grid_point(i).unwrap()).collect();
        let mut unique = points.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 12);
        assert_eq!(
            points[0],
            vec![("a".into(), "x".into()), ("b".into(), "1".into()), ("c".into(), "k".into())]
        );
        assert_eq!(space.grid_point(12), None);
    }

    #[test]
    fn random_points_respect_domains_and_seeds() {
        let space = Space::new(&[
            parameter("lr", Domain::LogUniform { low: 1e-4, high: 1e-1 }, false),
            parameter("layers", Domain::Uniform { low: 1.0, high: 8.0 }, true),
            parameter("q", Domain::QUniform { low: 0.0, high: 1.0, q: 0.25 }, false),
        ]);
        let mut seen_layers = std::collections::BTreeSet::new();
        for trial in 0..500 {
            let point = space.random_point(42, trial);
            assert_eq!(point, space.random_point(42, trial), "same seed, same trial");
            let lr: f64 = point[0].1.parse().unwrap();
            assert!((1e-4..=1e-1).contains(&lr), "{lr}");
            let layers: i64 = point[1].1.parse().expect("an int parameter gets ints");
            assert!((1..=8).contains(&layers));
            seen_layers.insert(layers);
            assert!(
                ["0", "0.25", "0.5", "0.75", "1"].contains(&point[2].1.as_str()),
                "{}",
                point[2].1
            );
        }
        assert_eq!(seen_layers.len(), 8);
        assert_ne!(space.random_point(1, 0), space.random_point(2, 0));
    }

    /// A bowl with its minimum at x = 0.7, y = 3e-3 (searched in log space) and c = "b".
    fn objective(point: &[(String, String)]) -> f64 {
        let x: f64 = point[0].1.parse().unwrap();
        let y: f64 = point[1].1.parse().unwrap();
        let c = if point[2].1 == "b" { 0.0 } else { 0.5 };
        (x - 0.7).powi(2) + (y.log10() - (3e-3f64).log10()).powi(2) / 4.0 + c
    }

    fn best_of(space: &Space, seed: u64, trials: u64, tpe: bool) -> f64 {
        let mut evaluated: Vec<(Vec<(String, String)>, f64)> = Vec::new();
        for trial in 0..trials {
            let point = if tpe {
                let history: Vec<Observation> = evaluated
                    .iter()
                    .map(|(params, loss)| Observation { params, loss: *loss })
                    .collect();
                space.tpe_point(seed, trial, &history)
            } else {
                space.random_point(seed, trial)
            };
            let loss = objective(&point);
            evaluated.push((point, loss));
        }
        evaluated.iter().map(|(_, loss)| *loss).fold(f64::INFINITY, f64::min)
    }

    #[test]
    fn tpe_beats_random_search() {
        let space = Space::new(&[
            parameter("x", Domain::Uniform { low: -5.0, high: 5.0 }, false),
            parameter("y", Domain::LogUniform { low: 1e-6, high: 1.0 }, false),
            parameter(
                "c",
                Domain::Values(vec!["a".into(), "b".into(), "c".into(), "d".into()]),
                false,
            ),
        ]);
        let seeds = 0..10u64;
        let tpe: f64 =
            seeds.clone().map(|seed| best_of(&space, seed, 40, true)).sum::<f64>() / 10.0;
        let random: f64 = seeds.map(|seed| best_of(&space, seed, 40, false)).sum::<f64>() / 10.0;
        eprintln!("mean best-of-40 over 10 seeds: tpe {tpe:.4}, random {random:.4}");
        // Deterministic for these seeds: 0.36 against 0.55 when this was written.
        assert!(tpe < 0.8 * random, "mean best-of-40: tpe {tpe}, random {random}");
    }

    #[test]
    fn tpe_is_reproducible() {
        let space = Space::new(&[parameter("x", Domain::Uniform { low: 0.0, high: 1.0 }, false)]);
        let points: Vec<Vec<(String, String)>> =
            (0..30).map(|i| vec![("x".into(), format!("{}", i as f64 / 30.0))]).collect();
        let history: Vec<Observation> = points
            .iter()
            .enumerate()
            .map(|(i, params)| Observation { params, loss: (i as f64 / 30.0 - 0.4).abs() })
            .collect();
        assert_eq!(space.tpe_point(9, 30, &history), space.tpe_point(9, 30, &history));
        let x: f64 = space.tpe_point(9, 30, &history)[0].1.parse().unwrap();
        assert!((0.0..=1.0).contains(&x));
    }
}
