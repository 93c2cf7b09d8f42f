"""Input FIM of differentiable classifiers by autograd, dense or matrix-free.

With logits ``z(x)`` and Jacobian ``J = ∂z/∂x`` (shape (n_out, d)):

- softmax classifier (one categorical output): ``F = Jᵀ (diag p − p pᵀ) J``, ``p = softmax(z)``;
- independent Bernoulli outputs (the DeepRBM's sigmoid output units): ``F = Jᵀ diag(p(1−p)) J``,
  ``p = σ(z)``.

The audit uses the **Bernoulli** form for the DeepRBM's mean-field surrogate, because the
network's output is the binary vector ``y`` with independent units given ``h_{N-1}`` — the same
output space as the exact, direct and RG-chain FIMs of ``q_N(y|x)``. The softmax form is for
ordinary classifiers (e.g. the benchmark's image model).

The dense path builds ``J`` (fine for small ``d``). The matrix-free path never forms ``F``:
``F v = Jᵀ M (J v)`` costs one Jacobian-vector product (``torch.func.jvp``) and one
vector-Jacobian product (``torch.func.vjp``), and the top eigenpairs come from Lanczos
(``scipy.sparse.linalg.eigsh``) or LOBPCG on that operator, so inputs of 10^5+ dimensions work.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh, lobpcg

from rgaudit.fisher.eig import EigenPairs, _fix_sign
from rgaudit.nets.deep_rbm import DeepRBM

Tensor = torch.Tensor
Model = Callable[[Tensor], Tensor]
OutputKind = Literal["softmax", "bernoulli"]


def _output_metric(z: Tensor, kind: OutputKind) -> Tensor:
    """``M`` of shape (*batch, n_out, n_out) for logits ``z`` (*batch, n_out)."""
    if kind == "softmax":
        p = torch.softmax(z, -1)
        return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)
    if kind == "bernoulli":
        p = torch.sigmoid(z)
        return torch.diag_embed(p * (1 - p))
    raise ValueError(f"kind must be 'softmax' or 'bernoulli', got {kind!r}")


def _check_kind(kind: str) -> None:
    if kind not in ("softmax", "bernoulli"):
        raise ValueError(f"kind must be 'softmax' or 'bernoulli', got {kind!r}")


def dense_fim(model: Model, x: Tensor, kind: OutputKind = "softmax") -> Tensor:
    """Dense input FIM ``Jᵀ M J`` for each input.

    Parameters
    ----------
    model : callable
        Maps a batch (n, *shape) to logits (n, n_out).
    x : Tensor of shape (n, *shape)
    kind : {"softmax", "bernoulli"}

    Returns
    -------
    Tensor of shape (n, d, d), d = prod(shape), in the model's dtype.
    """
    _check_kind(kind)
    shape = x.shape[1:]
    flat = x.reshape(x.shape[0], -1).detach()

    def f(v: Tensor) -> Tensor:
        return model(v.reshape(1, *shape))[0]

    J = torch.func.vmap(torch.func.jacrev(f))(flat)            # (n, n_out, d)
    with torch.no_grad():
        M = _output_metric(model(x.detach()), kind)             # (n, n_out, n_out)
    F = J.transpose(-1, -2) @ M @ J
    return (0.5 * (F + F.transpose(-1, -2))).detach()


def mean_field_fim(net: DeepRBM | torch.nn.Module, x: Tensor) -> Tensor:
    """Dense Bernoulli FIM of a DeepRBM's mean-field surrogate; x (n, d) → (n, d, d), float64.

    Computed on a float64 copy of the network (a float32 model is not changed): the FIM's
    small eigenvalues and its top eigenvector would otherwise carry float32 roundoff.
    """
    mf = net.mean_field() if isinstance(net, DeepRBM) else net
    if next(mf.parameters()).dtype != torch.float64:
        mf = copy.deepcopy(mf).to(torch.float64)
    return dense_fim(mf, x.detach().to(torch.float64), "bernoulli")


def fim_operator(model: Model, x: Tensor, kind: OutputKind = "softmax"
                 ) -> Callable[[Tensor], Tensor]:
    """Matrix-free ``v ↦ F(x) v`` for one input.

    Parameters
    ----------
    model : callable
        Batch (1, *shape) → logits (1, n_out).
    x : Tensor of shape (*shape)
        One input.

    Returns
    -------
    callable
        Maps a flat vector (d,) to ``F v`` of shape (d,). One jvp and one vjp per call.
    """
    _check_kind(kind)
    shape = x.shape
    x0 = x.detach()

    def f(v: Tensor) -> Tensor:
        return model(v.unsqueeze(0))[0]

    z, vjp_fn = torch.func.vjp(f, x0)[:2]   # (out, vjp_fn); a third entry only with has_aux
    M = _output_metric(z.detach(), kind)

    def matvec(v: Tensor) -> Tensor:
        jv = torch.func.jvp(f, (x0,), (v.reshape(shape).to(x0.dtype),))[1]
        (out,) = vjp_fn(M @ jv.detach())
        return out.reshape(-1)

    return matvec


def top_fim_eigs(
    model: Model,
    x: Tensor,
    k: int = 5,
    kind: OutputKind = "softmax",
    *,
    method: Literal["lanczos", "lobpcg"] = "lanczos",
    tol: float = 1e-8,
    seed: int = 0,
    maxiter: int | None = None,
) -> EigenPairs:
    """Top-``k`` eigenpairs of ``F(x)`` without forming ``F``.

    Parameters
    ----------
    model : callable
        Batch (1, *shape) → logits (1, n_out).
    x : Tensor of shape (*shape)
        One input, any shape (e.g. (3, 224, 224)); ``d = x.numel()``.
    k : int
        Number of eigenpairs (``k < d``).
    kind : {"softmax", "bernoulli"}
    method : {"lanczos", "lobpcg"}
        ``scipy.sparse.linalg.eigsh`` (implicitly restarted Lanczos) or ``lobpcg``.
    tol : float
        Convergence tolerance.
    seed : int
        Seed of the starting vector(s) (NumPy ``default_rng``).

    Returns
    -------
    EigenPairs
        ``values`` (k,), ``vectors`` (d, k) as float64 tensors on ``x.device``.
    """
    mv = fim_operator(model, x, kind)
    d = x.numel()
    if not 1 <= k < d:
        raise ValueError(f"need 1 ≤ k < d = {d}, got k = {k}")
    dev, dt = x.device, x.dtype

    def np_mv(v: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(v.reshape(-1))).to(device=dev, dtype=dt)
        return mv(t).detach().to("cpu", torch.float64).numpy()

    def np_mm(V: np.ndarray) -> np.ndarray:
        return np.stack([np_mv(V[:, j]) for j in range(V.shape[1])], axis=1)

    op = LinearOperator((d, d), matvec=np_mv, matmat=np_mm, dtype=np.float64)
    rng = np.random.default_rng(seed)
    if method == "lanczos":
        w, V = eigsh(op, k=k, which="LA", tol=tol, v0=rng.standard_normal(d), maxiter=maxiter)
    elif method == "lobpcg":
        X0 = rng.standard_normal((d, k))
        w, V = lobpcg(op, X0, largest=True, tol=tol, maxiter=maxiter or 200)
    else:
        raise ValueError(f"method must be 'lanczos' or 'lobpcg', got {method!r}")
    order = np.argsort(w)[::-1]
    vals = torch.from_numpy(w[order].copy()).to(dev)
    vecs = torch.from_numpy(V[:, order].copy()).to(dev)
    return EigenPairs(vals, _fix_sign(vecs))
