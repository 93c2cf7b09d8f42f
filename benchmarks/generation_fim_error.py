"""Generation-FIM estimators against exact enumeration on four small nets (issue 14, item 2).

Prints, per net, the median (max) relative error of the top eigenvalue of ``P F̃ P`` (sum-zero
plane) and the smallest |cos| between top eigenvectors, for the mean-field estimator and the MCRG
singles/pairs chains (2e4 chains, seed 1). Run::

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/generation_fim_error.py
"""

import torch

from rgaudit.defence.generation_fim import (
    exact_generation_fim,
    mcrg_generation_fim,
    meanfield_generation_fim,
    top_directions,
)
from rgaudit.nets.deep_rbm import DeepRBM

F64 = torch.float64
CASES = [([6, 4, 4, 3], 1.0, 0), ([6, 4, 4, 3], 2.5, 1), ([8, 6, 5, 4], 2.5, 2),
         ([7, 5, 5, 5, 4], 2.0, 3)]


def main() -> None:
    for widths, scale, seed in CASES:
        g = torch.Generator().manual_seed(seed)
        net = DeepRBM.random(widths, generator=g, scale=scale, dtype=F64)
        y = torch.softmax(2 * torch.randn(8, widths[-1], generator=g, dtype=F64), -1)
        ve, Ve = top_directions(exact_generation_fim(net, y), "simplex", 1)
        row = [f"{widths} scale={scale}: exact top eig median {float(ve[:, 0].median()):.2g}"]
        for name, F in [
            ("mean-field", meanfield_generation_fim(net, y)),
            ("chain singles 2e4", mcrg_generation_fim(net, y, "singles", 20000,
                                                      torch.Generator().manual_seed(1)).fim),
            ("chain pairs 2e4", mcrg_generation_fim(net, y, "pairs", 20000,
                                                    torch.Generator().manual_seed(1)).fim),
        ]:
            v, V = top_directions(F, "simplex", 1)
            rel = (v[:, 0] - ve[:, 0]).abs() / ve[:, 0]
            cos = (V[..., 0] * Ve[..., 0]).sum(-1).abs().min()
            row.append(f"{name}: rel err {float(rel.median()):.2f} ({float(rel.max()):.2f}), "
                       f"min|cos| {float(cos):.3f}")
        print(" | ".join(row), flush=True)


if __name__ == "__main__":
    main()
