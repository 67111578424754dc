"""The trainer on multi-turn envs: episodes are played through the env instances turn by turn, the learner trains
on their exact token sequences (the model's tokens only), the metrics count turns and tool calls, the plain chat
template renders conversations for a tokenizer without one, and a multi-turn run resumes exactly."""

import pytest
import torch

from rlvr.chat import PLAIN_CHAT_TEMPLATE
from rlvr.trainer import TrainConfig, Trainer
from rlvr.types import Completion, Verdict
from test_env_tokens import dapo_reference_update
from test_trainer import unbroken_and_resumed

torch.set_num_threads(1)

GUESS = dict(env="rlvr/GuessNumber-v0", env_kwargs={"high": 9, "max_turns": 3}, max_new_tokens=6)
CALCULATOR = dict(env="rlvr/Calculator-v0", env_kwargs={"parser": "pythonic", "template": "{prompt} ="},
                  max_new_tokens=40)


def config(tmp_path, **overrides) -> TrainConfig:
    values = dict(steps=1, num_prompts=2, group_size=3, warmstart_steps=0, eval_every=0, eval_problems=4,
                  save_every=0, out_dir=str(tmp_path / "run"), progress=False, report_to=[], **GUESS)
    values.update(overrides)
    return TrainConfig(**values)


class Scripted:
    """An engine that answers every prompt with the same next turn of a script, as a trained policy would."""

    def __init__(self, tokenizer, turns) -> None:
        self.tokenizer, self.turns = tokenizer, turns

    def generate(self, prompts, n, sampling):
        out = []
        for prompt in prompts:
            turn = self.turns(self.tokenizer.decode(prompt))
            ids = self.tokenizer(turn, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
            out.append([Completion(turn, ids, [-1.0] * len(ids))])
        return out

    def sync_weights(self, model) -> None:
        pass


def test_a_tool_episode_through_the_trainer_counts_its_calls_and_trains_on_the_model_tokens(tmp_path):
    trainer = Trainer(config(tmp_path, **CALCULATOR))
    tok = trainer.tokenizer
    assert tok.chat_template == PLAIN_CHAT_TEMPLATE  # the character tokenizer has none of its own

    def policy(history: str) -> str:  # call the calculator, then answer with its result
        question, _, rest = history.partition(" =\n")
        return f"[calculator(expression={question!r})]" if not rest else rest.split("=> ")[1].split("\n")[0]

    trainer.engine = Scripted(tok, policy)
    groups, stats = trainer.collector.collect()
    assert (stats["episode/turns"], stats["episode/tool_calls"], stats["accuracy"]) == (2.0, 1.0, 1.0)
    for group in groups:
        for c in group.completions:
            expression = group.problem.meta["expression"]
            model = tok.decode([t for t, m in zip(c.token_ids, c.loss_mask) if m])
            env = tok.decode([t for t, m in zip(c.token_ids, c.loss_mask) if not m])
            answer = group.problem.answer
            assert model == f"[calculator(expression={expression!r})]</s>{answer}</s>"
            assert env == f"=> {answer}\n"
            prompt = trainer.collector.first_prompt(group.problem)
            assert tok.decode(prompt + c.token_ids) == tok.apply_chat_template(
                trainer.task.messages(group.problem) + [
                    {"role": "assistant", "content": f"[calculator(expression={expression!r})]"},
                    {"role": "tool", "name": "calculator", "content": answer},
                    {"role": "assistant", "content": answer}], tokenize=False)


def test_an_update_on_played_episodes_of_different_turns_equals_the_float64_reference(tmp_path):
    """Real episodes of the untrained policy (GuessNumber answers every wrong turn, so they run 1 to 3 turns),
    given mixed rewards so that every advantage counts."""
    trainer = Trainer(config(tmp_path, algo="dapo", max_grad_norm=1e9))
    torch.manual_seed(0)
    problems = trainer.task.source.distinct(2)
    groups, episodes = trainer.collector.play(problems, 4, trainer.sampling, held_out=False)
    assert len({len(e.turns) for e in episodes}) > 1  # different numbers of turns
    assert any(c.num_sampled < len(c.token_ids) for g in groups for c in g.completions)  # env tokens inside
    for group, rewards in zip(groups, ([1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0])):
        group.verdicts = [Verdict(r, bool(r)) for r in rewards]
    dapo_reference_update(trainer, groups)


def test_a_multi_turn_run_resumes_exactly(tmp_path):
    unbroken, resumed = unbroken_and_resumed(tmp_path, **GUESS)
    assert [r["step"] for r in resumed] == [0, 1, 2, 3, 4]
    assert resumed == unbroken
    assert all(r["episode/turns"] >= 1 for r in resumed if "reward" in r)


def test_multi_turn_options_the_trainer_cannot_honour_are_errors(tmp_path):
    with pytest.raises(ValueError, match="chat_template=False cannot be honoured"):
        Trainer(config(tmp_path, chat_template=False))
    with pytest.raises(ValueError, match="episode_return must be 'sum' or 'final'"):
        config(tmp_path, episode_return="mean")


def test_stop_strings_end_every_turn_in_training_and_evaluation(tmp_path):
    trainer = Trainer(config(tmp_path, **{**CALCULATOR, "env_kwargs": {}}, stop=["</tool_call>"], eval_k=1))
    engine, seen = Scripted(trainer.tokenizer, lambda history: "7"), []
    trainer.engine = engine
    generate = engine.generate
    engine.generate = lambda prompts, n, sampling: seen.append(sampling) or generate(prompts, n, sampling)
    trainer.collector.collect()
    trainer.evaluate()
    assert {s.stop for s in seen} == {("</tool_call>",)}
    assert [s.temperature for s in seen] == [1.0] * (len(seen) - 1) + [0.0]  # the rounds, then greedy evaluation
