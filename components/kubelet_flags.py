"""Point the kubelet at a CRI runtime: rewrite kubeadm's kubeadm-flags.env and make
minimal edits to the KubeletConfiguration (/var/lib/kubelet/config.yaml).

Pure and idempotent: rewriting an already rewritten file changes nothing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

from components.config import YamlError, load_yaml_documents

KUBEADM_FLAGS_VAR = "KUBELET_KUBEADM_ARGS"

# Flags that only ever meant something to dockershim (kubelet <= 1.23 marks them
# "docker-specific"; 1.24 removed them, so a 1.24+ kubelet refuses to start with them).
DOCKERSHIM_FLAGS = (
    "docker-endpoint",
    "image-pull-progress-deadline",
    "network-plugin",
    "network-plugin-mtu",
    "cni-bin-dir",
    "cni-conf-dir",
    "cni-cache-dir",
    "experimental-dockershim-root-directory",
)
# Docker-only up to 1.23, deprecated afterwards; the runtime config carries the pause image.
POD_INFRA_FLAG = "pod-infra-container-image"

_WHY_REMOVED = {
    "network-plugin": "dockershim-only (removed in 1.24); the runtime's CNI config takes over",
    "network-plugin-mtu": "dockershim-only (removed in 1.24); set the MTU in the CNI config",
    "cni-bin-dir": "dockershim-only (removed in 1.24); the runtime config carries the CNI bin dir",
    "cni-conf-dir": "dockershim-only (removed in 1.24); the runtime config carries the CNI conf dir",
    "cni-cache-dir": "dockershim-only (removed in 1.24)",
    "docker-endpoint": "dockershim-only (removed in 1.24)",
    "image-pull-progress-deadline": "dockershim-only (removed in 1.24)",
    "experimental-dockershim-root-directory": "dockershim-only (removed in 1.24)",
    POD_INFRA_FLAG: "the pause image now comes from the runtime config (containerd "
    "sandbox_image / pinned_images.sandbox, CRI-O pause_image)",
    "container-runtime": "removed in kubelet 1.27 (remote is the only runtime)",
    "container-runtime-endpoint": "the endpoint lives in the KubeletConfiguration "
    "(containerRuntimeEndpoint)",
    "image-service-endpoint": "pointed at Docker's socket; images are served by the CRI runtime",
}

_KUBELET_VERSION_RE = re.compile(
    r"^(?:Kubernetes\s+)?v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+][0-9A-Za-z.+-]*)?$"
)
_ARGS_LINE_RE = re.compile(rf"^(\s*(?:export\s+)?{KUBEADM_FLAGS_VAR}=)(.*?)\s*$")
_TOP_LEVEL_KEY_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:(?:\s|$)")

Version = tuple[int, int, int]


def parse_kubelet_version(text: str) -> Version:
    """ "v1.23.17", "Kubernetes v1.23.17" (kubelet --version) or "1.23" -> (1, 23, 17)."""
    if not isinstance(text, str):
        raise ValueError(f"kubelet version must be a string, not {type(text).__name__}")
    match = _KUBELET_VERSION_RE.match(text.strip())
    if not match:
        raise ValueError(
            f"{text!r} is not a kubelet version (expected e.g. v1.23.17, 1.23 or "
            "'Kubernetes v1.23.17')"
        )
    major, minor, patch = match.groups()
    if int(major) != 1:
        raise ValueError(f"{text!r}: only Kubernetes 1.x is supported")
    return int(major), int(minor), int(patch or 0)


def _version(value: str | Version) -> Version:
    if isinstance(value, tuple):
        return value
    return parse_kubelet_version(value)


# --- kubeadm-flags.env -------------------------------------------------------


@dataclass(frozen=True)
class _Flag:
    name: str | None  # None for a stray token that is not a flag
    value: str | None
    tokens: tuple[str, ...]  # as written, so untouched flags keep their form

    @property
    def normalized(self) -> str:
        if self.name is None:
            return " ".join(self.tokens)
        return f"--{self.name}" if self.value is None else f"--{self.name}={self.value}"


def _parse_args(args: str) -> list[_Flag]:
    """Split kubelet arguments; "--flag value" and "--flag=value" both parse."""
    # Split as systemd splits $KUBELET_KUBEADM_ARGS: on ASCII whitespace only,
    # so a value holding \u2028 or \x85 stays one word.
    tokens = [token for token in re.split(r"[ \t\n\r]+", args) if token]
    flags: list[_Flag] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("-") and len(token) > 1:
            body = token.lstrip("-")
            if "=" in body:
                name, value = body.split("=", 1)
                flags.append(_Flag(name, value, (token,)))
            elif i + 1 < len(tokens) and not tokens[i + 1].startswith("-"):
                # The kubelet takes no positional arguments: a bare word is this flag's value.
                flags.append(_Flag(body, tokens[i + 1], (token, tokens[i + 1])))
                i += 1
            else:
                flags.append(_Flag(body, None, (token,)))
        else:
            flags.append(_Flag(None, None, (token,)))
        i += 1
    return flags


def _env_lines(text: str) -> list[str]:
    """Lines as the shell and systemd read an env file: split on "\\n" only
    (not on \\x85 or \\u2028 as str.splitlines would), endings kept."""
    return re.findall(r"[^\n]*\n|[^\n]+\Z", text)


def _split_quoted(raw: str) -> tuple[str, str]:
    """The value of an env-file assignment and its quote character ("" when unquoted)."""
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        if len(raw) < 2 or raw[-1] != quote:
            raise ValueError(f"{KUBEADM_FLAGS_VAR} has an unterminated {quote} quote")
        return raw[1:-1], quote
    return raw, ""


@dataclass(frozen=True)
class FlagsRewrite:
    text: str
    added: tuple[str, ...]
    removed: tuple[str, ...]
    notes: tuple[str, ...] = ()  # why each removed flag went


class _Edit:
    def __init__(self, flags: list[_Flag]) -> None:
        self.flags = flags
        self.added: list[str] = []
        self.removed: list[str] = []
        self.notes: list[str] = []

    def _note(self, name: str) -> None:
        if name not in _WHY_REMOVED:
            return
        note = f"--{name}: {_WHY_REMOVED[name]}"
        if note not in self.notes:
            self.notes.append(note)

    def remove(self, name: str, *, only_if=lambda flag: True) -> None:
        kept = []
        for flag in self.flags:
            if flag.name == name and only_if(flag):
                self.removed.append(flag.normalized)
                self._note(name)
            else:
                kept.append(flag)
        self.flags = kept

    def set(self, name: str, value: str) -> None:
        """Exactly one --name=value, in the first occurrence's place or appended."""
        wanted = _Flag(name, value, (f"--{name}={value}",))
        result: list[_Flag] = []
        placed = False
        for flag in self.flags:
            if flag.name != name:
                result.append(flag)
            elif not placed and flag.value == value:
                result.append(flag)
                placed = True
            else:
                self.removed.append(flag.normalized)
                if not placed:
                    result.append(wanted)
                    self.added.append(wanted.normalized)
                    placed = True
        if not placed:
            result.append(wanted)
            self.added.append(wanted.normalized)
        self.flags = result

    def text(self) -> str:
        return " ".join(token for flag in self.flags for token in flag.tokens)


