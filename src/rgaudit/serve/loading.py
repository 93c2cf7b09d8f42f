"""Load a model and its defence for serving (the options of ``rgaudit serve``)."""

from __future__ import annotations

from pathlib import Path

from rgaudit.serve.defended import DefendedModel, build_poisoner, poisoner_from_config


def load_defended(model: str, *, defence: str | None = None, eps: float | None = None,
                  norm: str | None = None, config: Path | str | None = None,
                  seed: int = 0, estimator: str | None = None) -> DefendedModel:
    """The model at ``model`` (``default``: the default digits model) behind a defence given
    either by name/budget/norm or by a ``rgaudit protect`` config (not both).

    ``estimator`` is the generation-FIM estimator of the rg defence (default: the library's
    ``defence.generation_fim.DEFAULT_ESTIMATOR``).

    Raises
    ------
    ValueError
        Conflicting or invalid options; the rg defence on a model that is not RBM-family.
    rgaudit.errors.ModelFileError
        ``model`` is not a model rgaudit can load.
    """
    from rgaudit.models import load_classifier
    from rgaudit.report.io import read_result

    path: str | Path = model
    if model == "default":
        from rgaudit.experiments.train_default import DEFAULT_PATH, ensure_default_model

        ensure_default_model()                          # trained and saved if absent
        path = DEFAULT_PATH
    clf, cfg = load_classifier(path)
    if config is not None:
        given = [o for o, v in (("--defence", defence), ("--eps", eps), ("--norm", norm),
                                ("--estimator", estimator)) if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} cannot be combined with --config (the "
                             "config fixes the defence and its budget)")
        doc = read_result(config, "poisoning-config")
        poisoner = poisoner_from_config(clf, doc, cfg, config)
        source = {"model": str(model), "config": str(config)}
    else:
        if estimator is not None and defence != "rg":
            raise ValueError("--estimator applies only to --defence rg")
        poisoner = build_poisoner(clf, defence or "none",
                                  eps=0.2 if eps is None else float(eps), norm=norm or "l1",
                                  extra=None if estimator is None else {"estimator": estimator})
        source = {"model": str(model)}
    return DefendedModel(clf, poisoner, source, seed=seed)
