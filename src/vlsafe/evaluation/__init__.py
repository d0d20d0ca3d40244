"""Episode metrics (the paper's Table I) and evaluation runners."""
