"""The demo's last stage: the gateway in front of a real LLM server.

SmolLM2-135M-Instruct on llama.cpp's OpenAI-compatible server (:mod:`aolo.llm_server`); the gateway
(:func:`aolo.runtime.gateway.create_app`) serving a trained policy bundle in front of it; a few
dozen prompts of mixed task classes sent through it with the class in ``X-Aolo-Task-Class``. The
report gets the directive mix the policy chose, the real output tokens per level, and the carbon
per request against the same prompts sent through a gateway whose policy always answers L0 (a
constant actor, BASE's level, at the same power rule).
"""

from __future__ import annotations

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

__all__ = ["DEMO_PROMPTS", "GatewayDemoResult", "constant_bundle", "gateway_stage", "gateway_demo_markdown",
           "run_gateway_demo"]

# (task class, prompt): four per class, in the style of the class's benchmark
DEMO_PROMPTS: tuple[tuple[str, str], ...] = (
    ("alpaca", "Give three tips for staying healthy."),
    ("alpaca", "Describe the water cycle."),
    ("alpaca", "Write a short note thanking a colleague for their help."),
    ("alpaca", "Explain why the sky is blue."),
    ("math", "What is 15% of 240?"),
    ("math", "A train travels 120 km in 1.5 hours. What is its average speed?"),
    ("math", "Solve for x: 3x + 7 = 22."),
    ("math", "How many minutes are there in a week?"),
    ("mmlu", "Which gas do plants absorb from the atmosphere for photosynthesis?"),
    ("mmlu", "What is the main function of red blood cells?"),
    ("mmlu", "Which organ in the human body produces insulin?"),
    ("mmlu", "What does GDP stand for in economics?"),
    ("naturalqa", "Who wrote the play Romeo and Juliet?"),
    ("naturalqa", "When did the first person walk on the moon?"),
    ("naturalqa", "What is the capital city of Australia?"),
    ("naturalqa", "Who painted the Mona Lisa?"),
    ("scienceqa", "Is a whale a fish or a mammal?"),
    ("scienceqa", "What state of matter is steam?"),
    ("scienceqa", "Which planet is closest to the Sun?"),
    ("scienceqa", "What force pulls objects toward the Earth?"),
    ("triviaqa", "What is the largest ocean on Earth?"),
    ("triviaqa", "How many legs does a spider have?"),
    ("triviaqa", "What is the chemical symbol for gold?"),
    ("triviaqa", "Which country is home to the kangaroo?"),
)


def constant_bundle(out_dir: Path, level_index: int, power_frac: float = 1.0, radio: str = "macro") -> Path:
    """A real policy bundle whose actor answers one level at one power whatever it observes:
    a zero-weight linear layer with a bias, then tanh (``a = tanh(b)``), mapped by
    :func:`aolo.runtime.policy_io.action_to_decision`.

    :param level_index: 0, 1 or 2
    :param power_frac: power as a fraction of [P_min, P_max]
    """
    from aolo.hw_profiles import RadioProfile, load_profile
    from aolo.runtime.actor_spec import ActorSpec, Linear, Tanh
    from aolo.runtime.bundle import ActionSpec, write_bundle
    from aolo.runtime.policy_io import OBS_DIM

    a0 = (level_index - 1) * (2.0 / 3.0) * 1.2  # inside the level's third of [-1, 1]
    a0 = float(np.clip(a0, -0.95, 0.95))
    a1 = float(np.clip(2.0 * power_frac - 1.0, -0.999, 0.999))
    spec = ActorSpec(kind="ann", obs_dim=OBS_DIM, act_dim=2,
                     nodes=[Linear(np.zeros((2, OBS_DIM), np.float32), np.arctanh([a0, a1]).astype(np.float32)),
                            Tanh()],
                     metadata={"algo": "constant", "level_index": level_index, "power_frac": power_frac})
    return write_bundle(out_dir, spec, {}, algo="constant",
                        action=ActionSpec.from_radio_profile(load_profile(radio, RadioProfile)),
                        op_counts={"layer0_macs": 2 * OBS_DIM}, overwrite=True)


