"""Token-in, token-out conversations: the model's sampled ids followed by what `ChatRenderer` appends are, id for
id, the chat template's rendering of the whole conversation (a system prompt, tools, tool results), and a template
that rewrites earlier turns is refused by name."""

import pytest

from rlvr.chat import ChatRenderer, TemplateError
from rlvr.models import char_tokenizer

CHATML = (
    "{%- if tools %}<|im_start|>system\n{% if messages[0].role == 'system' %}{{ messages[0].content }}\n\n{% endif %}"
    "# Tools\n<tools>\n{% for t in tools %}{{ t | tojson }}\n{% endfor %}</tools><|im_end|>\n"
    "{%- elif messages[0].role == 'system' %}<|im_start|>system\n{{ messages[0].content }}<|im_end|>\n{% endif %}"
    "{%- for m in messages %}{% if m.role == 'system' %}{% elif m.role == 'tool' %}<|im_start|>user\n"
    "<tool_response>\n{{ m.content }}\n</tool_response><|im_end|>\n"
    "{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Like Qwen3's: an assistant turn's <think> block is shown only while it is the last message.
DROPS_THINKING = CHATML.replace(
    "{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}",
    "{% elif m.role == 'assistant' and not loop.last %}<|im_start|>assistant\n"
    "{{ m.content.split('</think>')[-1] }}<|im_end|>\n"
    "{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}")
TOOLS = [{"type": "function", "function": {"name": "add", "description": "Add.", "parameters": {
    "type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}}}]


def chat_tokenizer(template: str):
    tok = char_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = template
    return tok


def render(tok, messages, generation_prompt):
    text = tok.apply_chat_template(messages, tools=TOOLS, tokenize=False, add_generation_prompt=generation_prompt)
    return tok(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("stopped_at_eos", [True, False], ids=["turn-ends-at-im_end", "stopped-at-tool-call"])
def test_sampled_ids_plus_rendered_env_messages_are_the_templates_conversation(stopped_at_eos):
    tok = chat_tokenizer(CHATML)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    renderer = ChatRenderer(tok, stop_ids={end}, tools=TOOLS)
    history = [{"role": "system", "content": "Use the tools."}, {"role": "user", "content": "What is 40 + 2?"}]
    sequence = renderer.prompt(history)
    assert sequence == render(tok, history, True)

    call = '<tool_call>{"name": "add", "arguments": {"x": 40}}</tool_call>'
    sampled = tok(call, add_special_tokens=False)["input_ids"] + ([end] if stopped_at_eos else [])
    tool = [{"role": "tool", "name": "add", "content": "42"}]
    appended = renderer.after_model_turn(history, call, sampled, tool)
    sequence += sampled + appended
    history = history + [{"role": "assistant", "content": call}] + tool
    assert sequence == render(tok, history, True)  # id for id

    answer = "It is 42."
    sampled = tok(answer, add_special_tokens=False)["input_ids"] + [end]
    sequence += sampled + renderer.after_model_turn(history, answer, sampled, [], generation_prompt=False)
    assert sequence == render(tok, history + [{"role": "assistant", "content": answer}], False)
    # the end of the model's turn: the template's newline after the <|im_end|> it sampled, or <|im_end|> itself
    assert appended[0] == (tok.convert_tokens_to_ids("\n") if stopped_at_eos else end)


def test_a_template_that_rewrites_earlier_turns_is_a_named_error():
    tok = chat_tokenizer(DROPS_THINKING)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    renderer = ChatRenderer(tok, stop_ids={end}, tools=TOOLS)
    history = [{"role": "user", "content": "2 + 2?"}]
    turn = "<think>add them</think>Let me check."
    sampled = tok(turn, add_special_tokens=False)["input_ids"] + [end]
    with pytest.raises(TemplateError, match="renders the conversation so far differently"):
        renderer.after_model_turn(history, turn, sampled, [{"role": "user", "content": "Sure?"}])
    plain = "Let me check."  # without a <think> block the same template keeps the turn as it was
    sampled = tok(plain, add_special_tokens=False)["input_ids"] + [end]
    assert renderer.after_model_turn(history, plain, sampled, [{"role": "user", "content": "Sure?"}])


def test_a_tokenizer_without_a_template_or_stop_token_is_refused():
    with pytest.raises(ValueError, match="needs a tokenizer with a chat template"):
        ChatRenderer(char_tokenizer(), stop_ids={2})
    tok = chat_tokenizer(CHATML)
    renderer = ChatRenderer(tok, stop_ids={tok.eos_token_id})  # the template ends turns with <|im_end|>, not EOS
    with pytest.raises(TemplateError, match="ends an assistant turn with none of the stop tokens"):
        renderer.after_model_turn([{"role": "user", "content": "hi"}], "yo", [5], [])
