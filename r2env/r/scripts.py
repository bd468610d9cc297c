"""The programs R images run at build time, written into the image by the R setup step (buildpacks/r.py) at
HELPERS_DIR. Kept here as text so the plan stays plain data and their content is part of the spec digest."""

from __future__ import annotations

import shlex

HELPERS_DIR = "/usr/local/lib/r2env"

# Runs install.R as repo2docker does (Rscript, as the notebook user), except that a package R could not install is
# an error rather than a warning that scrolls by; with R2ENV_R_LOCKED set, r2env.lock's packages are installed
# already (hash-checked) and install.packages() leaves them alone.
RUN_INSTALL_R = r'''# Written by r2env: runs install.R; a package that cannot be installed stops the build.
path <- commandArgs(trailingOnly = TRUE)[[1]]
fatal <- paste("is not available", "had non-zero exit status", "unable to access index", "download of package .* failed",
               "are not available", sep = "|")
locked <- nzchar(Sys.getenv("R2ENV_R_LOCKED"))
library <- Sys.getenv("R_LIBS_USER")
before <- rownames(utils::installed.packages(lib.loc = library))
if (locked) {
  install.packages <- function(pkgs, ...) {
    missing <- setdiff(pkgs, rownames(utils::installed.packages()))
    if (length(missing)) utils::install.packages(missing, ...)
    invisible(NULL)
  }
}
finished <- tryCatch(
  withCallingHandlers({ source(path, echo = FALSE); TRUE },
    warning = function(w) if (grepl(fatal, conditionMessage(w))) stop(conditionMessage(w), call. = FALSE)),
  error = function(e) { message("r2env: ", path, " failed: ", trimws(conditionMessage(e))); FALSE })
if (!isTRUE(finished)) quit(save = "no", status = 1)
added <- setdiff(rownames(utils::installed.packages(lib.loc = library)), before)
if (locked && length(added)) {
  message("r2env: ", path, " installed ", paste(added, collapse = ", "), ", which r2env.lock does not have: run r2env lock again")
  quit(save = "no", status = 1)
}
'''

# Installs the repository as an R package with what its DESCRIPTION needs, as repo2docker's
# devtools::install_local(getwd()), with base R only.
INSTALL_DESCRIPTION = r'''# Written by r2env: installs the repository as an R package, after what its DESCRIPTION needs.
fields <- read.dcf("DESCRIPTION", fields = c("Depends", "Imports", "LinkingTo"))
needs <- unlist(lapply(fields[1, ], function(value) if (is.na(value)) character() else trimws(sub("[(].*", "", strsplit(value, ",")[[1]]))))
needs <- setdiff(needs[nzchar(needs)], c("R", rownames(installed.packages(priority = "base"))))
missing <- setdiff(needs, rownames(installed.packages()))
if (length(missing)) {
  finished <- tryCatch(withCallingHandlers({ install.packages(missing); TRUE },
      warning = function(w) if (grepl("not available|non-zero exit status|unable to access index", conditionMessage(w))) stop(conditionMessage(w), call. = FALSE)),
    error = function(e) { message("r2env: DESCRIPTION: cannot install what it needs: ", trimws(conditionMessage(e))); FALSE })
  if (!isTRUE(finished)) quit(save = "no", status = 1)
}
'''

# Installs R packages at exactly the versions a lock names: each file downloaded and checked against its sha256,
# gathered into a CRAN-like repository of just these files, so that R installs them in dependency order and can
# take nothing else.
INSTALL_EXACT = r'''"""Written by r2env: downloads the R packages a lock names, checks each against its sha256, makes them a CRAN-like repository."""
import hashlib, os, shutil, sys, urllib.error, urllib.request
manifest, repository = sys.argv[1], sys.argv[2]
contrib = os.path.join(repository, "src", "contrib")
os.makedirs(contrib, exist_ok=True)
for line in open(manifest, encoding="utf-8"):
    name, version, sha256, *urls = line.split()
    target = os.path.join(contrib, name + "_" + version + ".tar.gz")
    problems = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=300) as response, open(target, "wb") as out:
                shutil.copyfileobj(response, out)
            break
        except (OSError, urllib.error.URLError) as error:
            problems.append(url + ": " + str(getattr(error, "reason", error)))
    else:
        sys.exit("r2env: cannot download the R package " + name + " " + version + ": " + "; ".join(problems))
    with open(target, "rb") as downloaded:
        digest = hashlib.sha256(downloaded.read()).hexdigest()
    if sha256 != "-" and digest != sha256:
        sys.exit("r2env: the R package " + name + " " + version + " from " + url + " has sha256 " + digest + ", not the locked "
                 + sha256 + ": the repository changed the file; check it, then run r2env lock again")
'''

INSTALL_REPOSITORY = r'''# Written by r2env: installs every package of a CRAN-like repository made by install-exact.py, then checks the versions.
args <- commandArgs(trailingOnly = TRUE)
repository <- args[[1]]
wanted <- read.table(args[[2]], colClasses = "character", fill = TRUE, col.names = c("name", "version", "sha256", paste0("url", 1:8)))
tools::write_PACKAGES(file.path(repository, "src", "contrib"), type = "source")
finished <- tryCatch(withCallingHandlers({ install.packages(wanted$name, repos = paste0("file://", repository), type = "source"); TRUE },
    warning = function(w) if (grepl("not available|non-zero exit status", conditionMessage(w))) stop(conditionMessage(w), call. = FALSE)),
  error = function(e) { message("r2env: cannot install the locked R packages: ", trimws(conditionMessage(e))); FALSE })
if (!isTRUE(finished)) quit(save = "no", status = 1)
got <- vapply(wanted$name, function(name) as.character(packageVersion(name)), "")
expected <- as.character(package_version(wanted$version))
wrong <- wanted$name[got != expected]
if (length(wrong)) { message("r2env: installed ", wrong[1], " ", got[wrong[1]], ", not the locked version"); quit(save = "no", status = 1) }
'''

# Lists what the user library holds, and where each package can be downloaded from the repositories R is set up
# with (its current file, else CRAN's Archive/ layout): what `r2env lock` records.
SNAPSHOT = r'''installed <- installed.packages(lib.loc = Sys.getenv("R_LIBS_USER"))
repos <- getOption("repos")
available <- available.packages(repos = repos, type = "source")
for (name in rownames(installed)) {
  version <- installed[name, "Version"]
  urls <- character()
  if (name %in% rownames(available) && available[name, "Version"] == version) urls <- paste0(available[name, "Repository"], "/", name, "_", version, ".tar.gz")
  urls <- c(urls, paste0(contrib.url(repos, type = "source"), "/Archive/", name, "/", name, "_", version, ".tar.gz"))
  cat("r2env-package", name, version, urls, "\n", sep = " ")
}
'''

HELPERS = {
    "run-install-r.R": RUN_INSTALL_R,
    "install-description.R": INSTALL_DESCRIPTION,
    "install-exact.py": INSTALL_EXACT,
    "install-repository.R": INSTALL_REPOSITORY,
}


def write_file(path: str, text: str) -> str:
    """Shell that writes `text` to `path`, one quoted line per Dockerfile line (readable, under BuildKit's line limit)."""
    lines = " \\\n    ".join(shlex.quote(line) for line in text.splitlines())
    return f"printf '%s\\n' \\\n    {lines} \\\n    > {shlex.quote(path)}"
