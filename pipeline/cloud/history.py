"""Worst-case Step Functions history events of every execution of a campaign run (the parent and each kind of
Distributed Map child), computed from the generated ASL and what the campaign puts through it.

An execution's history is capped at 25,000 events (hard quota); at the cap it fails with no report ("Step
Functions service quotas", "Avoid reaching the history quota": reference/aws-quotas.md section 1). The
events each state adds are that reference's table (derived from API_HistoryEvent's event types):
Task 5 (6 for `.sync` and `.waitForTaskToken`, which add TaskSubmitted), every Retry attempt 3 more,
Pass/Wait/Choice/Succeed/Fail 2, Parallel 4 plus its branches, inline Map 4 plus 2 per item plus each item's
states, Distributed Map about 6 in the parent whatever its items (each item is a child execution with its own
history). Worst case: every Retry used up, every loop run to its bound, the longest branch of every Choice.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pipeline.cloud.contract import HISTORY_BUDGET

EXECUTION_EVENTS = 2  # ExecutionStarted, ExecutionSucceeded
DISTRIBUTED_MAP_EVENTS = 6  # MapStateEntered/Started, MapRunStarted/Succeeded, MapStateSucceeded/Exited
RETRY_EVENTS = 3  # TaskFailed, then TaskScheduled, TaskStarted
DEFAULT_MAX_ATTEMPTS = 3  # a Retrier without MaxAttempts (States Language)
PARENT = "parent"
ASL_PATH = Path(__file__).resolve().parents[2] / "state_machines" / "campaign.asl.json"

State = Mapping[str, Any]


class UnboundedLoop(ValueError):
    """A cycle in the ASL whose bound the caller did not give: no worst case exists."""


@dataclass(frozen=True)
class Load:
    """What one run puts through the ASL: the most items any run of each Map gets (by state name; a Map not
    named gets none) and the most times each loop's first state is entered (by state name)."""

    items: Mapping[str, int] = field(default_factory=dict)
    loops: Mapping[str, int] = field(default_factory=dict)


def state_events(state: State) -> int:
    """A Task's, Pass's, Wait's, Choice's, Succeed's or Fail's own events, its Retries used up."""
    if state["Type"] != "Task":
        return 2
    resource = str(state.get("Resource", ""))
    own = 6 if resource.endswith((".sync", ".waitForTaskToken")) else 5
    attempts = sum(int(r.get("MaxAttempts", DEFAULT_MAX_ATTEMPTS)) for r in state.get("Retry", ()))
    return own + RETRY_EVENTS * attempts


def _next_states(state: State) -> list[str]:
    out = [c["Next"] for c in state.get("Choices", ())] + [c["Next"] for c in state.get("Catch", ())]
    out += [state[k] for k in ("Next", "Default") if k in state]
    return list(dict.fromkeys(out))


def _loop_heads(machine: State) -> list[str]:
    """The states a depth-first walk from StartAt reaches again while still inside them (the targets of back
    edges): every cycle passes through one, so bounding their entries bounds every loop."""
    states, heads, on_path, seen = machine["States"], [], set(), set()

    def walk(name: str) -> None:
        seen.add(name)
        on_path.add(name)
        for nxt in _next_states(states[name]):
            if nxt in on_path:
                heads.append(nxt)
            elif nxt not in seen:
                walk(nxt)
        on_path.discard(name)

    walk(machine["StartAt"])
    return list(dict.fromkeys(heads))


def worst_case_events(asl: State, load: Load) -> dict[str, int]:
    """The most history events of each execution: `parent` (the execution that the manifest starts) and, per
    Distributed Map, one child execution (named by the Map's state name)."""
    children: dict[str, int] = {}
    parent = EXECUTION_EVENTS + _machine(asl, load, children)
    return {PARENT: parent, **children}


def _machine(machine: State, load: Load, children: dict[str, int]) -> int:
    """The longest path of a States block (its own history: inline Map items and Parallel branches included)."""
    states: Mapping[str, State] = machine["States"]
    heads = _loop_heads(machine)
    for head in heads:
        if head not in load.loops:
            raise UnboundedLoop(f"the loop entered at {head!r} has no bound in the load")
    limit = tuple(load.loops[h] for h in heads)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20_000))

    @cache
    def own(name: str) -> int:
        return state_events(states[name]) + _nested(name, states[name], load, children)

    @cache
    def longest(name: str, entries: tuple[int, ...]) -> int:
        if name in heads:
            i = heads.index(name)
            if entries[i] >= limit[i]:
                return -1  # this path enters the loop once more than it may: not a path
            entries = entries[:i] + (entries[i] + 1,) + entries[i + 1:]
        rest = [longest(n, entries) for n in _next_states(states[name])]
        if rest and max(rest) < 0 and not (states[name].get("End") or states[name]["Type"] in ("Succeed", "Fail")):
            return -1
        return own(name) + max([0, *rest])

    total = longest(machine["StartAt"], (0,) * len(heads))
    if total < 0:
        raise UnboundedLoop("no path through the states ends within the loop bounds")
    return total


