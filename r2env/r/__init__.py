"""R environments: which R and from where (versions.py), which CRAN snapshot (snapshot.py), the scripts the
image runs to install R packages (scripts.py), and locking what they installed (locking.py)."""
