"""A decision applied to a chat request: the level's instruction in the messages and its token cap.

Also where a chat request's telemetry comes from: headers first, then the body's ``metadata``,
then the documented defaults (:data:`TELEMETRY_INPUTS`).
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timezone
from typing import Any, Mapping, Optional

from pydantic import ValidationError

from ..service import Telemetry
from .errors import APIError, validation_message
from .settings import DirectiveLevel

__all__ = ["CHARS_PER_TOKEN", "TELEMETRY_INPUTS", "apply_directive", "estimate_prompt_tokens", "chat_telemetry"]

# OpenAI's rule of thumb for English text ("one token is about 4 characters"): the prompt length
# the policy sees before the upstream has counted it (the ledger row uses the upstream's count)
CHARS_PER_TOKEN = 4.0

# telemetry field: (request header, metadata key); defaults in GatewaySettings / chat_telemetry
TELEMETRY_INPUTS: dict[str, tuple[str, str]] = {
    "request_id": ("X-Aolo-Request-Id", "aolo_request_id"),
    "task_class": ("X-Aolo-Task-Class", "aolo_task_class"),
    "gain_db": ("X-Aolo-Gain-Db", "aolo_gain_db"),
    "active_sessions": ("X-Aolo-Active-Sessions", "aolo_active_sessions"),
    "deadline_s": ("X-Aolo-Deadline-S", "aolo_deadline_s"),
}
_PARSE = {"request_id": str, "task_class": str, "gain_db": float, "active_sessions": int, "deadline_s": float}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def estimate_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Prompt tokens estimated from the messages' text (:data:`CHARS_PER_TOKEN`), at least 1."""
    chars = sum(len(_text_of(m.get("content"))) for m in messages)
    return max(1, math.ceil(chars / CHARS_PER_TOKEN))


def chat_telemetry(headers: Mapping[str, str], metadata: Optional[Mapping[str, Any]], defaults: dict[str, Any],
                   class_deadlines_s: Mapping[str, float], prompt_tokens: int) -> Telemetry:
    """The telemetry of one chat request.

    :param headers: the request's headers (case-insensitive mapping)
    :param metadata: the body's ``metadata`` object, if any
    :param defaults: value of each :data:`TELEMETRY_INPUTS` field when neither gives it (a
        callable is called; ``deadline_s`` None means the class's T_max)
    :param class_deadlines_s: T_max of each task class, s
    :param prompt_tokens: the prompt's estimated tokens
    :raises APIError: 422 naming the header or metadata key of a bad value
    """
    values: dict[str, Any] = {}
    where: dict[str, str] = {}
    for name, (header, key) in TELEMETRY_INPUTS.items():
        raw: Any = headers.get(header)
        src = header
        if raw is None and metadata is not None and key in metadata:
            raw, src = metadata[key], f"metadata.{key}"
        if raw is None:
            values[name] = defaults[name]() if callable(defaults[name]) else defaults[name]
            if name == "deadline_s" and values[name] is None:
                values[name] = class_deadlines_s.get(values["task_class"], max(class_deadlines_s.values()))
            where[name] = name
            continue
        where[name] = src
        try:
            if _PARSE[name] is int and isinstance(raw, str) and not raw.strip().lstrip("-").isdigit():
                raise ValueError
            if isinstance(raw, bool):
                raise ValueError
            values[name] = _PARSE[name](raw)
        except (TypeError, ValueError):
            raise APIError(422, f"{src}: {raw!r} is not a valid {_PARSE[name].__name__}", src) from None
    try:
        return Telemetry(timestamp_utc=datetime.now(timezone.utc), prompt_tokens=prompt_tokens, **values)
    except ValidationError as e:
        err = e.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else ""
        _, message = validation_message({**err, "loc": ()})
        src = where.get(name, name)
        raise APIError(422, f"{src}{message.removeprefix('(root)')}", src) from None


def new_request_id() -> str:
    """A fresh request id for a chat request that brings none."""
    return f"aolo-{uuid.uuid4().hex}"


def apply_directive(body: dict[str, Any], level: DirectiveLevel) -> dict[str, Any]:
    """A copy of a chat-completions body with the level's instruction placed in its messages and
    its ``max_tokens`` capped (the lower of the client's and the level's).

    :param body: the client's body (not changed)
    :param level: the decided level's directive
    """
    out = dict(body)
    messages = [dict(m) for m in body["messages"]]
    if level.text is not None:
        if level.placement == "append_to_last_user":
            users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
            if users:
                m = messages[users[-1]]
                content = m.get("content")
                if isinstance(content, list):
                    m["content"] = [*content, {"type": "text", "text": level.text}]
                else:
                    m["content"] = f"{content or ''}\n\n{level.text}"
            else:  # no user turn to append to: say it as a system message
                messages.insert(0, {"role": "system", "content": level.text})
        else:
            if messages and messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
                messages[0]["content"] = f"{messages[0]['content']}\n\n{level.text}"
            else:
                messages.insert(0, {"role": "system", "content": level.text})
    out["messages"] = messages
    if level.max_tokens is not None:
        for key in ("max_tokens", "max_completion_tokens"):
            if out.get(key) is not None:
                out[key] = min(int(out[key]), level.max_tokens)
        if out.get("max_tokens") is None and out.get("max_completion_tokens") is None:
            out["max_tokens"] = level.max_tokens
    return out
