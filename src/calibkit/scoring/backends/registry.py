"""Model specs -> backends: one registry of spec prefixes, one parser.

A *model spec* is a string ``[<prefix>:]<target>[?<option>=<value>&...]``:

``hf:<hub id or folder>``
    a local transformers model (:class:`~calibkit.scoring.backends.transformers_backend.
    TransformersBackend`); options ``dtype``, ``batch_size``, ``cache_dir``.
``gguf:<file.gguf>``
    a GGUF file loaded through transformers (same options).
``openai:<base_url>::<model>``
    an OpenAI-compatible HTTP server (:class:`~calibkit.scoring.backends.openai_http.
    OpenAICompatibleBackend`); options ``api_key_env`` (the *name* of the environment variable
    holding the key), ``timeout``, ``max_retries``, ``backoff``, ``max_backoff``,
    ``requests_per_second``, ``max_concurrency``, ``use_chat``, ``top_logprobs``, ``seed``.
no prefix
    ``None``, ``"smollm2"``, ``"gemma3-270m"``, a ``.gguf`` file, a folder or a hub id: the same
    as ``hf:`` (what :func:`calibkit.scoring.load_causal_lm` accepts).

The API key itself never goes into a spec (specs end up in file names, reports and metadata):
``openai:http://host/v1::my-model?api_key_env=MY_KEY`` reads ``$MY_KEY``; without
``api_key_env`` the backend reads ``$OPENAI_API_KEY``. ``?api_key=...`` is refused.

Adding a backend is one module with a factory and one call::

    from calibkit.scoring.backends.registry import register_backend

    def make_toy(target: str, **options) -> Backend: ...
    register_backend("toy", make_toy)          # make_backend("toy:anything") now works

The factory gets the text after ``<prefix>:`` (options removed) and the options of the spec
merged with the keyword arguments of :func:`make_backend` (option values arrive as strings; a
factory converts them). ``batch_size`` is passed only to factories that accept it.
"""

from __future__ import annotations

import inspect
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calibkit.scoring.backends.base import Backend

__all__ = [
    "BackendFactory",
    "ModelSpec",
    "available_backends",
    "local_model_name",
    "make_backend",
    "parse_model_spec",
    "register_backend",
    "unregister_backend",
]

BackendFactory = Callable[..., Backend]
"""``factory(target: str, **options) -> Backend``."""

