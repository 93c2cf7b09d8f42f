"""Random ReLU networks: one-step adversarial examples, near-linearity, depth (``docs/relu.md``).

One module per sub-study, all driven by one :class:`~.config.ReluStudyConfig`:
:mod:`.scaling`, :mod:`.near_linearity`, :mod:`.depth`, :mod:`.trained`; :mod:`.run` runs them
all. The primitives live below: the attacks in :mod:`rgaudit.attacks.one_step`, the networks in
:mod:`rgaudit.nets.relu`, the statistics in :mod:`rgaudit.stats`. Nothing here touches the file
system; :mod:`rgaudit.report.relu_plots` renders the result.
"""
