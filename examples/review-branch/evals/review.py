"""Evals of a review: did it find what was planted in the case's diff?"""


def recall(state, case, run):
    """The share of the case's expected findings that a verified finding names: same file, and
    the keyword in its title or explanation. Not scored in a plain run (no case)."""
    if case is None:
        return None  # a plain run has no expectations: not scored
    expected = case["expect"]["findings"]
    if not expected:
        return {"score": 1.0, "reason": "nothing was planted"}
    said = [
        (f["file"], f"{f['title']} {f.get('explanation', '')}".lower()) for f in state["verified"]
    ]
    found = [e for e in expected if any(e["file"] == f and e["keyword"] in t for f, t in said)]
    missed = [e["keyword"] for e in expected if e not in found]
    reason = f"{len(found)}/{len(expected)} expected findings"
    return {
        "score": len(found) / len(expected),
        "reason": reason + (f"; missed: {', '.join(missed)}" if missed else ""),
    }
