"""The launch stage: what a container is asked to be (container), `--gpus` as data (gpus), starting a server or a
command in an image and waiting for it (launcher), and the `launch`, `ps` and `stop` commands (commands)."""
