"""The workspace: run ids, the JSONL event log of each run, and the SQLite state store."""
