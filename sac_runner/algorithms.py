"""The algorithms a run may name (algorithm.name), by family: a family is one agent class and one schema."""
FAMILIES = {
    "sac": "sac",  # learned temperature
    "sac_fixed_alpha": "sac",
    "td3": "td3",
    "ddpg": "td3",  # TD3's agent with one critic, no target smoothing, no delay
}
NAMES = tuple(FAMILIES)
