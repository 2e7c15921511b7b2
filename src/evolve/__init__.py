"""evolve: run LLM agent workflows, record everything, propose reviewable improvements."""

__version__ = "0.1.0"
