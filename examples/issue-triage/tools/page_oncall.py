"""Prepare the page for the on-call engineer (critical issues only).

This example never sends anything: it writes the page it would send into state, so the run
shows exactly what would have gone out.
"""


def run(inputs):
    critical = inputs["_state"]["critical"]
    numbers = ", ".join(f"#{c['number']}" for c in critical)
    return {
        "state_delta": {
            "page": {
                "severity": "critical",
                "summary": f"{len(critical)} critical issue(s) need a look: {numbers}",
                "issues": [c["number"] for c in critical],
            }
        }
    }
