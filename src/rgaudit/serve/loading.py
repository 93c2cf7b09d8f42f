"""Load a model and its defence for serving (the options of ``rgaudit serve``)."""

from __future__ import annotations

from pathlib import Path

from rgaudit.serve.defended import DefendedModel, build_poisoner, poisoner_from_config


def load_defended(model: str, *, defence: str | None = None, eps: float | None = None,
                  norm: str | None = None, config: Path | str | None = None,
                  seed: int = 0) -> DefendedModel:
    """The model at ``model`` (``default``: the default digits model) behind a defence given
    either by name/budget/norm or by a ``rgaudit protect`` config (not both).

    Raises
    ------
    ValueError
        Conflicting or invalid options; the rg defence on a model that is not RBM-family.
    rgaudit.errors.ModelFileError
        ``model`` is not a model rgaudit can load.
    """
    from rgaudit.models import load_classifier
    from rgaudit.models.base import RBMClassifier
    from rgaudit.report.io import read_result

    if model == "default":
        from rgaudit.experiments.train_default import ensure_default_model

        net, cfg = ensure_default_model()
        side = int(round(net.widths[0] ** 0.5))
        shape = (side, side) if side * side == net.widths[0] else (net.widths[0],)
        clf = RBMClassifier(net, shape, meta=cfg)
    else:
        clf, cfg = load_classifier(model)
    if config is not None:
        given = [o for o, v in (("--defence", defence), ("--eps", eps), ("--norm", norm))
                 if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} cannot be combined with --config (the "
                             "config fixes the defence and its budget)")
        doc = read_result(config, "poisoning-config")
        poisoner = poisoner_from_config(clf, doc, cfg, config)
        source = {"model": str(model), "config": str(config)}
    else:
        poisoner = build_poisoner(clf, defence or "none",
                                  eps=0.2 if eps is None else float(eps), norm=norm or "l1")
        source = {"model": str(model)}
    return DefendedModel(clf, poisoner, source, seed=seed)
