"""Keep only findings that point at a file the diff touches; drop exact duplicates."""


def run(inputs):
    files = set(inputs["_state"]["files"])
    found = inputs["_state"]["findings"]
    seen, verified = set(), []
    for finding in found:
        key = (finding.get("file"), finding["title"].lower())
        if finding.get("file") in files and key not in seen:
            seen.add(key)
            verified.append(finding)
    return {
        "state_delta": {"verified": verified},
        "metrics": {"kept": len(verified), "dropped": len(found) - len(verified)},
    }
