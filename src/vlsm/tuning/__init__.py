"""Hyperparameter search on an Optuna study (``vlsm tune``; the API is :func:`vlsm.api.tune`).

* :mod:`~vlsm.tuning.space`: the search space (``train.lr=log(1e-5,1e-3)``), checked against the schema;
* :mod:`~vlsm.tuning.study`: the study in its database (SQLite by default), heartbeats, retries of trials whose
  worker died, the trials handed out so that several workers run the requested number between them;
* :mod:`~vlsm.tuning.worker`: one worker's loop; each trial is an ordinary run folder trained by
  :func:`vlsm.training.run.train`;
* :mod:`~vlsm.tuning.pruning`: Optuna's pruner asked after each validation (a Lightning callback);
* :mod:`~vlsm.tuning.report`: best.yaml, the best trials' table, the optimisation history and the importances.

Optuna is the optional extra ``tune`` (``pip install "vlsm-ensemble[tune]"``); nothing here imports it at import
time.
"""
