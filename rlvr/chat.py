"""A conversation as token ids, built turn by turn with the tokenizer's chat template and never re-tokenized.

The model's turns are kept as the engine sampled them. After each one, `ChatRenderer.after_model_turn` gives the
ids to append: the rest of the template's end of the assistant turn (what it writes after the stop token, or the
stop token itself when generation stopped elsewhere, e.g. at the end of a tool call), the environment's messages,
and the generation prompt of the next turn, exactly as the template renders them after the conversation so far.
That is only sound when the template renders the conversation so far as a prefix of the longer one; a template that
rewrites earlier turns (say, one that drops earlier `<think>` blocks) raises `TemplateError`, naming the first
place where the renderings part."""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedTokenizerBase

from rlvr.types import Message


# For tokenizers without a chat template (the built-in character model's): one message per line, a tool result
# after "=> ", each assistant turn ended by EOS, no generation prompt. It does not list the tools: the task's
# prompt names them. Its renderings of a conversation are prefixes of the longer conversation's.
PLAIN_CHAT_TEMPLATE = (
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'assistant' -%}{{ m['content'] }}{{ eos_token }}"
    "{%- elif m['role'] == 'tool' -%}{{ '=> ' + m['content'] + '\\n' }}"
    "{%- else -%}{{ m['content'] + '\\n' }}"
    "{%- endif -%}{%- endfor -%}"
)


def ensure_chat_template(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """`tokenizer`, given `PLAIN_CHAT_TEMPLATE` when it has no chat template (multi-turn episodes need one)."""
    if getattr(tokenizer, "chat_template", None) is None:
        tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    return tokenizer


class TemplateError(ValueError):
    """The chat template does not keep earlier turns as a prefix of later renderings, so appending the
    environment's tokens after the model's would train on a sequence the template never produces."""


class ChatRenderer:
    """Renders with `tokenizer`'s chat template (and `tools`, JSON schemas, as the template's `tools=`); `stop_ids`
    are the ids that end a model turn (the engine's stop tokens)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop_ids: set[int],
                 tools: list[dict[str, Any]] | None = None) -> None:
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("multi-turn rendering needs a tokenizer with a chat template")
        self.tokenizer, self.stop_ids, self.tools = tokenizer, set(stop_ids), tools or None

    def ids(self, messages: list[Message], generation_prompt: bool) -> list[int]:
        """The template's rendering of `messages`, tokenized (the template writes the special tokens itself)."""
        text = self.tokenizer.apply_chat_template(messages, tools=self.tools, tokenize=False,
                                                  add_generation_prompt=generation_prompt)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt(self, messages: list[Message]) -> list[int]:
        """The first prompt: the task's messages and the generation prompt of the model's first turn."""
        return self.ids(messages, generation_prompt=True)

    def after_model_turn(self, history: list[Message], model_text: str, model_ids: list[int],
                         env_messages: list[Message], generation_prompt: bool = True) -> list[int]:
        """The ids that follow the model's turn `model_ids` (its text `model_text`) after `history`: the end of its
        turn as the template writes it, then `env_messages`, then (with `generation_prompt`) the next turn's
        generation prompt."""
        with_turn = history + [{"role": "assistant", "content": model_text}]
        before = self.ids(with_turn, generation_prompt=False)
        after = self.ids(with_turn + env_messages, generation_prompt=generation_prompt)
        if after[:len(before)] != before:
            part = next((i for i, (a, b) in enumerate(zip(before, after)) if a != b), min(len(before), len(after)))
            raise TemplateError(
                f"the chat template renders the conversation so far differently once {len(env_messages)} more "
                f"message(s) follow (first difference at token {part}: "
                f"{self.tokenizer.decode(before[part:part + 12])!r} becomes "
                f"{self.tokenizer.decode(after[part:part + 12])!r}); multi-turn training needs a template that "
                f"keeps earlier turns as they were (one that drops earlier <think> blocks does not)")
        return self.turn_end(before, model_ids) + after[len(before):]

    def turn_stop_id(self, history: list[Message], model_text: str) -> int:
        """The stop token the template ends the assistant turn `model_text` after `history` with."""
        rendered = self.ids(history + [{"role": "assistant", "content": model_text}], generation_prompt=False)
        ending = self.turn_end(rendered, [])
        return ending[0]

    def turn_end(self, rendered_turn: list[int], model_ids: list[int]) -> list[int]:
        """What the template writes after the model's content in `rendered_turn` (a rendering that ends with the
        assistant's turn): from its last stop token on, without that token when the model sampled it itself."""
        stops = [i for i, t in enumerate(rendered_turn) if t in self.stop_ids]
        if not stops:
            raise TemplateError("the chat template ends an assistant turn with none of the stop tokens "
                                f"{sorted(self.stop_ids)}, so the end of a model turn cannot be placed")
        ended = bool(model_ids) and model_ids[-1] in self.stop_ids
        return rendered_turn[stops[-1] + ended:]
