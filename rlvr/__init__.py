"""rlvr: a Gymnasium-style environment and algorithm zoo for reinforcement learning from verifiable rewards.

    import rlvr
    env = rlvr.make("rlvr/Arithmetic-v0")                     # one prompt, one completion, one reward
    venv = rlvr.make_vec("rlvr/Arithmetic-v0", num_prompts=8, group_size=4)   # B*G slots, groups of G
"""

from rlvr.envs import make, make_vec, register, to_groups
from rlvr.envs.prompt_env import PromptEnv
from rlvr.envs.vector import GroupVectorEnv
from rlvr.types import Completion, Group, Problem, Verdict

__version__ = "0.1.0"

__all__ = ["Completion", "Group", "GroupVectorEnv", "Problem", "PromptEnv", "Verdict", "make", "make_vec",
           "register", "to_groups"]
