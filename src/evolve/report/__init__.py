"""Rendering experiences and runs for people: Mermaid graphs, trees, tables, HTML."""
