"""Keep only the issues named in `only` (all of them when it is empty).

`evolve eval` sets `only` per case, so each labelled issue is classified on its own.
"""


def run(inputs):
    state = inputs["_state"]
    only = set(state["only"])
    issues = [issue for issue in state["issues"] if not only or issue["number"] in only]
    return {"state_delta": {"issues": issues}, "metrics": {"kept": len(issues)}}
