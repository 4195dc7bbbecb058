"""The example's leave-one-out split for the Python benches: MovieLens-100k's clicks per
user by timestamp, ties by file order (as `split_last_click` with `valid: true`), the
last click test, the one before it validation, the rest training."""

import numpy as np
import pandas as pd


def clicks_in_order(data):
    """The clicks (user, item, rating, time), sorted per user in click order, items coded
    1.. (0 left for padding); and the number of item codes, the padding one included."""
    clicks = pd.read_csv(f"{data}/ml-100k.inter", sep="\t")
    clicks.columns = ["user", "item", "rating", "time"]
    clicks["seq"] = np.arange(len(clicks))
    clicks = clicks.sort_values(["user", "time", "seq"])
    code = {v: k + 1 for k, v in enumerate(sorted(clicks.item.unique()))}
    clicks["item"] = clicks.item.map(code)
    return clicks, len(code) + 1


def user_sequences(clicks):
    """Each user's item codes in click order, from `clicks_in_order`'s clicks."""
    return [g.item.tolist() for _, g in clicks.groupby("user")]
