"""Format the final draft as a status-page post (Markdown), with the score it reached."""

TITLE = "Resolved: checkout unavailable for 47 minutes on 14 March"


def run(inputs):
    state = inputs["_state"]
    body = state["draft"].strip()
    post = f"# {TITLE}\n\n{body}\n\n<!-- editor score: {state['quality']:g}/10 -->\n"
    return {
        "state_delta": {"post": post},
        "metrics": {"words": len(body.split()), "quality": state["quality"]},
    }
