"""Small helper module used by analysis.ipynb and by ./verify."""

import pyparsing as pp


def parse_sum(text: str) -> int:
    """Parse an expression like "1 + 2 + 3" and return its sum."""
    integer = pp.Word(pp.nums).set_parse_action(lambda t: int(t[0]))
    expr = pp.DelimitedList(integer, delim="+")
    return sum(expr.parse_string(text, parse_all=True))
