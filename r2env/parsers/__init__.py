"""Pure parsers for the files repositories declare their environments with: parse_*(text, path)."""