@dataclass
class GatewayDemoResult:
    """What the stage measured; per prompt in the order of :data:`DEMO_PROMPTS`.

    :param policy: {"level", "output_tokens", "carbon_g", "kinds"} per prompt through the trained policy
    :param base: the same through the always-L0 gateway
    :param ledger_total_g: the policy gateway's ledger total, g (equals the sum of ``carbon_g``)
    :param wall_s: wall time of the stage, s
    """

    policy: list[dict[str, Any]]
    base: list[dict[str, Any]]
    ledger_total_g: float
    base_ledger_total_g: float
    wall_s: float
    model: str
    max_tokens: int


def _chat(url: str, model: str, task_class: str, prompt: str, max_tokens: int) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "temperature": 0,
            "max_tokens": max_tokens}
    req = urllib.request.Request(f"{url}/v1/chat/completions", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "X-Aolo-Task-Class": task_class})
    with urllib.request.urlopen(req, timeout=300) as r:
        answer = json.loads(r.read())
    a = answer["aolo"]
    return {"class": task_class, "level": a["level"], "output_tokens": a["output_tokens"], "carbon_g": a["carbon_g"],
            "kinds": {k: v["kind"] for k, v in a["breakdown"].items()},
            "text": answer["choices"][0]["message"]["content"]}


