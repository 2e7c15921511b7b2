"""Draft the bug summary a maintainer posts in the weekly triage thread."""


def run(inputs):
    bugs = inputs["_state"]["bugs"]
    lines = [f"## Bug triage: {len(bugs)} new bug{'s' * (len(bugs) != 1)}", ""]
    for bug in bugs:
        lines.append(f"- **#{bug['number']}** [{bug['priority']}] {bug['title']}")
        if bug.get("summary"):
            lines.append(f"  {bug['summary']}")
    return {"state_delta": {"bug_report": "\n".join(lines) + "\n"}}
