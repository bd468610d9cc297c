"""`r2env serve`: a build-and-launch daemon with an HTTP API and a web page (BinderHub for one machine)."""
