"""Policy learning in imagination (VL-SAFE and the in-house baselines) and its evaluation.

`vlsafe train-policy WM_RUN --method vl-safe` / `vlsafe eval RUN ...`; in Python:
`fit(wm_run, out, resolve_config("vl-safe"))`, `load_policy(run)`, `evaluate_policies([run])`.
"""

from vlsafe.policy.actor_critic import METHODS, ImaginationLearner, PolicyConfig, method_config
from vlsafe.policy.train import Policy, TrainPolicyConfig, fit, load_policy, resolve_config

__all__ = ["METHODS", "ImaginationLearner", "PolicyConfig", "method_config", "Policy", "TrainPolicyConfig", "fit",
           "load_policy", "resolve_config"]
