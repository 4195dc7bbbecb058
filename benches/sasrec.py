#!/usr/bin/env python3
"""A sequential reference on the example's split: SASRec (Kang & McAuley 2018), causal
self-attention over each user's last 200 training clicks, trained with a full softmax
at every position (as gSASRec and RecBole's CE loss do), no user features.

It answers whether an attention tower is the lever the issue 15 targets need: the
epoch is picked on validation HR@50 (every 10 epochs), and that epoch's test metrics
are printed, per seed and as a mean. Same leave-one-out split as `split_last_click`
with `valid: true` (per user by timestamp, ties by file order: the last click is
test, the one before it validation); test histories end with the validation click;
`_excl` removes every earlier click of the user.

Usage: pip install torch pandas; benches/sasrec.py [ml-100k dir] [--seeds 0 1 2]
"""

import argparse
import time

import numpy as np
import torch
from loo_split import clicks_in_order, user_sequences
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("data", nargs="?", default="../shared/data/ml-100k")
p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
p.add_argument("--dim", type=int, default=64)
p.add_argument("--max-len", type=int, default=200)
p.add_argument("--blocks", type=int, default=2)
p.add_argument("--dropout", type=float, default=0.2)
p.add_argument("--epochs", type=int, default=120)
a = p.parse_args()
torch.set_num_threads(2)

clicks, n_items = clicks_in_order(a.data)
seqs = user_sequences(clicks)
train = [s[:-2] for s in seqs]
valid = [s[-2] for s in seqs]
test = [s[-1] for s in seqs]
L, D = a.max_len, a.dim


def pad(s):
    s = s[-L:]
    return [0] * (L - len(s)) + s


# The same for every seed: inputs and next-click targets at every position, the
# validation and test inputs (the latter ending with the validation click).
x = torch.tensor([pad(s[:-1]) for s in train])
y = torch.tensor([pad(s[1:]) for s in train])
v_in = torch.tensor([pad(s) for s in train])
t_in = torch.tensor([pad(s + [v]) for s, v in zip(train, valid)])
t_seen = [s + [v] for s, v in zip(train, valid)]
causal = torch.triu(torch.ones(L, L, dtype=torch.bool), 1)


class SASRec(nn.Module):
    def __init__(self):
        super().__init__()
        self.items = nn.Embedding(n_items, D, padding_idx=0)
        self.pos = nn.Embedding(L, D)
        layer = lambda: nn.TransformerEncoderLayer(D, 1, D, a.dropout, batch_first=True, norm_first=True)
        self.blocks = nn.ModuleList([layer() for _ in range(a.blocks)])
        self.norm = nn.LayerNorm(D)
        self.drop = nn.Dropout(a.dropout)
        nn.init.normal_(self.items.weight, std=0.05)

    def forward(self, x):
        h = self.drop(self.items(x) * D**0.5 + self.pos.weight[None])
        for b in self.blocks:
            h = b(h, src_mask=causal)
        return self.norm(h)


def metrics(model, inputs, targets, seen):
    model.eval()
    with torch.no_grad():
        scores = model(inputs)[:, -1] @ model.items.weight.T
        scores[:, 0] = -1e9
        t = torch.tensor(targets)[:, None]
        rank = (scores > scores.gather(1, t)).sum(1).float()
        out = {
            "hr@10": (rank < 10).float().mean().item(),
            "hr@50": (rank < 50).float().mean().item(),
            "ndcg@50": ((rank < 50).float() / torch.log2(rank + 2)).mean().item(),
        }
        for u, s in enumerate(seen):
            scores[u, s] = -1e9
        rank = (scores > scores.gather(1, t)).sum(1)
        out["hr_excl@10"] = (rank < 10).float().mean().item()
    model.train()
    return out


def run(seed):
    torch.manual_seed(seed)
    model = SASRec()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    best, start = None, time.time()
    for epoch in range(1, a.epochs + 1):
        for b in torch.randperm(len(x)).split(64):
            h, target = model(x[b]), y[b]
            real = target > 0
            loss = nn.functional.cross_entropy(h[real] @ model.items.weight.T, target[real])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch % 10 == 0:
            v = metrics(model, v_in, valid, train)
            if best is None or v["hr@50"] > best[1]["hr@50"]:
                best = (epoch, v, metrics(model, t_in, test, t_seen))
    epoch, v, t = best
    fmt = lambda m: " ".join(f"{k}={x:.4f}" for k, x in m.items())
    print(f"seed {seed}: epoch {epoch} (picked on validation), {time.time() - start:.0f} s")
    print(f"  validation {fmt(v)}\n  test       {fmt(t)}", flush=True)
    return v, t


results = [run(s) for s in a.seeds]
for name, i in [("validation", 0), ("test", 1)]:
    mean = {k: np.mean([r[i][k] for r in results]) for k in results[0][i]}
    print(f"mean {name}: " + " ".join(f"{k}={x:.4f}" for k, x in mean.items()))
