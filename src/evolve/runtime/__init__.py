"""Running an experience: the scheduler, node kinds, policies, and the run's state."""
