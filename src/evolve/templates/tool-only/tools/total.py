"""Add the counts up."""


def run(inputs):
    return {"state_delta": {"total": sum(inputs["_state"]["counts"])}}
