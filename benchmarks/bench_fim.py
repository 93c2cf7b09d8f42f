"""Time the top-5 input-FIM eigenpairs by the matrix-free path (Lanczos on jvp/vjp) against the
dense FIM where it fits.

Models (random weights, softmax outputs):

- d = 784: an MLP 784 → 256 → 10 (MNIST-sized);
- d = 150528: a small conv net on 3×224×224 (conv 3→16 k8 s4, ReLU, conv 16→32 k4 s4, ReLU,
  global average pool, linear 32 → 1000) — the dense FIM would need 150528² × 4 B ≈ 91 GB.

Run: ``.venv/bin/python benchmarks/bench_fim.py [--device cpu]``; writes
``benchmarks/results/fim.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from rgaudit.fisher.autograd import dense_fim, fim_operator, top_fim_eigs
from rgaudit.fisher.eig import abs_cosine, top_eigenpairs


def mlp(d: int, gen: torch.Generator) -> torch.nn.Module:
    m = torch.nn.Sequential(torch.nn.Linear(d, 256), torch.nn.Tanh(), torch.nn.Linear(256, 10))
    _init(m, gen)
    return m


def convnet(gen: torch.Generator) -> torch.nn.Module:
    m = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 8, stride=4), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 4, stride=4), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 1000))
    _init(m, gen)
    return m


def _init(m: torch.nn.Module, gen: torch.Generator) -> None:
    """Gaussian weights from an explicit generator (fan-in scaling), zero biases."""
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=gen) * 2.0 / p[0].numel() ** 0.5)
            else:
                p.zero_()


def _time(fn, repeats: int) -> tuple[float, object]:
    out = fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/fim.json")
    args = ap.parse_args()
    dev = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    cases = []

    m = mlp(784, gen).to(dev).eval()
    x = torch.rand(784, generator=gen).to(dev)
    t_mf, mf = _time(lambda: top_fim_eigs(m, x, 5, "softmax"), args.repeats)
    t_dense, dn = _time(lambda: top_eigenpairs(dense_fim(m, x.unsqueeze(0), "softmax")[0], 5),
                        args.repeats)
    cases.append({"d": 784, "model": "mlp 784-256-10", "matrix_free_s": t_mf,
                  "dense_s": t_dense, "top5_matrix_free": mf.values.tolist(),
                  "top5_dense": dn.values[0].tolist() if dn.values.dim() > 1
                  else dn.values.tolist(),
                  "min_abs_cos_vs_dense": float(abs_cosine(mf.vectors.T.float(),
                                                           dn.vectors.reshape(784, 5).T.float()
                                                           ).min())})

    c = convnet(gen).to(dev).eval()
    xi = torch.rand(3, 224, 224, generator=gen).to(dev)
    mv = fim_operator(c, xi, "softmax")
    v = torch.randn(xi.numel(), generator=gen).to(dev)
    t_mv, _ = _time(lambda: mv(v), args.repeats)
    t_big, big = _time(lambda: top_fim_eigs(c, xi, 5, "softmax", tol=1e-6), 1)
    cases.append({"d": int(xi.numel()), "model": "conv 3x224x224 -> 1000", "matrix_free_s": t_big,
                  "one_matvec_s": t_mv, "dense_s": None,
                  "dense_note": "dense FIM needs d² = 2.3e10 entries (91 GB float32): not run",
                  "top5_matrix_free": big.values.tolist()})

    doc = {"benchmark": "fim_top5", "device": str(dev), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "machine": platform.machine(),
           "python": platform.python_version(), "cases": cases}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
