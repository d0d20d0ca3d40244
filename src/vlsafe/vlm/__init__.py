"""Safety labels from a vision-language model: prompt sets, scorers (clip, drive-clip), labelling, quality.

    from vlsafe.vlm import load_scorer, score_frames
    scorer = load_scorer("drive-clip", "models/drive-clip")
    scores = score_frames(scorer, frames, "paper-v1")  # scores.p_safe (N,), scores.sims (N, 2)
"""

from vlsafe.vlm.prompts import DEFAULT_PROMPTS, PROMPT_SETS, PromptSet, get_prompt_set
from vlsafe.vlm.scorer import BACKENDS, ProbConfig, Scores, load_scorer, score_frames, similarities_to_p_safe

__all__ = ["PromptSet", "PROMPT_SETS", "DEFAULT_PROMPTS", "get_prompt_set", "BACKENDS", "ProbConfig", "Scores",
           "load_scorer", "score_frames", "similarities_to_p_safe", "load_labels"]


def load_labels(store, key=None):
    """{episode seed: p_safe (T+1,)} of a labelled dataset (see vlsafe.vlm.label.load_labels)."""
    from vlsafe.vlm.label import load_labels as _load

    return _load(store, key)
