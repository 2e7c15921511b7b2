"""The review dimensions: each one becomes one review pass over the diff.

Add a dimension here to review along it in every later run.
"""

DIMENSIONS = [
    {"name": "bugs", "focus": "logic errors, wrong status codes, unhandled None"},
    {"name": "perf", "focus": "queries in loops, unbounded caches, repeated work"},
    {"name": "tests", "focus": "changed behaviour without tests, missing cases"},
]


def run(inputs):
    return {"state_delta": {"dimensions": DIMENSIONS}}
