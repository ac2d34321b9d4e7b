"""Fits an elastic-net linear regression on data it generates deterministically.

No third-party packages: the data come from a seeded generator, the model is fitted by
proximal gradient descent, and the metrics are printed as drover metric lines (`::metric k=v`).
"""

import argparse
import math
import random


def make_data(samples, features=8, seed=7):
    """A linear target with noise; only the first half of the features matter."""
    rng = random.Random(seed)
    true_weights = [3.0, -2.0, 1.5, 0.5] + [0.0] * (features - 4)
    rows, targets = [], []
    for _ in range(samples):
        row = [rng.gauss(0.0, 1.0) for _ in range(features)]
        noise = rng.gauss(0.0, 0.5)
        rows.append(row)
        targets.append(sum(w * x for w, x in zip(true_weights, row)) + noise)
    return rows, targets


def soft_threshold(value, threshold):
    if value > threshold:
        return value - threshold
    if value < -threshold:
        return value + threshold
    return 0.0


def fit_elastic_net(rows, targets, alpha, l1_ratio, epochs=50, learning_rate=0.05):
    """Proximal gradient descent on (1/2n)||y - Xw||^2 + alpha*(l1_ratio*|w|_1 + (1-l1_ratio)/2*|w|^2).

    Small steps from zero weights, so the training error falls epoch by epoch, as a curve.
    """
    n, features = len(rows), len(rows[0])
    weights = [0.0] * features
    for epoch in range(epochs):
        residuals = [t - sum(w * x for w, x in zip(weights, row)) for row, t in zip(rows, targets)]
        for j in range(features):
            gradient = -sum(rows[i][j] * residuals[i] for i in range(n)) / n
            gradient += alpha * (1.0 - l1_ratio) * weights[j]
            stepped = weights[j] - learning_rate * gradient
            weights[j] = soft_threshold(stepped, learning_rate * alpha * l1_ratio)
        residuals = [t - sum(w * x for w, x in zip(weights, row)) for row, t in zip(rows, targets)]
        rmse = math.sqrt(sum(r * r for r in residuals) / n)
        if epoch % 5 == 4:
            print(f"::metric train_rmse={rmse:.6f} step={epoch + 1}", flush=True)
    return weights


def evaluate(weights, rows, targets):
    predictions = [sum(w * x for w, x in zip(weights, row)) for row in rows]
    errors = [p - t for p, t in zip(predictions, targets)]
    rmse = math.sqrt(sum(e * e for e in errors) / len(errors))
    mae = sum(abs(e) for e in errors) / len(errors)
    mean = sum(targets) / len(targets)
    total = sum((t - mean) ** 2 for t in targets)
    r2 = 1.0 - sum(e * e for e in errors) / total
    return rmse, mae, r2


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--l1-ratio", type=float, default=0.1)
    parser.add_argument("--samples", type=int, default=400)
    args = parser.parse_args()

    rows, targets = make_data(args.samples)
    split = int(len(rows) * 0.75)
    weights = fit_elastic_net(rows[:split], targets[:split], args.alpha, args.l1_ratio)
    rmse, mae, r2 = evaluate(weights, rows[split:], targets[split:])
    print(f"Elasticnet model (alpha={args.alpha:f}, l1_ratio={args.l1_ratio:f}):")
    print(f"  RMSE: {rmse}")
    print(f"  MAE: {mae}")
    print(f"  R2: {r2}")
    print(f"::metric rmse={rmse:.6f} mae={mae:.6f} r2={r2:.6f}", flush=True)


if __name__ == "__main__":
    main()