def _points_at_docker(flag: _Flag) -> bool:
    return flag.value is not None and ("dockershim.sock" in flag.value or "docker.sock" in flag.value)


def _rewrite_args(args: str, version: Version, cri_endpoint: str, endpoint_in_config: bool) -> _Edit:
    edit = _Edit(_parse_args(args))
    for name in DOCKERSHIM_FLAGS + (POD_INFRA_FLAG,):
        edit.remove(name)
    edit.remove("image-service-endpoint", only_if=_points_at_docker)
    if version[:2] <= (1, 26):
        edit.set("container-runtime", "remote")
    else:
        edit.remove("container-runtime")
    if endpoint_in_config:
        edit.remove("container-runtime-endpoint")
    else:
        edit.set("container-runtime-endpoint", cri_endpoint)
    return edit


def rewrite_kubeadm_flags(
    old_text: str, kubelet_version: str, cri_endpoint: str, *, endpoint_in_config: bool
) -> FlagsRewrite:
    """Drop dockershim flags from kubeadm-flags.env and point the kubelet at `cri_endpoint`.

    Only the KUBELET_KUBEADM_ARGS assignment changes; every other line, the order
    of unrelated flags and the quoting style stay as they were.
    """
    version = _version(kubelet_version)
    if not cri_endpoint or any(c.isspace() for c in cri_endpoint) or "'" in cri_endpoint or '"' in cri_endpoint:
        raise ValueError(f"CRI endpoint {cri_endpoint!r} must be a non-empty word without quotes")
    lines = _env_lines(old_text)
    added: list[str] = []
    removed: list[str] = []
    notes: list[str] = []
    found = False
    for index, line in enumerate(lines):
        body = line.rstrip("\r\n")
        match = _ARGS_LINE_RE.match(body)
        if not match:
            continue
        found = True
        args, quote = _split_quoted(match.group(2))
        edit = _rewrite_args(args, version, cri_endpoint, endpoint_in_config)
        lines[index] = f"{match.group(1)}{quote}{edit.text()}{quote}" + line[len(body):]
        for source, target in ((edit.added, added), (edit.removed, removed), (edit.notes, notes)):
            target.extend(item for item in source if item not in target)
    if not found:
        edit = _rewrite_args("", version, cri_endpoint, endpoint_in_config)
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(f'{KUBEADM_FLAGS_VAR}="{edit.text()}"\n')
        added, removed, notes = edit.added, edit.removed, edit.notes
    return FlagsRewrite("".join(lines), tuple(added), tuple(removed), tuple(notes))


