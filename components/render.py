"""Render the files a node needs for its new CRI runtime (containerd or CRI-O).

Pure and deterministic: `render_runtime_files` returns {node path: content};
writing them to a node is the components' job.
"""
from __future__ import annotations

import re

from components.daemon_json import (
    CONTAINERD_CERTS_DIR,
    CONTAINERD_CONFIG,
    CRIO_DROP_IN,
    CRIO_REGISTRIES_DROP_IN,
    PROXY_DROP_INS,
    PROXY_ENV_NAMES,
    RUNC_SHIM,
    DaemonTranslation,
    OciRuntime,
)
from components.model import (
    RUNTIMES, RegistryMirror, RuntimeTarget, check_mirror_endpoint, check_registry_host,
)

CRICTL_CONFIG = "/etc/crictl.yaml"
MANAGED_HEADER = "# Managed by shimless; local edits are overwritten."

# containerd 1.5 introduced registry config_path (hosts.toml), which everything here relies on.
_OLDEST_CONTAINERD = (1, 5, 0)
# containerd 2.1 replaced cni bin_dir with the list bin_dirs.
_CNI_BIN_DIRS_SINCE = (2, 1, 0)
# containerd 2.3 reads config version 4 natively (the server's own settings
# moved into plugins); it would migrate a version 3 file at every start.
_CONFIG_V4_SINCE = (2, 3, 0)

_VERSION_RE = re.compile(r"(?<![\w.])v?(\d+)\.(\d+)(?:\.(\d+))?(?![\d])")
_BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


# --- versions ----------------------------------------------------------------


def parse_version(text: str) -> tuple[int, int, int]:
    """First "X.Y[.Z]" in text: "1.6.20", "v2.0.4", "1.6.20~ds1-1+deb12u1" -> (1, 6, 20)."""
    match = _VERSION_RE.search(text or "")
    if not match:
        raise ValueError(f"no version number (like 1.7.24) in {text!r}")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def containerd_config_version(containerd_version: str) -> int:
    """Config schema this containerd reads natively: 2 for 1.x, 3 for 2.0-2.2,
    4 from 2.3 ("" = unknown, assume 1.x)."""
    if not containerd_version.strip():
        return 2
    if not re.fullmatch(r"[0-9A-Za-z.~+:-]+", containerd_version.strip()):
        # It is shown in the rendered file's header: one word, or not a version.
        raise ValueError(f"{containerd_version!r} is not a containerd version (like 1.7.24)")
    version = parse_version(containerd_version)
    if version < _OLDEST_CONTAINERD:
        raise ValueError(
            f"containerd {containerd_version} is too old: registry config_path "
            "(certs.d/hosts.toml) needs containerd 1.5 or newer"
        )
    if version >= _CONFIG_V4_SINCE:
        return 4
    return 3 if version[0] >= 2 else 2


# --- quoting -----------------------------------------------------------------


def toml_string(value: str) -> str:
    """A TOML basic string with everything that needs escaping escaped."""
    out = []
    for char in value:
        code = ord(char)
        if char == "\\":
            out.append("\\\\")
        elif char == '"':
            out.append('\\"')
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot render {type(value).__name__} as TOML")


def toml_key(key: str) -> str:
    return key if _BARE_KEY_RE.match(key) else toml_string(key)


def _table(path: tuple[str, ...], entries: list[tuple[str, object]], *, array: bool = False) -> str:
    name = ".".join(toml_key(part) for part in path)
    header = f"[[{name}]]" if array else f"[{name}]"
    lines = [header] + [f"  {toml_key(key)} = {toml_value(value)}" for key, value in entries]
    return "\n".join(lines) + "\n"


def _systemd_env_value(name: str, value: str) -> str:
    """One Environment= assignment, quoted for systemd (and % escaped from specifiers)."""
    if "\n" in value or "\r" in value:
        raise ValueError(f"{name} must not contain a newline")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'Environment="{name}={escaped}"'


# --- registries --------------------------------------------------------------


def _check_registry(registry: str) -> str:
    try:
        return check_registry_host(registry)
    except ValueError as exc:
        raise ValueError(f"registry {exc}") from None


def _check_endpoint(endpoint: str) -> str:
    try:
        return check_mirror_endpoint(endpoint.strip())
    except ValueError as exc:
        raise ValueError(f"mirror endpoint {exc}") from None


def merged_registries(
    target: RuntimeTarget, translation: DaemonTranslation | None
) -> tuple[dict[str, tuple[str, ...]], tuple[str, ...]]:
    """Mirrors per registry (the target's endpoints first, no duplicates) and insecure hosts."""
    mirrors: dict[str, list[str]] = {}
    sources: list[RegistryMirror] = list(target.registry_mirrors)
    insecure = set(target.insecure_registries)
    if translation is not None:
        sources += list(translation.registry_mirrors)
        insecure |= set(translation.insecure_registries)
    for mirror in sources:
        endpoints = mirrors.setdefault(_check_registry(mirror.registry), [])
        for endpoint in mirror.endpoints:
            endpoint = _check_endpoint(endpoint)
            if endpoint not in endpoints:
                endpoints.append(endpoint)
    for registry in insecure:
        _check_registry(registry)
    merged = {registry: tuple(mirrors[registry]) for registry in sorted(mirrors) if mirrors[registry]}
    return merged, tuple(sorted(insecure))


