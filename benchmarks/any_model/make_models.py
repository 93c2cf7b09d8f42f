"""Train and save the two example models of docs/any-model.md on rgaudit's digits split.

    python benchmarks/any_model/make_models.py OUT_FOLDER

writes ``OUT_FOLDER/sklearn-rbm.skops`` (scikit-learn's RBM digits example pipeline:
BernoulliRBM(n_components=100, learning_rate=0.06, n_iter=10) + LogisticRegression(C=6000),
trained on rgaudit's digits training split without the example's one-pixel "nudging"
augmentation) and ``OUT_FOLDER/cnn.pt2`` (a small CNN, exported with torch.export), and prints
their test accuracies.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import skops.io as sio
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import BernoulliRBM
from sklearn.pipeline import Pipeline

from rgaudit.data import load_dataset


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset("digits", seed=0)
    Xtr, ytr = ds.X_train.numpy().astype(np.float64), ds.y_train.numpy()
    Xte, yte = ds.X_test.numpy().astype(np.float64), ds.y_test.numpy()
    rbm = BernoulliRBM(n_components=100, learning_rate=0.06, n_iter=10, random_state=0)
    pipe = Pipeline([("rbm", rbm), ("logistic", LogisticRegression(C=6000, max_iter=1000))])
    pipe.fit(Xtr, ytr)
    sio.dump(pipe, out / "sklearn-rbm.skops")
    print(f"sklearn RBM pipeline test accuracy {pipe.score(Xte, yte):.3f}")

    gen = torch.Generator().manual_seed(0)
    cnn = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(16 * 4 * 4, 10))
    with torch.no_grad():
        for p in cnn.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen) / max(1, p[0].numel()) ** 0.5)
    x = ds.X_train.reshape(-1, 1, 8, 8)
    opt = torch.optim.Adam(cnn.parameters(), 3e-3)
    for _epoch in range(30):
        perm = torch.randperm(x.shape[0], generator=gen)
        for i in range(0, x.shape[0], 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(cnn(x[idx]), ds.y_train[idx]).backward()
            opt.step()
    cnn.eval()
    acc = (cnn(ds.X_test.reshape(-1, 1, 8, 8)).argmax(-1) == ds.y_test).double().mean()
    print(f"CNN test accuracy {float(acc):.3f}")
    ep = torch.export.export(cnn, (x[:2],),
                             dynamic_shapes={"input": {0: torch.export.Dim("batch")}})
    torch.export.save(ep, str(out / "cnn.pt2"))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
