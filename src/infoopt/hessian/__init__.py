"""Hessian metrics of a checkpoint (PAPER.md §2): per-block sub-Hessian spectra and entropy
gaps, Hutchinson traces and the top eigenvalue, from exact Hessian-vector products.

Import from the modules (this package imports nothing, so the CLI stays fast):

- :mod:`~infoopt.hessian.options`: :class:`HessianOptions`, every [choice] of PAPER.md §2;
- :mod:`~infoopt.hessian.space`: the flat parameter space (``ParameterSpace``);
- :mod:`~infoopt.hessian.hvp`: batched, micro-batched products (``HessianOperator``);
- :mod:`~infoopt.hessian.gauss_newton`: the blocks whose Hessian is their Gauss-Newton block,
  and their sub-Hessians from first-order passes;
- :mod:`~infoopt.hessian.blocks`: seeded coordinates and principal sub-Hessians;
- :mod:`~infoopt.hessian.trace`: Hutchinson block and total traces;
- :mod:`~infoopt.hessian.spectrum`: the top eigenvalue by Lanczos;
- :mod:`~infoopt.hessian.aggregate`: the summaries of Tables 2–5;
- :mod:`~infoopt.hessian.metrics`: the table's parts, block rows and global estimates, and a
  checkpoint's whole table (``checkpoint_hessian_table``);
- :mod:`~infoopt.hessian.table`: the table's columns, assembled from its parts (pandas only);
- :mod:`~infoopt.hessian.shares`: the workflow's plan of parallel shares of the parts;
- :mod:`~infoopt.hessian.job`: one job's parts, from the store or computed.
"""
