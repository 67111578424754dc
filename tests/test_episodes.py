"""Multi-turn rollouts with a real engine: each episode is one token sequence, the engine's sampled ids for the
model's turns and the chat template's rendering of the environment's messages between them, and the learner's
log-probs of the model's tokens over that whole sequence are the engine's."""

import pytest
import torch

import rlvr
from rlvr.batch import build_batch, token_logprobs
from rlvr.chat import ChatRenderer
from rlvr.models import char_tokenizer, tiny_model
from rlvr.rollout.episodes import run_episodes
from rlvr.rollout.hf import HFEngine
from rlvr.sampling import Sampling
from test_chat import CHATML

torch.set_num_threads(1)


def chat_policy():
    tokenizer = char_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHATML
    model = tiny_model(tokenizer, seed=5).eval()
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, end]  # a chat model's end of turn
    return model, tokenizer, end


def test_episodes_are_sampled_ids_plus_rendered_replies_and_the_learner_agrees():
    """A random policy plays GuessNumber (every turn gets a reply, so episodes run several turns)."""
    env_id, kwargs = "rlvr/GuessNumber-v0", {"high": 9, "max_turns": 3, "system_prompt": "Guess well."}
    model, tokenizer, end = chat_policy()
    engine = HFEngine(model, tokenizer, add_special_tokens=False)
    sampling = Sampling(10, temperature=1.0)
    problems = rlvr.make(env_id, **kwargs).unwrapped.task.source.distinct(2)
    envs = [rlvr.make(env_id, **kwargs).unwrapped for _ in range(2 * 3)]
    renderer = ChatRenderer(tokenizer, engine.stop_ids, tools=envs[0].tools)
    torch.manual_seed(0)
    groups, episodes = run_episodes(engine, renderer, envs, problems, 3, sampling, max_tokens=200)
    prompts = [e.prompt_ids for e in episodes]
    completions = [c for g in groups for c in g.completions]
    assert [len(g) for g in groups] == [3, 3]
    turns, checked = [], 0
    for env, c, prompt in zip(envs, completions, prompts):
        assert len(c.token_ids) == len(c.logprobs) == len(c.loss_mask)
        assert prompt == renderer.prompt(env.task.messages(env.problem))
        # the environment's segments hold its replies to every turn but the last (the episode ends there)
        played = env.conversation[len(env.task.messages(env.problem)):]
        last_turn = max(i for i, m in enumerate(played) if m["role"] == "assistant")
        env_text = tokenizer.decode([t for t, m in zip(c.token_ids, c.loss_mask) if not m])
        for reply in played[:last_turn]:
            assert reply["role"] == "assistant" or reply["content"] in env_text
        turns.append(env.turns)
        # id for id the template's rendering of the whole conversation (up to the end of the last model turn)
        # id for id the template's rendering of the whole conversation up to the end of the last model turn, where
        # the model's text re-renders as it was sampled (a random policy sometimes samples a special token, which
        # its text leaves out: the exact-token rule is why the trained sequence keeps it all the same)
        specials = set(tokenizer.all_special_ids) - {end}
        if not specials & {t for t, m in zip(c.token_ids, c.loss_mask) if m}:
            head = len(env.task.messages(env.problem)) + last_turn + 1  # the reply to the last turn is not kept
            rendered = renderer.ids(env.conversation[:head], generation_prompt=False)
            sequence = prompt + c.token_ids
            assert rendered[:len(sequence)] == sequence
            assert set(tokenizer.decode(rendered[len(sequence):])) <= set("<|im_end|>\n")
            checked += 1
    assert max(turns) > 1 and checked >= 3  # some episodes took several turns

    batch = build_batch(tokenizer, prompts, completions, add_special_tokens=False)
    assert all(batch.completion_mask[i, :len(c.loss_mask)].tolist() == c.loss_mask for i, c in enumerate(completions))
    with torch.no_grad():
        logp, _ = token_logprobs(model, batch, sampling=sampling)
    for i, c in enumerate(completions):
        model_positions = torch.tensor(c.loss_mask, dtype=torch.bool)
        torch.testing.assert_close(logp[i, :len(c.token_ids)][model_positions],
                                   torch.tensor(c.logprobs)[model_positions], atol=1e-5, rtol=0)
        assert float(logp[i, :len(c.token_ids)][~model_positions].abs().sum()) == 0.0


