"""Seed-to-seed spread of the audit's median top FIM eigenvalue (RG chain: singles, pairs:64).

The default audit's 20 inputs (test indices 0..19 of the default model's split), the audit's
generator order (singles, then ``pairs:64``, from one generator), 16 000 chains per input. One
row per generator: the stream before named seed streams (``torch.Generator().manual_seed(0)``)
and stream ``"fim"`` of seeds 0..3. Prints the lower median over the inputs of each input's top
eigenvalue. Used in docs/fisher.md to judge whether a moved median is within its seed noise.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/seed_spread_fim.py [OUT.json]
"""

from __future__ import annotations

import json
import sys

import torch

from rgaudit.commands.audit import dataset_for_model
from rgaudit.experiments.audit import AuditConfig
from rgaudit.experiments.train_default import ensure_default_model
from rgaudit.fisher.chain import fim_from_mcrg
from rgaudit.random import torch_generator
from rgaudit.rg.mcrg import mcrg_network


def main(out: str | None = None) -> dict[str, dict[str, float]]:
    net, cfg_m = ensure_default_model()
    ds, *_ = dataset_for_model(net, cfg_m, None)
    x = ds.X_test[:20].to(net.dtype)
    cfg = AuditConfig()
    W1 = net.layer(1).W.detach()
    gens = {"before: manual_seed(0)": lambda: torch.Generator().manual_seed(0)}
    for s in range(4):
        gens[f"stream fim, seed {s}"] = lambda s=s: torch_generator(s, "fim")
    rows: dict[str, dict[str, float]] = {}
    for name, make in gens.items():
        g = make()
        rows[name] = {}
        for label, basis in (("rg-singles", "singles"), ("rg-large", cfg.large_basis)):
            res = mcrg_network(net, x, basis, cfg.mcrg_samples, generator=g)
            top = torch.linalg.eigvalsh(fim_from_mcrg(res, W1).fim)[:, -1]
            rows[name][label] = float(top.median())
        print(name, {k: round(v, 3) for k, v in rows[name].items()}, flush=True)
    if out:
        with open(out, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
