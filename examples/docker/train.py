"""Trains a linear model by gradient descent inside a container, reporting the loss each
epoch as a drover metric line. No third-party packages; the data are generated from a seed.
"""

import argparse
import os
import random
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait after each epoch")
    args = parser.parse_args()

    rng = random.Random(11)
    points = [(x, 2.5 * x - 1.0 + rng.gauss(0.0, 0.3)) for x in (rng.uniform(-2, 2) for _ in range(300))]
    slope, intercept = 0.0, 0.0
    print(f"training in {os.environ.get('TRAINING_MODE', 'unknown')} mode, run {os.environ.get('MLFLOW_RUN_ID')}", flush=True)
    for epoch in range(1, args.epochs + 1):
        grad_slope = sum(2 * (slope * x + intercept - y) * x for x, y in points) / len(points)
        grad_intercept = sum(2 * (slope * x + intercept - y) for x, y in points) / len(points)
        slope -= args.learning_rate * grad_slope
        intercept -= args.learning_rate * grad_intercept
        loss = sum((slope * x + intercept - y) ** 2 for x, y in points) / len(points)
        print(f"epoch {epoch}: loss {loss:.5f}", flush=True)
        print(f"::metric loss={loss:.6f} step={epoch}", flush=True)
        if args.delay:
            time.sleep(args.delay)
    print(f"slope={slope:.4f} intercept={intercept:.4f}", flush=True)


if __name__ == "__main__":
    main()
