"""conda environments: locking with conda-lock (locking), fetching the locked packages into an image (packages),
and the installer that runs inside the image's build stage (installer, stdlib + py-rattler only)."""