def test_an_episode_ends_at_its_token_budget_with_a_verdict_that_says_so():
    model, tokenizer, end = chat_policy()
    engine = HFEngine(model, tokenizer, add_special_tokens=False)
    env_id, kwargs = "rlvr/GuessNumber-v0", {"high": 9, "max_turns": 50}
    problems = rlvr.make(env_id, **kwargs).unwrapped.task.source.distinct(1)
    envs = [rlvr.make(env_id, **kwargs).unwrapped for _ in range(2)]
    renderer = ChatRenderer(tokenizer, engine.stop_ids)
    groups, _ = run_episodes(engine, renderer, envs, problems, 2, Sampling(8, temperature=1.0), max_tokens=60)
    for c, v in zip(groups[0].completions, groups[0].verdicts):
        if v.correct:  # guessed within the budget: the return is the win
            assert v.reward == 1.0
        else:
            assert (v.error, c.finish_reason, v.reward) == ("token budget of 60 spent", "length", 0.0)
            assert len(c.token_ids) >= 60
    with pytest.raises(ValueError, match="3 envs for 1 problems x 2 episodes"):
        run_episodes(engine, renderer, envs + envs[:1], problems, 2, Sampling(8), max_tokens=60)


class ScriptedEngine:
    """Plays fixed turns (as a trained policy would write them), each ended with the chat's end-of-turn token."""

    def __init__(self, tokenizer, end: int, turns: list[str]) -> None:
        self.tokenizer, self.end, self.turns, self.prompts = tokenizer, end, iter(turns), []

    def generate(self, prompts, n, sampling):
        from rlvr.types import Completion

        self.prompts.append(prompts)
        text = next(self.turns)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.end]
        return [[Completion(text, ids, [0.0] * len(ids))] for _ in prompts]


def test_a_tool_episode_is_the_templates_conversation_with_a_system_prompt_and_tools():
    """Calculator with a system prompt: the sequence the learner trains on is, id for id, the chat template's
    rendering of the whole conversation (system prompt, tool schemas, the call, the tool's result, the answer),
    and every engine call got the history as exactly those ids."""
    model, tokenizer, end = chat_policy()
    env = rlvr.make("rlvr/Calculator-v0", system_prompt="Use the calculator.").unwrapped
    [problem] = env.task.source.distinct(1)
    expression = problem.meta["expression"]
    call = '<tool_call>{"name": "calculator", "arguments": {"expression": "%s"}}</tool_call>' % expression
    engine = ScriptedEngine(tokenizer, end, [call, f"The answer is {problem.answer}."])
    renderer = ChatRenderer(tokenizer, {end}, tools=env.tools)
    [group], [episode] = run_episodes(engine, renderer, [env], [problem], 1, Sampling(64), max_tokens=4096)
    prompt = episode.prompt_ids
    assert (len(episode.turns), episode.tool_calls) == (2, 1)
    [completion], [verdict] = group.completions, group.verdicts
    assert verdict.correct and verdict.reward == 1.0
    assert [m["role"] for m in env.conversation] == ["system", "user", "assistant", "tool", "assistant"]
    text = tokenizer.apply_chat_template(env.conversation, tools=env.tools, tokenize=False)
    rendered = tokenizer(text, add_special_tokens=False)["input_ids"]
    sequence = prompt + completion.token_ids  # ends with the model's own end-of-turn token
    assert rendered[:len(sequence)] == sequence and tokenizer.decode(rendered[len(sequence):]) == "\n"
    first_turn = len(tokenizer(call, add_special_tokens=False)["input_ids"]) + 1
    assert engine.prompts[1] == [prompt + completion.token_ids[:first_turn + completion.loss_mask[first_turn:].index(1)]]
    masked = tokenizer.decode([t for t, m in zip(completion.token_ids, completion.loss_mask) if not m])
    assert f"<tool_response>\n{problem.answer}\n</tool_response>" in masked and "calculator" not in masked


class Rewarded(rlvr.envs.multiturn.MultiTurnEnv):
    """Reward 0.5 for every turn; the third one finishes the episode with 1.0."""

    def reply(self, turn):
        if self.turns == 3:
            return rlvr.envs.multiturn.Reply([], 1.0, True, rlvr.types.Verdict(1.0, True))
        return rlvr.envs.multiturn.Reply([{"role": "user", "content": "again"}], 0.5)


@pytest.mark.parametrize("episode_return,expected", [("sum", 2.0), ("final", 1.0)])
def test_the_episode_return_is_the_sum_of_step_rewards_or_the_final_one(episode_return, expected):
    model, tokenizer, end = chat_policy()
    engine = HFEngine(model, tokenizer, add_special_tokens=False)
    task = rlvr.make("rlvr/Arithmetic-v0").unwrapped
    envs = [Rewarded(task, max_turns=5) for _ in range(2)]
    renderer = ChatRenderer(tokenizer, engine.stop_ids)
    [group], episodes = run_episodes(engine, renderer, envs, task.source.distinct(1), 2, Sampling(4), 4096,
                                     episode_return)
    assert group.rewards == [expected, expected] and [len(e.turns) for e in episodes] == [3, 3]
    with pytest.raises(ValueError, match="episode_return must be 'sum' or 'final'"):
        run_episodes(engine, renderer, envs, task.source.distinct(1), 2, Sampling(4), 4096, "mean")
