"""The paper's library baselines through thin adapters: BC, CQL, IQL from d3rlpy (offline, on a
vlsafe dataset) and PPO, SAC, DQN from Stable-Baselines3 (online, in the simulator).

`vlsafe baseline train --algo cql --data DS --out RUN`; in Python `fit(BaselineConfig(...), RUN,
data=DS)`. Every run folder is a policy `vlsafe eval` drives (`evaluation.driver`).
"""

from vlsafe.baselines.config import ALGOS, OFFLINE, ONLINE, BaselineConfig

__all__ = ["ALGOS", "OFFLINE", "ONLINE", "BaselineConfig"]
