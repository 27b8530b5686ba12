"""lstmlab's Optuna sweeper for Hydra (``hydra/sweeper=lstmlab_optuna``).

Hydra imports every public module of this package while it looks for plugins, on every start: ``config`` and
``sweeper`` import only Hydra and OmegaConf. Optuna, SQLAlchemy and the sweep logic live in the private
modules (``_impl``, ``_space``, ``_study``), which Hydra's scanner skips and the sweeper imports when it runs.
The contract with a trial's job (pruner factory, user attribute names, the job's ``optuna:`` block) is in
``lstmlab.optuna_trial``, which the job reads too.
"""
