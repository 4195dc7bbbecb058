#!/usr/bin/env python3
"""Why validation runs ahead of test on the example's split, measured with rankers that
need no training, so a gap they show is in the data, not in a model:

1. popularity over the clicks before the target's timestamp, over all time and the last
   30 / 7 / 2 days;
2. item-kNN (co-occurrence cosine over the training clicks) from the last L history
   items, L = 1, 3, 5 and all;
3. item-kNN from one history item at position k alone (k = 1 the newest): how well
   each position predicts the held-out click.

Prints HR@50 (seen items not removed, as evaluate's hr@50) for validation (history:
the training clicks) and test (history ending with the validation click).
Usage: pip install numpy pandas; benches/holdout_gap.py [ml-100k dir]
"""

import argparse

import numpy as np
from loo_split import clicks_in_order, user_sequences

p = argparse.ArgumentParser()
p.add_argument("data", nargs="?", default="../shared/data/ml-100k")
a = p.parse_args()

clicks, n_items = clicks_in_order(a.data)
seqs = user_sequences(clicks)
train = [s[:-2] for s in seqs]
histories = {"valid": train, "test": [s[:-1] for s in seqs]}
targets = {"valid": [s[-2] for s in seqs], "test": [s[-1] for s in seqs]}


def hr50(scores, target):
    # A stable descending sort's rank: ties go to the lower item code, so the many equal
    # counts of a short window do not all rank the target first; code 0 is padding.
    s = scores.astype(np.float64)
    s[0] = -np.inf
    rank = (s > s[target]).sum() + (s[:target] == s[target]).sum()
    return float(rank < 50)


# Per split, the clicks its histories may hold (test: validation too) in time order, and
# the held-out clicks; popularity at a held-out click counts the pool before it.
back = clicks.groupby("user").cumcount(ascending=False)
pools = {}
for split, held in (("valid", 1), ("test", 0)):
    pool = clicks[back > held].sort_values("time")
    held_out = clicks[back == held]
    pools[split] = (pool.time.values, pool.item.values, held_out.time.values, held_out.item.values)


def popularity(days):
    out = {}
    for split, (times, items, held_times, held_items) in pools.items():
        hits = []
        for time, item in zip(held_times, held_items):
            lo = np.searchsorted(times, time - days * 86400) if days else 0
            counts = np.bincount(items[lo : np.searchsorted(times, time)], minlength=n_items)
            hits.append(hr50(counts, item))
        out[split] = np.mean(hits)
    return out


x = np.zeros((len(seqs), n_items), np.float32)
for u, s in enumerate(train):
    x[u, s] = 1
co = x.T @ x
np.fill_diagonal(co, 0)
count = x.sum(0)
cosine = co / np.sqrt(np.outer(count, count) + 1e-9)


def knn(pick):
    return {
        split: np.mean([hr50(cosine[pick(h)].sum(0), t) for h, t in zip(histories[split], targets[split])])
        for split in ("valid", "test")
    }


def show(name, hr):
    print(f"{name:32} valid {hr['valid']:.3f}  test {hr['test']:.3f}")


for days in (0, 30, 7, 2):
    show(f"popularity, last {days} days" if days else "popularity, all time", popularity(days))
for last in (1, 3, 5, None):
    show(f"item-kNN, last {last or 'all'} items", knn(lambda h: h[-last:] if last else h))
for k in range(1, 9):
    show(f"item-kNN, position {k} alone", knn(lambda h: [h[-k]]))
