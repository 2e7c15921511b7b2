"""Count the tickets triaged as high urgency."""


def run(inputs):
    verdicts = inputs["_state"]["triage"]
    return {"state_delta": {"urgent": sum(1 for v in verdicts if v["urgency"] == "high")}}