def _nested(name: str, state: State, load: Load, children: dict[str, int]) -> int:
    """The events a Parallel's branches or a Map's items add to this state's execution."""
    if state["Type"] == "Parallel":
        return 2 + sum(_machine(b, load, children) for b in state["Branches"])  # 4 in all with state_events' 2
    if state["Type"] != "Map":
        return 0
    processor = state.get("ItemProcessor") or state["Iterator"]
    items = int(load.items.get(name, 0))
    if processor.get("ProcessorConfig", {}).get("Mode") == "DISTRIBUTED":
        if items:
            children[name] = max(children.get(name, 0), EXECUTION_EVENTS + _machine(processor, load, children))
        return DISTRIBUTED_MAP_EVENTS - 2
    inner = _machine(processor, load, children) if items else 0
    return 2 + items * (2 + inner)  # MapStateEntered/Started/Succeeded/Exited, MapIterationStarted/Succeeded


def load_asl(path: Path | None = None) -> dict[str, Any]:
    """The committed ASL (state_machines/campaign.asl.json); its `${...}` placeholders do not matter here."""
    return dict(json.loads((path or ASL_PATH).read_text(encoding="utf-8")))


# --- the campaign's load ----------------------------------------------------------------------------------------

# How a loop's first state is named in the ASL (state_machines/build.py) -> what bounds its entries.
_LOOPS: tuple[tuple[str, str], ...] = (
    (r"^Wait for .*Ray2 job", "max_polls"),
    (r"^Prepare .*clip batch", "render_attempts"),
    (r"^More image waves\?", "image_waves"),
    (r"^More waiting clip waves\?", "clip_waves"),
)


@dataclass(frozen=True)
class RunShape:
    """What bounds one run's executions: its stages' item counts (inline Maps only count in the parent), the
    waves, the largest clip batch and Ray2 batch, and the stack's loop bounds."""

    distributed: frozenset[str]
    enhance: int
    image_waves: tuple[int, ...]  # jobs per image wave
    clip_batches: int  # wave 0's clip batches
    clip_waves: tuple[int, ...]  # batches per later clip wave
    videos: int
    ray2_batch: int  # the largest Ray2 batch's clips
    max_polls: int
    render_attempts: int
    voices: int = 0  # utterances (the voice stage's jobs)

    def load(self, asl: State) -> Load:
        """The Load of this run over every state of `asl` (names matched as build.py writes them)."""
        bounds = {"max_polls": self.max_polls, "render_attempts": self.render_attempts,
                  "image_waves": len(self.image_waves) + 1, "clip_waves": len(self.clip_waves) + 1}
        inline = {
            "Enhance prompts": self.enhance, "Edit images": len(self.image_waves),
            "Edit image wave": max(self.image_waves, default=0), "Render clips": self.clip_batches,
            "Render clips that wait": len(self.clip_waves), "Render clip wave": max(self.clip_waves, default=0),
            "Speak voiceover": self.voices, "Assemble videos": self.videos,
        }
        stage_of = {"Enhance prompts": "enhance", "Edit images": "images", "Edit image wave": "images",
                    "Render clips": "clips", "Render clips that wait": "waiting_clips",
                    "Render clip wave": "waiting_clips", "Speak voiceover": "voices", "Assemble videos": "videos"}
        items: dict[str, int] = {}
        loops: dict[str, int] = {}
        for name, state in _all_states(asl):
            if state["Type"] == "Map":
                base = name.removesuffix(" (distributed)")
                if base in inline:
                    far = stage_of[base] in self.distributed
                    items[name] = (1 if inline[base] else 0) if name != base else (0 if far else inline[base])
                elif "Ray2 batch jobs" in name:  # only a distributed stage holds Ray2 batches (rundoc.py)
                    items[name] = self.ray2_batch if name.endswith(" (distributed)") else 0
            for pattern, bound in _LOOPS:
                if re.search(pattern, name):
                    loops[name] = bounds[bound]
        return Load(items=items, loops=loops)


def _all_states(machine: State) -> list[tuple[str, State]]:
    out: list[tuple[str, State]] = []
    for name, state in machine["States"].items():
        out.append((name, state))
        for sub in [*state.get("Branches", ()), *([state["ItemProcessor"]] if "ItemProcessor" in state else [])]:
            out += _all_states(sub)
    return out


def run_events(shape: RunShape, asl: State | None = None) -> dict[str, int]:
    """Worst-case events of every execution of a run of this shape (see worst_case_events)."""
    asl = asl if asl is not None else load_asl()
    return worst_case_events(asl, shape.load(asl))


def ray2_batch_limit(max_polls: int, *, asl: State | None = None, budget: int = HISTORY_BUDGET,
                     ceiling: int = 1000) -> int:
    """The most Ray2 clips one batch (one child execution) may hold so that the child stays within `budget`
    events when every clip polls `max_polls` times; 0 when not even one clip fits."""
    asl = asl if asl is not None else load_asl()

    def child(n: int) -> int:
        shape = RunShape(distributed=frozenset({"clips", "waiting_clips"}), enhance=0, image_waves=(),
                         clip_batches=1, clip_waves=(), videos=0, ray2_batch=n, max_polls=max_polls, render_attempts=1)
        events = run_events(shape, asl)
        return max(v for k, v in events.items() if k != PARENT)

    low, high = 0, ceiling
    while low < high:  # the largest n that fits (events grow with n)
        mid = (low + high + 1) // 2
        if child(mid) <= budget:
            low = mid
        else:
            high = mid - 1
    return low
