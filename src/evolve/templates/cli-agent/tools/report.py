"""Measure the agent's summary (a stand-in for checks on what it changed)."""


def run(inputs):
    return {"state_delta": {"words": len(inputs["_state"]["summary"].split())}}
