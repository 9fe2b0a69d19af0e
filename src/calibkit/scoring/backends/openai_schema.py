"""The OpenAI API schema: request bodies and the two response dialects.

:func:`build_payload` writes the body of a request (chat messages go to ``/chat/completions``
with ``logprobs: true, top_logprobs: k``; a plain string to the legacy ``/completions`` with
``logprobs: k``); :func:`parse_chat` and :func:`parse_completion` read a reply's answer and
per-position log-probabilities (``choices[0].logprobs.content`` for chat;
``choices[0].logprobs.{tokens, token_logprobs, top_logprobs}`` for completions, or the chat
shape llama.cpp returns there). A *text-only* request (``build_payload(..., logprobs=False)``:
no ``logprobs`` / ``top_logprobs`` fields, for servers that return none) is answered by a
:class:`TextGeneration`: the text (checked: a string; ``""`` is a valid empty reply) and the
number of generated tokens from ``usage.completion_tokens`` when the server reports it; any
log-probabilities in such a reply are ignored. A reply to a request that asked for
log-probabilities must carry them (strict checks below). Every number is checked: a
log-probability must be a finite number <= 0 (up to ``1e-4`` above 0 is float rounding of a
certain token, read as 0; a ``-inf`` alternative is dropped). A reply of the wrong shape
raises :class:`Malformed` naming the field. No I/O here: the transport is
:mod:`calibkit.scoring.backends._http_transport`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from calibkit.scoring.backends.base import ChatMessage, Generation, ItemFailure, Prompt

__all__ = [
    "Malformed",
    "TextGeneration",
    "as_messages",
    "build_payload",
    "check_candidates",
    "endpoint_path",
    "first_position",
    "parse_chat",
    "parse_completion",
    "parse_reply",
    "wants_logprobs",
]

_NUM = (int, float)
_ROLES = frozenset({"system", "user", "assistant", "developer"})
#: log-probabilities in (0, _POS_TOL] are float rounding of a certain token and read as 0
_POS_TOL = 1e-4


class _Malformed(Exception):
    pass


@dataclass
class TextGeneration(Generation):
    """A reply to a text-only request: ``tokens`` and ``logprobs`` are empty.

    Attributes
    ----------
    n_output_tokens : int or None
        Tokens generated, from the reply's ``usage.completion_tokens`` (``None`` when the server
        did not report it).
    """

    n_output_tokens: int | None = None


def _get(obj: Any, key: str | int, where: str, kind: type | tuple[type, ...]) -> Any:
    """``obj[key]`` checked for presence and type, else _Malformed naming the path."""
    path = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}" if where else key
    if isinstance(key, int):
        if not isinstance(obj, list) or key >= len(obj):
            raise _Malformed(f"{path} is missing")
        val = obj[key]
    else:
        if not isinstance(obj, dict) or key not in obj:
            raise _Malformed(f"{path} is missing")
        val = obj[key]
    if val is None and kind is not type(None):
        raise _Malformed(f"{path} is null")
    if not isinstance(val, kind) or isinstance(val, bool):
        names = kind.__name__ if isinstance(kind, type) else "/".join(t.__name__ for t in kind)
        raise _Malformed(f"{path} is {type(val).__name__}, expected {names}")
    return val


def _logprob(val: Any, path: str, *, alternative: bool) -> float | None:
    """A checked log-probability: finite and <= 0 (tiny positive rounding read as 0).

    ``None`` for a ``-inf`` alternative (probability 0: dropped, as if not reported).
    """
    if isinstance(val, bool) or not isinstance(val, int | float):
        raise _Malformed(f"{path} is {type(val).__name__}, expected number")
    v = float(val)
    if math.isnan(v):
        raise _Malformed(f"{path} is NaN, not a log-probability")
    if v == math.inf:
        raise _Malformed(f"{path} is inf, not a log-probability")
    if v == -math.inf:
        if alternative:
            return None
        raise _Malformed(f"{path} is -inf for the generated token")
    if v > _POS_TOL:
        raise _Malformed(f"{path} is {v!r} > 0, not a log-probability")
    return min(v, 0.0)


def _first_choice(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise _Malformed(f"body is {type(payload).__name__}, expected a JSON object")
    if "error" in payload and "choices" not in payload:
        raise _Malformed(f"server error: {payload['error']}")
    choices = _get(payload, "choices", "", list)
    if not choices:
        raise _Malformed("choices is empty")
    choice: dict[str, Any] = _get(choices, 0, "choices", dict)
    return choice


def _no_logprobs(where: str) -> _Malformed:
    return _Malformed(
        f"{where} is missing: the server returned no log-probabilities (does it support "
        "logprobs? vLLM: raise --max-logprobs; llama.cpp: use a recent llama-server; without "
        "them, use a text-only estimator: --confidence verbalized or consistency)"
    )


def _empty(where: str, text: str) -> _Malformed:
    if text == "":
        return _Malformed(
            f"empty completion ({where} is empty and the text is ''): the model's first token "
            "was end-of-sequence, so there is no answer position to score"
        )
    return _Malformed(
        f"{where} is empty although the answer is {text[:40]!r}: no usable log-probabilities"
    )


def _parse_content(content: list[Any], where: str) -> tuple[list[str], list[dict[str, float]]]:
    """Chat-style ``[{token, logprob, top_logprobs: [{token, logprob}, ...]}, ...]``."""
    tokens: list[str] = []
    lps: list[dict[str, float]] = []
    for j, entry in enumerate(content):
        w = f"{where}[{j}]"
        tok = _get(entry, "token", w, str)
        lp = _logprob(_get(entry, "logprob", w, _NUM), f"{w}.logprob", alternative=False)
        pos: dict[str, float] = {}
        tops = entry.get("top_logprobs") or []
        if not isinstance(tops, list):
            raise _Malformed(f"{w}.top_logprobs is {type(tops).__name__}, expected list")
        for t, alt in enumerate(tops):
            wt = f"{w}.top_logprobs[{t}]"
            v = _logprob(_get(alt, "logprob", wt, _NUM), f"{wt}.logprob", alternative=True)
            name = _get(alt, "token", wt, str)
            if v is not None:
                _put_max(pos, name, v)
        assert lp is not None
        _put_max(pos, tok, lp)
        tokens.append(tok)
        lps.append(pos)
    return tokens, lps


def _put_max(d: dict[str, float], tok: str, lp: float) -> None:
    # Distinct token ids can decode to the same string; keep the largest (max aggregation).
    if tok not in d or lp > d[tok]:
        d[tok] = lp


def _parse_chat(payload: Any) -> Generation:
    choice = _first_choice(payload)
    message = _get(choice, "message", "choices[0]", dict)
    text = message.get("content")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise _Malformed(f"choices[0].message.content is {type(text).__name__}, expected str")
    logprobs = choice.get("logprobs")
    w = "choices[0].logprobs.content"
    if logprobs is None:
        if text == "":
            raise _empty("choices[0].logprobs", text)
        raise _no_logprobs("choices[0].logprobs")
    if not isinstance(logprobs, dict):
        raise _Malformed(f"choices[0].logprobs is {type(logprobs).__name__}, expected object")
    content = logprobs.get("content")
    if content is None or content == []:
        if content == [] or text == "":
            raise _empty(w, text)
        raise _Malformed(
            f"{w} is null: the server returned no log-probabilities for the answer "
            f"{text[:40]!r} (does it support logprobs?)"
        )
    if not isinstance(content, list):
        raise _Malformed(f"{w} is {type(content).__name__}, expected list")
    tokens, lps = _parse_content(content, w)
    return Generation(text=text, tokens=tokens, logprobs=lps)


def _parse_completion(payload: Any) -> Generation:
    choice = _first_choice(payload)
    text = _get(choice, "text", "choices[0]", str)
    logprobs = choice.get("logprobs")
    if logprobs is None:
        if text == "":
            raise _empty("choices[0].logprobs", text)
        raise _no_logprobs("choices[0].logprobs")
    if not isinstance(logprobs, dict):
        raise _Malformed(f"choices[0].logprobs is {type(logprobs).__name__}, expected object")
    if isinstance(logprobs.get("content"), list):  # llama.cpp answers in the chat shape
        if not logprobs["content"]:
            raise _empty("choices[0].logprobs.content", text)
        ctoks, clps = _parse_content(logprobs["content"], "choices[0].logprobs.content")
        return Generation(text=text, tokens=ctoks, logprobs=clps)
    w = "choices[0].logprobs"
    if "tokens" not in logprobs or logprobs["tokens"] is None:
        if text == "":
            raise _empty(f"{w}.tokens", text)
        raise _no_logprobs(f"{w}.tokens")
    toks = _get(logprobs, "tokens", w, list)
    tlps = _get(logprobs, "token_logprobs", w, list)
    tops = logprobs.get("top_logprobs")
    if tops is None:
        tops = [None] * len(toks)
    if not isinstance(tops, list):
        raise _Malformed(f"{w}.top_logprobs is {type(tops).__name__}, expected list")
    if not (len(toks) == len(tlps) == len(tops)):
        raise _Malformed(
            f"{w}: tokens, token_logprobs and top_logprobs differ in length "
            f"({len(toks)}, {len(tlps)}, {len(tops)})"
        )
    if not toks:
        raise _empty(f"{w}.tokens", text)
    tokens: list[str] = []
    lps: list[dict[str, float]] = []
    for j in range(len(toks)):
        tok = _get(toks, j, f"{w}.tokens", str)
        pos: dict[str, float] = {}
        top = tops[j]
        if top is not None:
            if not isinstance(top, dict):
                raise _Malformed(f"{w}.top_logprobs[{j}] is {type(top).__name__}, expected object")
            for t, v in top.items():
                lv = _logprob(v, f"{w}.top_logprobs[{j}][{t!r}]", alternative=True)
                if lv is not None:
                    _put_max(pos, str(t), lv)
        lp = tlps[j]
        if lp is not None:
            lv = _logprob(lp, f"{w}.token_logprobs[{j}]", alternative=False)
            assert lv is not None
            _put_max(pos, tok, lv)
        tokens.append(tok)
        lps.append(pos)
    if not any(lps):
        raise _Malformed(f"{w}: no position reports a log-probability (all null)")
    return Generation(text=text, tokens=tokens, logprobs=lps)


def _usage_tokens(payload: dict[str, Any]) -> int | None:
    """``usage.completion_tokens`` checked (an int >= 0), or ``None`` when not reported."""
    usage = payload.get("usage")
    if usage is None:
        return None
    if not isinstance(usage, dict):
        raise _Malformed(f"usage is {type(usage).__name__}, expected object")
    n = usage.get("completion_tokens")
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise _Malformed(f"usage.completion_tokens is {n!r}, expected an int >= 0")
    return n


def _parse_text_only(payload: Any, chat: bool) -> TextGeneration:
    """The text of a reply to a request that asked for no log-probabilities."""
    choice = _first_choice(payload)
    if chat:
        message = _get(choice, "message", "choices[0]", dict)
        text = message.get("content")
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise _Malformed(f"choices[0].message.content is {type(text).__name__}, expected str")
    else:
        text = _get(choice, "text", "choices[0]", str)
    return TextGeneration(text=text, n_output_tokens=_usage_tokens(payload))


def _first(g: Generation | ItemFailure) -> dict[str, float] | ItemFailure:
    """The first answer position of a generation (every reported token)."""
    return g if isinstance(g, ItemFailure) else dict(g.logprobs[0])


def _as_messages(prompt: Prompt, i: int) -> list[ChatMessage]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if not isinstance(prompt, list) or not prompt:
        raise ValueError(f"prompts[{i}] must be a string or a non-empty list of chat messages")
    for j, m in enumerate(prompt):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise ValueError(f"prompts[{i}][{j}] must be a dict with a string 'content'")
        if m.get("role") not in _ROLES:
            raise ValueError(
                f"prompts[{i}][{j}] has role {m.get('role')!r}; expected one of {sorted(_ROLES)}"
            )
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def _check_candidates(candidates: Sequence[str]) -> list[str]:
    if isinstance(candidates, str):
        raise ValueError("candidates must be a sequence of token strings, got a single string")
    out = list(candidates)
    for j, c in enumerate(out):
        if not isinstance(c, str):
            raise ValueError(f"candidates[{j}] is {type(c).__name__}, expected str")
    return out


def build_payload(
    model: str,
    prompt: Prompt,
    max_tokens: int,
    k: int,
    i: int,
    *,
    use_chat: bool = True,
    extra_body: Mapping[str, Any] | None = None,
    logprobs: bool = True,
) -> dict[str, Any]:
    """The JSON body of one greedy request for ``prompt`` (``prompts[i]``) asking for ``k``
    alternatives per position; ``extra_body`` is merged last. ``logprobs=False``: a text-only
    request, without ``logprobs`` / ``top_logprobs`` (``k`` is ignored)."""
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "temperature": 0,
        "n": 1,
        "stream": False,
    }
    if isinstance(prompt, str):
        body["prompt"] = prompt
        if logprobs:
            body["logprobs"] = k
    else:
        if not use_chat:
            raise ValueError(
                f"prompts[{i}] is a list of chat messages, but use_chat=False (a base model "
                "without a chat template); pass a string or use use_chat=True"
            )
        body["messages"] = _as_messages(prompt, i)
        if logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = k
    body.update(extra_body or {})
    return body


def endpoint_path(body: Mapping[str, Any]) -> str:
    """``"chat/completions"`` for a body with ``messages``, else ``"completions"``."""
    return "chat/completions" if "messages" in body else "completions"


def wants_logprobs(body: Mapping[str, Any]) -> bool:
    """Whether the request ``body`` asks for log-probabilities (chat: ``logprobs`` true or a
    ``top_logprobs``; completions: a ``logprobs`` count)."""
    if "messages" in body:
        return bool(body.get("logprobs")) or body.get("top_logprobs") is not None
    return body.get("logprobs") is not None


def parse_reply(payload: Any, body: Mapping[str, Any]) -> Generation:
    """The reply to ``body`` in its dialect (chat or completion); :class:`Malformed` if wrong.

    A request that asked for log-probabilities (:func:`wants_logprobs`) needs them in the
    reply; one that did not gets a :class:`TextGeneration` (text only)."""
    chat = "messages" in body
    if not wants_logprobs(body):
        return _parse_text_only(payload, chat)
    return _parse_chat(payload) if chat else _parse_completion(payload)


# public names of the parsing helpers
Malformed = _Malformed
as_messages = _as_messages
check_candidates = _check_candidates
first_position = _first
parse_chat = _parse_chat
parse_completion = _parse_completion
