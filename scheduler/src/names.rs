//! Memorable names for runs created without one, in MLflow's `adjective-animal-number` style.

use rand::Rng;
use rand::seq::IndexedRandom;

const ADJECTIVES: &[&str] = &[
    "amber", "bold", "brave", "bright", "calm", "clever", "crisp", "daring", "eager", "fair",
    "gentle", "glad", "grand", "honest", "keen", "kind", "lively", "lucid", "merry", "nimble",
    "noble", "polite", "proud", "quick", "quiet", "rare", "sharp", "shy", "silent", "sleek",
    "smooth", "steady", "still", "sunny", "swift", "tidy", "vivid", "warm", "wise", "zesty",
];

const ANIMALS: &[&str] = &[
    "ant", "bat", "bear", "bee", "bison", "boar", "crab", "crane", "crow", "deer", "dove", "eel",
    "elk", "finch", "fox", "frog", "goat", "hare", "hawk", "heron", "horse", "ibis", "lark",
    "lion", "lynx", "mole", "moth", "newt", "otter", "owl", "panda", "robin", "seal", "shrew",
    "snail", "swan", "toad", "trout", "wasp", "wolf", "wren", "yak",
];

pub fn random_run_name() -> String {
    let mut rng = rand::rng();
    let adjective = ADJECTIVES.choose(&mut rng).copied().unwrap_or("quiet");
    let animal = ANIMALS.choose(&mut rng).copied().unwrap_or("owl");
    format!("{adjective}-{animal}-{}", rng.random_range(100..1000))
}
