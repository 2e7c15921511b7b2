"""Join each classification with its issue; collect the bugs and the critical issues.

`when` edges downstream read these lists: the bug summary runs when there is a bug, the on-call
page only when something is critical.
"""

PRIORITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def run(inputs):
    state = inputs["_state"]
    issues = {issue["number"]: issue for issue in state["issues"]}
    triaged = []
    for entry in state["triage"]:
        issue = issues.get(entry["number"], {})
        triaged.append({**entry, "title": issue.get("title", "(unknown issue)")})
    bugs = sorted(
        (t for t in triaged if t["label"] == "bug"),
        key=lambda t: (PRIORITY_ORDER[t["priority"]], t["number"]),
    )
    critical = [t for t in triaged if t["priority"] == "critical"]
    return {
        "state_delta": {"bugs": bugs, "critical": critical},
        "metrics": {"issues": len(triaged), "bugs": len(bugs), "critical": len(critical)},
    }
