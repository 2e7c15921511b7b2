"""Turn verified findings into a risk score from 0 (harmless) to 10 (do not merge)."""

WEIGHTS = {"low": 0.5, "medium": 1.5, "high": 3.0, "critical": 5.0}


def run(inputs):
    findings = inputs["_state"]["verified"]
    score = min(10.0, sum(WEIGHTS[f["severity"]] for f in findings))
    return {"state_delta": {"risk_score": round(score, 1)}}
