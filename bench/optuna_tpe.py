"""Optuna's TPE sampler beside drover's: ms per suggestion with 1,000 and 10,000 finished
trials in the study, over the same four parameters as `sweeps` (log-uniform lr, uniform
dropout, int layers, categorical optimizer). Run by bench/run.sh in a virtualenv with the
pinned Optuna."""

import json
import math
import random
import statistics
import sys
import time

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-5, 1e-1, log=True),
    "dropout": FloatDistribution(0.0, 0.5),
    "layers": IntDistribution(1, 8),
    "optimizer": CategoricalDistribution(["sgd", "adam", "rmsprop"]),
}


def latency(finished, suggestions):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(1)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=7))
    trials = []
    for _ in range(finished):
        params = {
            "lr": math.exp(rng.uniform(math.log(1e-5), math.log(1e-1))),
            "dropout": rng.uniform(0.0, 0.5),
            "layers": rng.randint(1, 8),
            "optimizer": rng.choice(["sgd", "adam", "rmsprop"]),
        }
        value = (math.log10(params["lr"]) + 3.0) ** 2 + rng.random()
        trials.append(
            optuna.trial.create_trial(params=params, distributions=DISTRIBUTIONS, value=value)
        )
    study.add_trials(trials)
    times = []
    for _ in range(suggestions):
        started = time.perf_counter()
        trial = study.ask()
        trial.suggest_float("lr", 1e-5, 1e-1, log=True)
        trial.suggest_float("dropout", 0.0, 0.5)
        trial.suggest_int("layers", 1, 8)
        trial.suggest_categorical("optimizer", ["sgd", "adam", "rmsprop"])
        times.append((time.perf_counter() - started) * 1000.0)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return statistics.median(times)


def main():
    figures = {
        "optuna": optuna.__version__,
        "tpe_1k_ms": latency(1_000, 20),
        "tpe_10k_ms": latency(10_000, 5),
    }
    print(
        f"\nOptuna {figures['optuna']} TPESampler, ms per suggestion (median): "
        f"{figures['tpe_1k_ms']:.1f} ms at 1,000 finished trials, "
        f"{figures['tpe_10k_ms']:.1f} ms at 10,000"
    )
    json.dump(figures, sys.stdout)
    print()


if __name__ == "__main__":
    main()
