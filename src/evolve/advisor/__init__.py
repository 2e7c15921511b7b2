"""The EvolutionAdvisor: evidence from runs, proposals made from it, diffs built and proven."""
