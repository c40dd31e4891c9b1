"""How fast the P@K metric scores 100k posts with 5 predictions each (issue: "well under a second").

    python -m benchmarks.metric_speed [--posts 100000]

Prints the time of the scoring itself and of the full ``evaluate`` ``compute`` (which adds Arrow I/O).
"""

import argparse
import random
import sys
import time
from pathlib import Path

import evaluate

METRIC_DIR = Path(__file__).resolve().parents[1] / "evaluate_metrics" / "precision_at_k"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(0)
    vocabulary = [f"tag{i}" for i in range(2000)]
    predictions = [rng.sample(vocabulary, 5) for _ in range(args.posts)]
    references = [rng.sample(vocabulary, rng.randint(1, 5)) for _ in range(args.posts)]
    metric = evaluate.load(str(METRIC_DIR), keep_in_memory=True)
    scoring = sys.modules[type(metric).__module__].scores_at_k

    def best_of(fn):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    core = best_of(lambda: scoring(predictions, references, [1, 3, 5]))
    full = best_of(lambda: metric.compute(predictions=predictions, references=references, k=[1, 3, 5]))
    print(f"posts={args.posts} predictions/post=5 k=1,3,5 (best of {args.repeats})")
    print(f"scoring (_compute)        {core:.3f} s  ({args.posts / core:,.0f} posts/s)")
    print(f"evaluate compute (+Arrow) {full:.3f} s  ({args.posts / full:,.0f} posts/s)")


if __name__ == "__main__":
    main()
