"""Count the words of all summaries (a stand-in for whatever your workflow does next)."""


def run(inputs):
    summaries = inputs["_state"]["summaries"]
    return {"state_delta": {"words": sum(len(s.split()) for s in summaries)}}
