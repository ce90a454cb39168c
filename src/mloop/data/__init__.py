"""Data versioning with DVC: the project's DVC repository and remote (``repo``), the version of a file a
run read and the history of a tracked path (``versions``), and production snapshots (``snapshot``).

DVC is driven through its Python API (``dvc.repo.Repo``): opening a repository in-process costs a
fraction of starting the ``dvc`` command. The pipeline engine never imports DVC; this package does, in
its functions only, so ``import mloop`` stays light.
"""
