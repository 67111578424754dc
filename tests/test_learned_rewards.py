"""Learned rewards: a reward model's batched scores equal its one-pair-at-a-time logits (a stub classifier whose
scores the test computes itself), composed by weight with a rule verifier; a judge behind a stub OpenAI-compatible
server on loopback that answers well, with garbage, slowly, with an HTTP error or not at all, and a judge on an
rlvr engine over a local model."""

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from rlvr.models import char_tokenizer, save_policy, tiny_model
from rlvr.types import Completion, Problem
from rlvr.verifiers import SerialExecutor, VerifierPool, make
from rlvr.verifiers.judge import JudgeVerifier
from rlvr.verifiers.reward_model import RewardModelVerifier

torch.set_num_threads(1)
PROBLEM = Problem("p1", "What is 6 * 7?", answer="42")
TEXTS = ["6 * 7 = \\boxed{42}", "it is 41", "", "a much longer answer that goes on and on before it says 42"]


@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory):
    """A small Llama sequence classifier (one logit) over the character tokenizer, saved as a local directory."""
    tokenizer = char_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_labels=1, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForSequenceClassification(config)
    with torch.no_grad():
        model.score.weight.mul_(20)  # scores of a few units: both sides of the threshold
    path = tmp_path_factory.mktemp("rm") / "model"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path, model.eval(), tokenizer


def test_batched_scores_are_the_models_own_pair_by_pair(reward_dir):
    path, model, tokenizer = reward_dir
    verifier = RewardModelVerifier(path=str(path), batch_size=3)
    items = [(PROBLEM, Completion(t)) for t in TEXTS]
    verdicts = verifier.batch(items)
    for text, verdict in zip(TEXTS, verdicts):
        ids = tokenizer(f"{PROBLEM.prompt}\n\n{text}", return_tensors="pt")  # no chat template: plain rendering
        with torch.no_grad():
            logit = float(model(**ids).logits[0, 0])
        assert verdict.reward == pytest.approx(1 / (1 + math.exp(-logit)), abs=1e-5)
        assert verdict.correct == (verdict.reward >= 0.5) and verdict.error is None
    assert len({round(v.reward, 4) for v in verdicts}) == len(TEXTS)  # the padding of a batch changes nothing
    assert [v.reward for v in verdicts] == pytest.approx([verifier(PROBLEM, t).reward for t in TEXTS], abs=1e-5)
    raw = RewardModelVerifier(path=str(path), squash=False, threshold=0.0)
    assert raw(PROBLEM, TEXTS[0]).reward == pytest.approx(math.log(verdicts[0].reward / (1 - verdicts[0].reward)),
                                                          abs=1e-4)


def test_a_reward_model_composes_by_weight_with_a_rule_and_runs_in_a_pool(reward_dir):
    path = str(reward_dir[0])
    composed = make([{"name": "math"}, {"name": "reward_model", "weight": 0.5, "path": path}])
    items = [(PROBLEM, Completion(t)) for t in TEXTS]
    alone = RewardModelVerifier(path=path).batch(items)
    batched = SerialExecutor().map(composed, items)  # each part batched, then combined
    for text, verdict, rm in zip(TEXTS, batched, alone):
        rule = 1.0 if "42" in text and "boxed" in text or text.endswith("42") else 0.0
        assert verdict.parts == pytest.approx({"math": rule, "reward_model": 0.5 * rm.reward}, abs=1e-5)
        assert verdict.correct == bool(rule)  # the first part decides correctness
    pool = VerifierPool(num_workers=1)
    try:
        pooled = pool.map(composed, items)  # the worker loads the model itself
    finally:
        pool.close()
    assert [v.reward for v in pooled] == pytest.approx([v.reward for v in batched], abs=1e-5)


