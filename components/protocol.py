"""The lines steps print for later steps to read, defined and parsed in one place. Pure.

Each is one line of space-separated `key=value` fields, optionally after a
leading word:

    action=switch | action=in-sync                            preflight.sh -> drain (drain.sh drain)
    was_unschedulable=true|false|unchanged                    drain -> uncordon (drain.sh uncordon)
    prestaged runtime=R version=V images=N image_bytes=B image_seconds=S   prestage.sh
    switched runtime=R docker_stopped_ms=N kubelet_up_ms=N window_ms=N
    in-sync runtime=R                                         switch.sh -> verify.py, stack outputs
    failed step=S rolled_back=yes|incomplete|not-needed       switch.sh (the step then fails)
    rolled_back=yes|incomplete                                rollback.sh

The shell scripts print them with printf; tests/test_protocol.py checks those
formats against the parsers here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

PREFLIGHT_ACTIONS = ("switch", "in-sync")
UNSCHEDULABLE_STATES = ("true", "false", "unchanged")
ROLLBACK_OUTCOMES = ("yes", "incomplete", "not-needed")


class ProtocolError(ValueError):
    """A step's output holds no line of the expected kind, or a malformed one."""


def _fields(line: str) -> tuple[str, dict[str, str]]:
    """("switched", {"runtime": "containerd", ...}) from one protocol line;
    the leading word is "" when the line starts with a field."""
    words = line.split()
    head = words[0] if words and "=" not in words[0] else ""
    fields: dict[str, str] = {}
    for word in words[1:] if head else words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise ProtocolError(f"not a key=value field: {word!r} in {line!r}")
        fields[key] = value
    return head, fields


def _last_line(output: str, starts: Callable[[str], bool]) -> str | None:
    """The last line of `output` whose first word satisfies `starts`, or None."""
    for line in reversed(output.split("\n")):
        words = line.split()
        if words and starts(words[0]):
            return line.strip()
    return None


def _field_line(output: str, key: str, step: str) -> tuple[str, dict[str, str]]:
    """The last line starting with `key=`, and its fields."""
    line = _last_line(output, lambda word: word.startswith(f"{key}="))
    if line is None:
        raise ProtocolError(f"{step} printed no {key}= line")
    return line, _fields(line)[1]


def _choice(fields: dict[str, str], key: str, allowed: tuple[str, ...], line: str) -> str:
    value = fields.get(key, "")
    if value not in allowed:
        raise ProtocolError(f"{key}={value!r} in {line!r}: expected one of {', '.join(allowed)}")
    return value


def _milliseconds(fields: dict[str, str], key: str, line: str) -> int:
    value = fields.get(key, "")
    if not value.isascii() or not value.isdigit():
        raise ProtocolError(f"{key}={value!r} in {line!r}: expected milliseconds")
    return int(value)


# --- preflight ---------------------------------------------------------------


def format_preflight(action: str) -> str:
    return f"action={action}"


def parse_preflight(output: str) -> str:
    """"switch" or "in-sync": what preflight decided the node needs."""
    line, fields = _field_line(output, "action", "preflight")
    return _choice(fields, "action", PREFLIGHT_ACTIONS, line)


# --- drain -------------------------------------------------------------------


def format_drain(was_unschedulable: str) -> str:
    return f"was_unschedulable={was_unschedulable}"


def parse_drain(output: str) -> str:
    """"true", "false" (the node's spec.unschedulable before the drain) or
    "unchanged" (not cordoned: the node was already on its target)."""
    line, fields = _field_line(output, "was_unschedulable", "the drain")
    return _choice(fields, "was_unschedulable", UNSCHEDULABLE_STATES, line)


# --- prestage ----------------------------------------------------------------


@dataclass(frozen=True)
class Prestaged:
    runtime: str
    version: str
    images: int = 0  # Docker images carried into the target's store by this run
    image_bytes: int = 0
    image_seconds: int = 0

    def __str__(self) -> str:
        return (f"prestaged runtime={self.runtime} version={self.version} images={self.images} "
                f"image_bytes={self.image_bytes} image_seconds={self.image_seconds}")


def parse_prestage(output: str) -> Prestaged:
    line = _last_line(output, lambda word: word == "prestaged")
    if line is None:
        raise ProtocolError("prestage printed no prestaged line")
    fields = _fields(line)[1]
    numbers = {}
    for key in ("images", "image_bytes", "image_seconds"):
        try:
            numbers[key] = int(fields.get(key, "0"))
        except ValueError as exc:
            raise ProtocolError(f"prestage line has a non-numeric {key}: {line!r}") from exc
    return Prestaged(fields.get("runtime", ""), fields.get("version", ""), **numbers)


# --- switch and rollback -----------------------------------------------------


@dataclass(frozen=True)
class SwitchResult:
    """What switch.sh reported last: "switched", "in-sync" or "failed"."""

    outcome: str
    runtime: str = ""
    docker_stopped_ms: int = 0  # switched: when the kubelet and Docker's containers stopped
    kubelet_up_ms: int = 0  # switched: when the kubelet was up on the new runtime
    window_ms: int = 0  # switched: the time between the two
    step: str = ""  # failed: the step that failed
    rolled_back: str = ""  # failed: yes | incomplete | not-needed (nothing had changed)

    @property
    def switched(self) -> bool:
        """This run moved the node: verify rolls it back if the API never sees it healthy."""
        return self.outcome == "switched"

    def __str__(self) -> str:
        if self.outcome == "switched":
            return (f"switched runtime={self.runtime} docker_stopped_ms={self.docker_stopped_ms} "
                    f"kubelet_up_ms={self.kubelet_up_ms} window_ms={self.window_ms}")
        if self.outcome == "in-sync":
            return f"in-sync runtime={self.runtime}"
        return f"failed step={self.step} rolled_back={self.rolled_back}"


def parse_switch(output: str) -> SwitchResult | None:
    """The switch's last result line; None when it printed none."""
    line = _last_line(output, lambda word: word in ("switched", "in-sync", "failed"))
    if line is None:
        return None
    outcome, fields = _fields(line)
    if outcome == "switched":
        stopped, up = (_milliseconds(fields, key, line) for key in ("docker_stopped_ms", "kubelet_up_ms"))
        return SwitchResult(outcome, fields.get("runtime", ""), stopped, up,
                            _milliseconds(fields, "window_ms", line))
    if outcome == "failed":
        return SwitchResult(outcome, step=fields.get("step", ""),
                            rolled_back=_choice(fields, "rolled_back", ROLLBACK_OUTCOMES, line))
    return SwitchResult(outcome, fields.get("runtime", ""))


def parse_rollback(output: str) -> str:
    """"yes" or "incomplete": whether rollback.sh restored the previous runtime."""
    line, fields = _field_line(output, "rolled_back", "the rollback")
    return _choice(fields, "rolled_back", ROLLBACK_OUTCOMES, line)