def run_gateway_demo(bundle: Path, out_dir: Path, backend: str = "onnx", max_tokens: int = 96,
                     n_prompts: int = len(DEMO_PROMPTS), log: Optional[Callable[[str], None]] = None) -> GatewayDemoResult:
    """Start SmolLM2 on llama.cpp, put a gateway serving ``bundle`` in front, send the demo prompts,
    then the same through an always-L0 gateway.

    :param bundle: the trained policy bundle
    :param out_dir: where the two ledgers go
    :param max_tokens: the clients' cap on each answer (keeps the stage short on 2 cores)
    :param n_prompts: how many prompts, taken round-robin over the classes
    :raises aolo.llm_server.LLMServerUnavailable: llama-cpp-python or the model is not installed
    """
    from aolo.runtime.gateway import GatewaySettings, create_app
    from aolo.runtime.gateway.serve import running

    from .llm_server import llama_server

    say = log or (lambda m: None)
    t0 = time.perf_counter()
    classes = sorted({c for c, _ in DEMO_PROMPTS})
    by_class = [[p for p in DEMO_PROMPTS if p[0] == c] for c in classes]
    prompts = [by_class[i % len(classes)][i // len(classes)] for i in range(min(n_prompts, len(DEMO_PROMPTS)))]
    out_dir.mkdir(parents=True, exist_ok=True)
    base_bundle = constant_bundle(out_dir / "bundle_always_l0", level_index=0, power_frac=1.0)
    results: dict[str, list[dict[str, Any]]] = {}
    totals: dict[str, float] = {}
    with llama_server() as llm:
        say(f"llama.cpp server on {llm.url} ({llm.model})")
        for name, path, be in (("policy", bundle, backend), ("base", base_bundle, "reference")):
            ledger = out_dir / f"gateway_{name}.db"
            for p in ledger.parent.glob(ledger.name + "*"):
                p.unlink()
            settings = GatewaySettings(bundle=path, backend=be, ledger=ledger, port=0, upstream_url=llm.url)
            app = create_app(settings)
            with running(app, settings) as port:
                url = f"http://127.0.0.1:{port}"
                with ThreadPoolExecutor(2) as pool:  # llama.cpp answers one at a time; two keep it busy
                    results[name] = list(pool.map(lambda cp: _chat(url, llm.model, cp[0], cp[1], max_tokens),
                                                  prompts))
                with urllib.request.urlopen(f"{url}/v1/carbon", timeout=30) as r:
                    totals[name] = json.loads(r.read())["total_g"]
            say(f"{name}: {len(results[name])} answers, ledger total {totals[name]:.5f} g")
    return GatewayDemoResult(policy=results["policy"], base=results["base"], ledger_total_g=totals["policy"],
                             base_ledger_total_g=totals["base"], wall_s=time.perf_counter() - t0, model=llm.model,
                             max_tokens=max_tokens)


def gateway_demo_markdown(r: GatewayDemoResult) -> list[str]:
    """The report's paragraphs and tables for the stage."""
    from aolo.runtime.policy_io import LEVELS

    n = len(r.policy)
    by_level = {lv: [p for p in r.policy if p["level"] == lv] for lv in LEVELS}
    kinds = r.policy[0]["kinds"]
    label = " + ".join(sorted(set(kinds.values())))  # e.g. "estimated + modelled": every figure says what it is
    mix = [f"| level | requests | share | mean output tokens | mean carbon g/request ({label}) |", "|---|---|---|---|---|"]
    for lv, rows in by_level.items():
        if rows:
            mix.append(f"| {lv} | {len(rows)} | {100 * len(rows) / n:.0f}% | "
                       f"{np.mean([p['output_tokens'] for p in rows]):.1f} | "
                       f"{np.mean([p['carbon_g'] for p in rows]):.5f} |")
    base_tokens = np.mean([p["output_tokens"] for p in r.base])
    mix.append(f"| L0 for all (BASE) | {n} | - | {base_tokens:.1f} | {np.mean([p['carbon_g'] for p in r.base]):.5f} |")
    pol_g, base_g = sum(p["carbon_g"] for p in r.policy), sum(p["carbon_g"] for p in r.base)
    classes = sorted({p["class"] for p in r.policy})
    per_class = ["| class | levels chosen | output tokens (policy) | output tokens (L0) | carbon g (policy, "
                 f"{label}) | carbon g (L0, {label}) |", "|---|---|---|---|---|---|"]
    for c in classes:
        pp = [p for p in r.policy if p["class"] == c]
        bb = [p for p in r.base if p["class"] == c]
        per_class.append(f"| {c} | {', '.join(p['level'] for p in pp)} | {np.mean([p['output_tokens'] for p in pp]):.1f} | "
                         f"{np.mean([p['output_tokens'] for p in bb]):.1f} | {np.mean([p['carbon_g'] for p in pp]):.5f} | "
                         f"{np.mean([p['carbon_g'] for p in bb]):.5f} |")
    return [
        f"{n} prompts of six task classes sent through `aolo serve --upstream` in front of a real "
        f"{r.model} (llama.cpp's OpenAI-compatible server, one thread, temperature 0, clients' max_tokens "
        f"{r.max_tokens}), the class in `X-Aolo-Task-Class`; then the same prompts through a gateway whose "
        f"policy always answers L0. Output tokens are the upstream's counts; carbon is priced by the "
        f"default server profile by tokens (so it is the carbon of the profiled Llama-2-13B server answering "
        f"this many tokens, not of SmolLM2 on this CPU). Parts: "
        + ", ".join(f"{k} {v}" for k, v in kinds.items()) + f". Stage wall time {r.wall_s:.0f} s.",
        "\n".join(mix),
        f"Total over the {n} requests ({label}): policy {pol_g:.5f} g against {base_g:.5f} g at L0 "
        f"({100 * (1 - pol_g / base_g):.1f}% less); the gateway's ledger holds {r.ledger_total_g:.5f} g "
        f"(the sum returned to clients: {pol_g:.5f} g).",
        "\n".join(per_class),
    ]


def gateway_stage(report: Any, bundle: Path, out_dir: Path, console: Any, n_prompts: int = len(DEMO_PROMPTS),
                  max_tokens: int = 96) -> float:
    """The pipeline's gateway stage: run it, print and add its section to ``report``; returns its
    wall time, s.

    :param n_prompts: how many of :data:`DEMO_PROMPTS` (taken round-robin over the classes)
    """
    result = run_gateway_demo(bundle, out_dir / "gateway", max_tokens=max_tokens, n_prompts=n_prompts,
                              log=lambda m: console.print(f"[dim]{m}[/dim]"))
    parts = gateway_demo_markdown(result)
    for part in parts:
        console.print(part, markup=False, highlight=False)
    report.add("The gateway in front of a real LLM", *parts)
    return result.wall_s