_REGISTRY: dict[str, BackendFactory] = {}
_LOCAL = ("hf", "gguf")
_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9_+.-]*):(.*)$", re.DOTALL)
_OPTION = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_OPTIONS = frozenset({"api_key", "key", "token", "password", "secret"})


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec.

    Attributes
    ----------
    prefix : str
        Registered backend prefix (``"hf"`` for a spec without one).
    target : str or None
        What follows the prefix, options removed (``None``: the default local model).
    options : dict str -> str
        ``?key=value&...`` pairs of the spec.
    """

    prefix: str
    target: str | None
    options: dict[str, str] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        """Whether the model runs in this process from local weights (``hf:`` / ``gguf:``)."""
        return self.prefix in _LOCAL


def register_backend(prefix: str, factory: BackendFactory, *, replace: bool = False) -> None:
    """Make ``make_backend("<prefix>:<target>")`` call ``factory(target, **options)``.

    Parameters
    ----------
    prefix : str
        Letters, digits, ``_ + . -``, starting with a letter; at least 2 characters (a single
        letter would read like a Windows drive).
    factory : callable
        ``factory(target: str, **options) -> Backend``.
    replace : bool
        Replace an existing registration instead of raising ``ValueError`` (as
        ``register_calibrator`` / ``register_metric``).
    """
    if not isinstance(prefix, str) or len(prefix) < 2 or not _PREFIX.match(prefix + ":"):
        raise ValueError(
            f"backend prefix must be >= 2 characters of letters, digits, '_+.-' starting with a "
            f"letter; got {prefix!r}"
        )
    if not callable(factory):
        raise ValueError(f"factory for backend prefix {prefix!r} is not callable")
    if prefix in _REGISTRY and not replace and _REGISTRY[prefix] is not factory:
        raise ValueError(f"backend prefix {prefix!r} is already registered (pass replace=True)")
    _REGISTRY[prefix] = factory


def unregister_backend(prefix: str) -> BackendFactory:
    """Remove a registered prefix; returns its factory."""
    if prefix not in _REGISTRY:
        raise ValueError(f"backend prefix {prefix!r} is not registered")
    return _REGISTRY.pop(prefix)


def available_backends() -> list[str]:
    """The registered spec prefixes, sorted."""
    return sorted(_REGISTRY)


def _redact(spec: str) -> str:
    """``spec`` with the values of secret-looking options replaced by ``***``."""
    pattern = "|".join(sorted(_SECRET_OPTIONS))
    return re.sub(rf"([?&](?:{pattern})=)[^&]*", r"\1***", spec)


def _split_options(text: str, spec: str) -> tuple[str, dict[str, str]]:
    if "?" not in text:
        return text, {}
    head, _, query = text.rpartition("?")
    options: dict[str, str] = {}
    for part in query.split("&"):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not _OPTION.match(key):
            raise ValueError(
                f"model spec {spec!r}: option {part!r} is not key=value (options follow '?', "
                "separated by '&')"
            )
        if key in options:
            raise ValueError(f"model spec {spec!r}: option {key!r} given twice")
        options[key] = value.strip()
    return head, options


def parse_model_spec(spec: str | os.PathLike[str] | None) -> ModelSpec:
    """Split a model spec into prefix, target and options (see the module docstring).

    A ``word:`` at the start that is not a registered prefix is an error (a typo such as
    ``opnai:``), unless the whole spec is an existing path.
    """
    if spec is None:
        return ModelSpec("hf", None)
    if isinstance(spec, os.PathLike):
        return ModelSpec("hf", os.fspath(spec))
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"model spec must be a non-empty string or a path; got {spec!r}")
    shown = _redact(spec)
    m = _PREFIX.match(spec)
    if m is None or len(m.group(1)) < 2 or (m.group(1) not in _REGISTRY and Path(spec).exists()):
        return ModelSpec("hf", spec)
    prefix, rest = m.group(1), m.group(2)
    if prefix not in _REGISTRY:
        raise ValueError(
            f"model spec {shown!r}: unknown backend prefix {prefix!r}; registered: "
            f"{', '.join(available_backends())} (or give a local model name, folder or file "
            "without a prefix)"
        )
    target, options = _split_options(rest, shown)
    if not target:
        raise ValueError(f"model spec {shown!r}: nothing after '{prefix}:'")
    return ModelSpec(prefix, target, options)


def _accepts(factory: BackendFactory, name: str) -> bool:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return True
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def make_backend(spec: str | os.PathLike[str] | None = None, **kwargs: Any) -> Backend:
    """The backend of a model spec, built by the factory registered for its prefix.

    Parameters
    ----------
    spec : str, path or None
        See the module docstring; ``None`` is the bundled SmolLM2.
    **kwargs
        Passed to the factory after the spec's own options (giving the same option both ways
        with different values is an error). ``batch_size`` is dropped for factories that take
        no such argument (HTTP backends batch by concurrency).
    """
    parsed = parse_model_spec(spec)
    secret = sorted(k for k in parsed.options if k in _SECRET_OPTIONS)
    if secret:
        raise ValueError(
            f"model spec for {parsed.prefix}:{parsed.target}: never write {secret[0]} into a "
            "spec (specs are logged and stored); export the key and name the variable with "
            "?api_key_env=NAME"
        )
    factory = _REGISTRY[parsed.prefix]
    both = {k for k in parsed.options if k in kwargs and str(kwargs[k]) != parsed.options[k]}
    if both:
        raise ValueError(
            f"model spec {parsed.prefix}:{parsed.target}: options {sorted(both)} also given as "
            "arguments, with other values"
        )
    options: dict[str, Any] = {**parsed.options, **kwargs}
    if "batch_size" in options and not _accepts(factory, "batch_size"):
        options.pop("batch_size")
    return factory(parsed.target, **options)


def local_model_name(spec: str | os.PathLike[str] | None) -> str | None:
    """The local model (name, folder or file) of an ``hf:`` / ``gguf:`` / bare spec.

    For code that needs the weights themselves (fine-tuning, parameter counts). Raises
    ``ValueError`` for any other backend (e.g. a model served over HTTP).
    """
    parsed = parse_model_spec(spec)
    if not parsed.is_local:
        raise ValueError(
            f"model spec {parsed.prefix}:{parsed.target} is not a local model; this needs local "
            "weights "
            "(hf:<id or folder>, gguf:<file>, smollm2, gemma3-270m)"
        )
    if parsed.options:
        raise ValueError(f"model spec {parsed.target}: options are not supported here")
    return parsed.target


# ------------------------------------------------------------------------- built-in factories
def _typed(options: Mapping[str, Any], types: Mapping[str, type], spec: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key not in types:
            raise ValueError(f"{spec}: unknown option {key!r}; known: {', '.join(sorted(types))}")
        kind = types[key]
        if not isinstance(value, str) or kind is str:
            out[key] = value
            continue
        try:
            if kind is dict:
                parsed = json.loads(value)
                if not isinstance(parsed, dict):
                    raise ValueError(value)
                out[key] = parsed
            elif kind is bool:
                low = value.lower()
                if low not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(value)
                out[key] = low in ("1", "true", "yes")
            else:
                out[key] = kind(value)
        except ValueError:  # json.JSONDecodeError is a ValueError
            raise ValueError(
                f"{spec}: option {key}={value!r} is not a valid {kind.__name__}"
            ) from None
    return out


_LOCAL_OPTIONS: dict[str, type] = {
    "batch_size": int,
    "dtype": str,
    "cache_dir": str,
    "prefix_reuse": bool,
    "min_prefix_tokens": int,
    "max_prefixes": int,
}


def _hf_factory(target: str | None, **options: Any) -> Backend:
    from calibkit.scoring.backends.transformers_backend import TransformersBackend

    kw = _typed(options, _LOCAL_OPTIONS, f"hf:{target}")
    return TransformersBackend.from_pretrained(target, **kw)


def _gguf_factory(target: str, **options: Any) -> Backend:
    if not str(target).lower().endswith(".gguf"):
        raise ValueError(f"gguf:{target}: expected a .gguf file")
    return _hf_factory(target, **options)


_HTTP_OPTIONS: dict[str, type] = {
    "api_key_env": str,
    "timeout": float,
    "max_retries": int,
    "backoff": float,
    "max_backoff": float,
    "requests_per_second": float,
    "max_concurrency": int,
    "use_chat": bool,
    "top_logprobs": int,
    "seed": int,
    "extra_body": dict,
}


def _api_key_from_env(name: Any, spec: str) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{spec}: api_key_env must name an environment variable")
    key = os.environ.get(name)
    if not key:
        raise ValueError(f"{spec}: environment variable {name} (api_key_env) is not set or empty")
    return key


def _openai_factory(target: str, *, batch_size: Any = None, **options: Any) -> Backend:
    """``batch_size`` is accepted and ignored: requests run ``max_concurrency`` at a time."""
    from calibkit.scoring.backends.openai_http import OpenAICompatibleBackend

    where = f"openai:{target}"
    key = options.pop("api_key", None)
    kw = _typed(options, _HTTP_OPTIONS, where)
    env = kw.pop("api_key_env", None)
    if env is not None:
        if key is not None:
            raise ValueError(f"{where}: give api_key or api_key_env, not both")
        key = _api_key_from_env(env, where)
    if key is not None:
        kw["api_key"] = key
    return OpenAICompatibleBackend.from_spec(where, **kw)


register_backend("hf", _hf_factory)
register_backend("gguf", _gguf_factory)
register_backend("openai", _openai_factory)
