"""Add up the per-paragraph counts."""


def run(inputs):
    return {"state_delta": {"total": sum(c["words"] for c in inputs["_state"]["counts"])}}
