"""The lock stage: r2env.lock's data and YAML (lockfile), resolvers behind injected runners (resolve), making and
checking a lock (locking), and what changed between two (diff)."""