def _upstream(registry: str) -> str:
    return "https://registry-1.docker.io" if registry == "docker.io" else f"https://{registry}"


def render_hosts_toml(registry: str, endpoints: tuple[str, ...], insecure: bool) -> str:
    """containerd's certs.d/<registry>/hosts.toml: mirrors tried in order, then upstream."""
    server = _upstream(registry)
    if insecure and registry != "docker.io":
        server = f"http://{registry}"
    parts = [MANAGED_HEADER + "\n" + f"server = {toml_string(server)}\n"]
    for endpoint in endpoints:
        parts.append(_table(("host", endpoint), [("capabilities", ["pull", "resolve"])]))
    if insecure:
        parts.append(
            _table(
                ("host", f"http://{registry}"),
                [("capabilities", ["pull", "resolve", "push"]), ("skip_verify", True)],
            )
        )
    return "\n".join(parts)


def render_crio_registries(mirrors: dict[str, tuple[str, ...]], insecure: tuple[str, ...]) -> str:
    """registries.conf.d drop-in (v2 format); mirror locations carry no scheme."""
    parts = [MANAGED_HEADER + "\n"]
    for registry in sorted(set(mirrors) | set(insecure)):
        parts.append(
            _table(
                ("registry",),
                [("prefix", registry), ("location", registry), ("insecure", registry in insecure)],
                array=True,
            )
        )
        for endpoint in mirrors.get(registry, ()):
            scheme, _, location = endpoint.partition("://")
            parts.append(
                _table(
                    ("registry", "mirror"),
                    [("location", location), ("insecure", scheme == "http")],
                    array=True,
                )
            )
    return "\n".join(parts)


# --- per-runtime files -------------------------------------------------------


def render_crictl_yaml(cri_endpoint: str) -> str:
    return (
        MANAGED_HEADER + "\n"
        f"runtime-endpoint: {cri_endpoint}\n"
        f"image-endpoint: {cri_endpoint}\n"
        "timeout: 10\n"
        "debug: false\n"
    )


def render_proxy_drop_in(proxies: dict) -> str:
    lines = [MANAGED_HEADER, "[Service]"]
    for name in sorted(proxies):
        env = PROXY_ENV_NAMES[name]
        lines.append(_systemd_env_value(env, proxies[name]))
    return "\n".join(lines) + "\n"


def _runc_handler(containerd: tuple[str, ...], name: str, systemd: bool, binary: str = "") -> list[str]:
    """A runtime handler run by containerd's runc shim: runc itself, or another
    runc-compatible binary (BinaryName), with the cgroup driver runc has."""
    options: list[tuple[str, object]] = [("BinaryName", binary)] if binary else []
    return [
        _table(containerd + ("runtimes", name), [("runtime_type", RUNC_SHIM)]),
        _table(containerd + ("runtimes", name, "options"), options + [("SystemdCgroup", systemd)]),
    ]


def _containerd_handlers(containerd: tuple[str, ...], systemd: bool, runtimes: tuple[OciRuntime, ...],
                         default_runtime: str | None) -> list[str]:
    parts = [_table(containerd, [("default_runtime_name", default_runtime)])] if default_runtime else []
    parts += _runc_handler(containerd, "runc", systemd)
    for runtime in runtimes:
        parts += _runc_handler(containerd, runtime.name, systemd, runtime.binary)
    return parts


def render_containerd_config(
    target: RuntimeTarget, *, containerd_version: str, cgroup_driver: str, root: str | None,
    runtimes: tuple[OciRuntime, ...] = (), default_runtime: str | None = None,
    max_concurrent_downloads: int | None = None,
) -> str:
    config_version = containerd_config_version(containerd_version)
    shown = containerd_version.strip() or "1.x (version unknown)"
    systemd = cgroup_driver == "systemd"
    downloads: list[tuple[str, object]] = (
        [("max_concurrent_downloads", max_concurrent_downloads)] if max_concurrent_downloads else [])
    head = [
        f"# Managed by shimless; rendered for containerd {shown} (config version {config_version})",
        f"version = {config_version}",
    ]
    if root:
        head.append(f"root = {toml_string(root)}")
    # Docker's containerd.io package ships disabled_plugins = ["cri"]; the kubelet needs it.
    head.append("disabled_plugins = []")
    parts = ["\n".join(head) + "\n"]
    if config_version == 2:
        cri = ("plugins", "io.containerd.grpc.v1.cri")
        parts += [
            _table(cri, [("sandbox_image", target.pause_image)] + downloads),
            *_containerd_handlers(cri + ("containerd",), systemd, runtimes, default_runtime),
            _table(cri + ("cni",), [("bin_dir", target.cni_bin_dir), ("conf_dir", target.cni_conf_dir)]),
            _table(cri + ("registry",), [("config_path", CONTAINERD_CERTS_DIR)]),
        ]
    else:
        # containerd 2.x split the CRI plugin: image settings (pulls included) and runtime settings.
        images = ("plugins", "io.containerd.cri.v1.images")
        runtime = ("plugins", "io.containerd.cri.v1.runtime")
        if containerd_version.strip() and parse_version(containerd_version) >= _CNI_BIN_DIRS_SINCE:
            cni_bin: tuple[str, object] = ("bin_dirs", [target.cni_bin_dir])
        else:
            cni_bin = ("bin_dir", target.cni_bin_dir)
        parts += [
            *([_table(images, downloads)] if downloads else []),
            _table(images + ("pinned_images",), [("sandbox", target.pause_image)]),
            _table(images + ("registry",), [("config_path", CONTAINERD_CERTS_DIR)]),
            *_containerd_handlers(runtime + ("containerd",), systemd, runtimes, default_runtime),
            _table(runtime + ("cni",), [cni_bin, ("conf_dir", target.cni_conf_dir)]),
        ]
    return "\n".join(parts)