def _all_flags(text: str) -> list[_Flag]:
    """Every flag in a kubeadm-flags.env, /etc/default/kubelet or a kubelet command line."""
    flags: list[_Flag] = []
    for line in _env_lines(text):
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        assignment = re.match(r"^(?:export\s+)?[A-Za-z_][A-Za-z0-9_]*=(.*)$", stripped)
        if assignment:
            stripped = _split_quoted(assignment.group(1).strip())[0] if assignment.group(1).strip() else ""
        flags.extend(_parse_args(stripped))
    return flags


def kubeadm_flag_value(text: str, name: str) -> str | None:
    """The value the kubelet would see for --name (the last one wins), or None."""
    value = None
    for flag in _all_flags(text):
        if flag.name == name:
            value = flag.value
    return value


def dockershim_in_use(flags_text: str, kubelet_version: str | Version) -> bool:
    """True when this kubelet talks to Docker through dockershim (<= 1.23, not remote)."""
    if _version(kubelet_version)[:2] > (1, 23):
        return False
    return kubeadm_flag_value(flags_text, "container-runtime") != "remote"


# --- KubeletConfiguration ----------------------------------------------------


def _load_config(config_text: str) -> dict:
    try:
        documents = [doc for doc in load_yaml_documents(config_text) if doc is not None]
    except YamlError as err:
        raise ValueError(f"kubelet config: {err}") from None
    if len(documents) > 1:
        raise ValueError("kubelet config holds more than one YAML document")
    config = documents[0] if documents else {}
    if not isinstance(config, dict):
        raise ValueError("kubelet config must be a YAML mapping (a KubeletConfiguration)")
    return config


def kubelet_config_value(text: str, key: str):
    """A top-level value of the KubeletConfiguration, or None when absent."""
    return _load_config(text).get(key)


def kubelet_cgroup_driver(config_text: str) -> str:
    """The kubelet's effective cgroup driver (the kubelet's default is cgroupfs)."""
    driver = kubelet_config_value(config_text, "cgroupDriver")
    if driver is None or driver == "":
        return "cgroupfs"
    if driver not in ("systemd", "cgroupfs"):
        raise ValueError(f"kubelet cgroupDriver must be systemd or cgroupfs, not {driver!r}")
    return driver


def endpoint_belongs_in_config(kubelet_version: str | Version, config_text: str) -> bool:
    """From 1.27 (or once the config already has it) the endpoint lives in the config."""
    if _version(kubelet_version)[:2] >= (1, 27):
        return True
    return kubelet_config_value(config_text, "containerRuntimeEndpoint") is not None


def rewrite_instance_config(instance_text: str, cri_endpoint: str) -> str | None:
    """kubeadm's instance-config.yaml with its containerRuntimeEndpoint pointed
    at `cri_endpoint`; None when it carries none (then it is not shimless' file)."""
    if kubelet_config_value(instance_text, "containerRuntimeEndpoint") is None:
        return None
    return rewrite_kubelet_config(instance_text, cri_endpoint=cri_endpoint, settings={})


def _yaml_line(key: str, value) -> str:
    return yaml.safe_dump({key: value}, default_flow_style=False, sort_keys=False)


def rewrite_kubelet_config(config_text: str, *, cri_endpoint: str | None, settings: dict) -> str:
    """Line-level edit of top-level keys, keeping comments and order.

    containerRuntimeEndpoint is set (replaced or appended) when `cri_endpoint` is
    given; each of `settings` is added only when the key is absent, because a
    value the kubelet already has explicitly wins.
    """
    config = _load_config(config_text)
    if config_text.lstrip().startswith("{"):
        raise ValueError("kubelet config in JSON/flow style is not supported; expected block YAML")
    lines = config_text.splitlines(keepends=True)
    positions: dict[str, int] = {}
    for index, line in enumerate(lines):
        match = _TOP_LEVEL_KEY_RE.match(line)
        if match:
            positions.setdefault(match.group(1), index)

    appended: list[str] = []
    wanted: dict = {}
    if cri_endpoint is not None:
        wanted["containerRuntimeEndpoint"] = cri_endpoint
        if config.get("containerRuntimeEndpoint") != cri_endpoint:
            line = _yaml_line("containerRuntimeEndpoint", cri_endpoint)
            if "containerRuntimeEndpoint" in positions:
                index = positions["containerRuntimeEndpoint"]
                ending = lines[index][len(lines[index].rstrip("\r\n")):] or "\n"
                lines[index] = line.rstrip("\n") + ending
            else:
                appended.append(line)
    for key in sorted(settings):
        if key in config:
            continue
        wanted[key] = settings[key]
        appended.append(_yaml_line(key, settings[key]))

    if appended:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.extend(appended)
    result = "".join(lines)
    # The edit is line-based: prove it did what was meant before anyone writes it.
    check = _load_config(result)
    for key, value in wanted.items():
        if check.get(key) != value:
            raise ValueError(f"could not set {key} in the kubelet config by a line edit")
    return result