def test_bad_reward_model_settings_and_non_finite_scores(reward_dir, tmp_path):
    with pytest.raises(ValueError, match="local AutoModelForSequenceClassification directory"):
        RewardModelVerifier(path=str(tmp_path / "nothing"))
    path, model, tokenizer = reward_dir
    broken = tmp_path / "nan"
    with torch.no_grad():
        saved = model.score.weight.clone()
        model.score.weight.fill_(float("nan"))
        model.save_pretrained(broken)
        model.score.weight.copy_(saved)
    tokenizer.save_pretrained(broken)
    verdict = RewardModelVerifier(path=str(broken))(PROBLEM, "42")
    assert verdict.reward == 0 and not verdict.correct and "non-finite" in verdict.error


class StubJudge(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat-completions endpoint whose `model` says how it behaves."""

    seen: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        StubJudge.seen.append((body, self.headers.get("Authorization")))
        prompt, mode = body["messages"][0]["content"], body["model"]
        if mode == "slow":
            time.sleep(2)
        if mode == "broken":
            self.send_error(500, "judge crashed")
            return
        answer = prompt.split("Answer to grade:")[1]
        reply = {"good": f"Checked.\nVERDICT: {'CORRECT' if '42' in answer else 'INCORRECT'}",
                 "garbage": "I would rather not say.", "slow": "VERDICT: CORRECT"}.get(mode)
        payload = b"<html>not json</html>" if mode == "html" else json.dumps(
            {"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def judge_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubJudge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_a_judge_over_http_decides_and_sees_the_problem_and_answer(judge_url, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    judge = JudgeVerifier(url=judge_url, model="good", api_key_env="JUDGE_KEY", timeout=5)
    right, wrong = judge(PROBLEM, "so it is 42"), judge(PROBLEM, "it is 41")
    assert (right.reward, right.correct, right.extracted) == (1.0, True, "CORRECT")
    assert (wrong.reward, wrong.correct, wrong.error) == (0.0, False, "judged incorrect")
    body, auth = StubJudge.seen[-1]
    assert auth == "Bearer sk-test" and "What is 6 * 7?" in body["messages"][0]["content"]
    assert "Reference answer (may be empty):\n42" in body["messages"][0]["content"] and body["temperature"] == 0.0


@pytest.mark.parametrize("model, error", [
    ("garbage", "unparsable judgement: no "),
    ("slow", "timeout: the judge gave no reply within 0.5 s"),
    ("broken", "judge error: HTTP 500"),
    ("html", "unparsable judgement: the endpoint's reply is not a chat completion"),
])
def test_a_judge_that_fails_gives_a_named_error_verdict(judge_url, model, error):
    verdict = JudgeVerifier(url=judge_url, model=model, timeout=0.5)(PROBLEM, "42")
    assert verdict.reward == 0 and not verdict.correct and verdict.error.startswith(error), verdict.error


def test_a_judge_nobody_answers_is_an_error_verdict_not_a_hang():
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    verdict = JudgeVerifier(url=f"http://127.0.0.1:{port}/v1", model="m", timeout=2)(PROBLEM, "42")
    assert not verdict.correct and verdict.error.startswith("judge error: cannot reach")


def test_a_judge_on_a_local_engine_and_bad_settings(tmp_path):
    tokenizer = char_tokenizer()
    save_policy(tiny_model(tokenizer, seed=3), tokenizer, tmp_path / "judge")
    judge = JudgeVerifier(engine="hf", model=str(tmp_path / "judge"), max_tokens=6)
    verdicts = SerialExecutor().map(judge, [(PROBLEM, Completion(t)) for t in TEXTS[:2]])
    assert all(v.error.startswith("unparsable judgement") for v in verdicts)  # an untrained model says nothing
    assert judge.parse("thinking...\nVERDICT: INCORRECT\nno wait\nVERDICT: CORRECT").correct  # its last verdict
    with pytest.raises(ValueError, match="needs url="):
        JudgeVerifier(model="m")
    with pytest.raises(ValueError, match="template must contain \\{completion\\}"):
        JudgeVerifier(url="http://x", model="m", template="{question}")