def _crio_ulimits(default_ulimits: dict) -> list[str]:
    """Docker's {"nofile": {"Name": "nofile", "Hard": 64000, "Soft": 64000}} -> ["nofile=64000:64000"]."""
    return [
        f"{limit.get('Name', name)}={limit['Soft']}:{limit['Hard']}"
        for name, limit in sorted(default_ulimits.items())
    ]


def render_crio_config(
    target: RuntimeTarget, *, cgroup_driver: str, root: str | None, default_ulimits: dict,
    runtimes: tuple[OciRuntime, ...] = (), default_runtime: str | None = None,
) -> str:
    parts = [MANAGED_HEADER + "\n"]
    if root:
        parts.append(_table(("crio",), [("root", root)]))
    runtime: list[tuple[str, object]] = [("cgroup_manager", cgroup_driver)]
    if cgroup_driver == "cgroupfs":
        # conmon cannot live in a systemd slice when systemd does not manage cgroups.
        runtime.append(("conmon_cgroup", "pod"))
    if default_ulimits:
        runtime.append(("default_ulimits", _crio_ulimits(default_ulimits)))
    if default_runtime:
        runtime.append(("default_runtime", default_runtime))
    parts.append(_table(("crio", "runtime"), runtime))
    for handler in runtimes:
        parts.append(_table(("crio", "runtime", "runtimes", handler.name),
                            [("runtime_path", handler.binary), ("runtime_type", "oci")]))
    parts.append(_table(("crio", "image"), [("pause_image", target.pause_image)]))
    parts.append(
        _table(
            ("crio", "network"),
            [("network_dir", target.cni_conf_dir), ("plugin_dirs", [target.cni_bin_dir])],
        )
    )
    return "\n".join(parts)


def render_runtime_files(
    target: RuntimeTarget,
    *,
    containerd_version: str,
    cgroup_driver: str,
    translation: DaemonTranslation | None,
) -> dict[str, str]:
    """Every file the node gets for `target`, as {absolute node path: content}, sorted by path."""
    if target.runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {target.runtime!r}; expected one of {', '.join(RUNTIMES)}")
    if cgroup_driver not in ("systemd", "cgroupfs"):
        raise ValueError(f"cgroup driver must be systemd or cgroupfs, not {cgroup_driver!r}")
    if translation is not None and translation.runtime != target.runtime:
        raise ValueError(
            f"daemon.json was translated for {translation.runtime}, but the target is {target.runtime}"
        )
    mirrors, insecure = merged_registries(target, translation)
    root = translation.runtime_root if translation else None
    proxies = translation.proxies if translation else {}
    files: dict[str, str] = {CRICTL_CONFIG: render_crictl_yaml(target.cri_endpoint)}

    runtimes = translation.oci_runtimes if translation else ()
    default_runtime = translation.default_runtime if translation else None
    if target.runtime == "containerd":
        files[CONTAINERD_CONFIG] = render_containerd_config(
            target, containerd_version=containerd_version, cgroup_driver=cgroup_driver, root=root,
            runtimes=runtimes, default_runtime=default_runtime,
            max_concurrent_downloads=translation.max_concurrent_downloads if translation else None,
        )
        for registry in sorted(set(mirrors) | set(insecure)):
            files[f"{CONTAINERD_CERTS_DIR}/{registry}/hosts.toml"] = render_hosts_toml(
                registry, mirrors.get(registry, ()), registry in insecure
            )
    else:
        files[CRIO_DROP_IN] = render_crio_config(
            target,
            cgroup_driver=cgroup_driver,
            root=root,
            default_ulimits=translation.default_ulimits if translation else {},
            runtimes=runtimes,
            default_runtime=default_runtime,
        )
        if mirrors or insecure:
            files[CRIO_REGISTRIES_DROP_IN] = render_crio_registries(mirrors, insecure)

    if proxies:
        files[PROXY_DROP_INS[target.runtime]] = render_proxy_drop_in(proxies)
    return dict(sorted(files.items()))
