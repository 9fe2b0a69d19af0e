"""The backend registry: one spec parser, prefixes registered from anywhere, HTTP options."""

from __future__ import annotations

from pathlib import Path

import pytest

from calibkit.scoring.backends import make_backend
from calibkit.scoring.backends import registry as reg
from toy_llm import ToyLLM


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test vanish after it."""
    monkeypatch.setattr(reg, "_REGISTRY", dict(reg._REGISTRY))


def test_a_backend_registered_from_outside_is_built_by_make_backend(clean_registry: None) -> None:
    made: list[tuple[str, str | None]] = []

    def toy_factory(target: str, *, temperature: str | None = None) -> ToyLLM:
        made.append((target, temperature))
        return ToyLLM(target)

    reg.register_backend("toy", toy_factory)
    assert "toy" in reg.available_backends()
    be = make_backend("toy:alpha?temperature=0.5")  # the package's make_backend
    assert isinstance(be, ToyLLM) and be.name == "toy:alpha"
    # the spec's options reach the factory; the default batch_size (8) is not forced on it
    assert made == [("alpha", "0.5")]
    seen: dict[str, object] = {}
    reg.register_backend("toy2", lambda target, **kw: seen.update(kw) or ToyLLM(target))
    make_backend("toy2:b", batch_size=3)
    assert seen == {"batch_size": 3}  # a factory taking **kwargs gets it
    with pytest.raises(ValueError, match="already registered"):
        reg.register_backend("toy", lambda target, **kw: ToyLLM(target))
    reg.register_backend("toy", lambda target, **kw: ToyLLM("other"), replace=True)
    assert make_backend("toy:x").name == "toy:other"
    reg.unregister_backend("toy")
    with pytest.raises(ValueError, match="unknown backend prefix 'toy'"):
        make_backend("toy:x")


def test_register_backend_validates_prefix_and_factory(clean_registry: None) -> None:
    with pytest.raises(ValueError, match="prefix"):
        reg.register_backend("c", lambda t: ToyLLM())  # a Windows drive letter
    with pytest.raises(ValueError, match="prefix"):
        reg.register_backend("9x", lambda t: ToyLLM())
    with pytest.raises(ValueError, match="callable"):
        reg.register_backend("toy", "not a function")  # type: ignore[arg-type]


def test_parse_model_spec() -> None:
    assert reg.parse_model_spec(None) == reg.ModelSpec("hf", None)
    assert reg.parse_model_spec("smollm2") == reg.ModelSpec("hf", "smollm2")
    assert reg.parse_model_spec("org/name") == reg.ModelSpec("hf", "org/name")
    assert reg.parse_model_spec("hf:org/name?dtype=bfloat16") == reg.ModelSpec(
        "hf", "org/name", {"dtype": "bfloat16"}
    )
    s = reg.parse_model_spec("openai:http://h:8000/v1::Qwen/Qwen2.5-7B?timeout=5&seed=1")
    assert s.prefix == "openai" and s.target == "http://h:8000/v1::Qwen/Qwen2.5-7B"
    assert s.options == {"timeout": "5", "seed": "1"} and not s.is_local
    with pytest.raises(ValueError, match=r"unknown backend prefix 'opnai'.*openai"):
        reg.parse_model_spec("opnai:http://h/v1::m")
    with pytest.raises(ValueError, match="not key=value"):
        reg.parse_model_spec("openai:http://h/v1::m?timeout")
    with pytest.raises(ValueError, match="given twice"):
        reg.parse_model_spec("openai:http://h/v1::m?seed=1&seed=2")
    with pytest.raises(ValueError, match="nothing after"):
        reg.parse_model_spec("hf:")


def test_an_existing_path_with_a_colon_is_a_local_model(tmp_path: Path) -> None:
    folder = tmp_path / "runs:v2"
    folder.mkdir()
    assert reg.parse_model_spec(str(folder)) == reg.ModelSpec("hf", str(folder))


def test_openai_spec_options_are_typed_and_the_key_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from calibkit.scoring.backends.openai_http import OpenAICompatibleBackend

    monkeypatch.setenv("MY_SERVER_KEY", "s3cr3t-value")
    spec = "openai:http://127.0.0.1:9/v1::m?api_key_env=MY_SERVER_KEY&timeout=2.5&use_chat=false"
    be = make_backend(spec, max_retries=1)
    assert isinstance(be, OpenAICompatibleBackend)
    assert be.api_key == "s3cr3t-value" and be.timeout == 2.5 and be.use_chat is False
    assert be.max_retries == 1 and be.model == "m" and be.base_url == "http://127.0.0.1:9/v1"
    assert "s3cr3t" not in be.name and "s3cr3t" not in repr(be)
    # the same option as a keyword argument
    assert make_backend("openai:http://127.0.0.1:9/v1::m", api_key_env="MY_SERVER_KEY").api_key
    monkeypatch.delenv("MY_SERVER_KEY")
    with pytest.raises(ValueError, match="MY_SERVER_KEY"):
        make_backend(spec)


def test_openai_spec_errors_name_the_option_and_never_echo_a_key() -> None:
    with pytest.raises(ValueError, match="api_key_env") as e:
        make_backend("openai:http://127.0.0.1:9/v1::m?api_key=sk-very-secret")
    assert "sk-very-secret" not in str(e.value)
    with pytest.raises(ValueError, match="unknown option 'temprature'"):
        make_backend("openai:http://127.0.0.1:9/v1::m?temprature=0")
    with pytest.raises(ValueError, match="timeout='soon' is not a valid float"):
        make_backend("openai:http://127.0.0.1:9/v1::m?timeout=soon")
    with pytest.raises(ValueError, match="also given as arguments"):
        make_backend("openai:http://127.0.0.1:9/v1::m?timeout=3", timeout=4)
    # fill-gaps' old syntax (openai:<model> plus --base-url) is not a spec any more
    with pytest.raises(ValueError, match="::<model>"):
        make_backend("openai:gpt-4o-mini")


def test_local_model_name_refuses_http_specs() -> None:
    assert reg.local_model_name(None) is None
    assert reg.local_model_name("smollm2") == "smollm2"
    assert reg.local_model_name("hf:org/name") == "org/name"
    assert reg.local_model_name("gguf:/m/model.gguf") == "/m/model.gguf"
    with pytest.raises(ValueError, match="local"):
        reg.local_model_name("openai:http://h/v1::m")
    with pytest.raises(ValueError, match=r"\.gguf"):
        make_backend("gguf:/m/model.bin")


def test_fill_gaps_has_no_second_backend_factory() -> None:
    from calibkit.experiments import fill_gaps

    assert not hasattr(fill_gaps, "make_backend")


def test_finetune_experiment_refuses_a_model_served_over_http(tmp_path: Path) -> None:
    from calibkit.cli.main import main

    rc = main(
        ["experiment", "finetune", "--model", "openai:http://127.0.0.1:9/v1::m", "--smoke",
         "--out", str(tmp_path)]
    )  # fmt: skip
    assert rc == 2
    assert not any(tmp_path.iterdir())  # refused before reading any data


def test_the_cli_runs_a_registered_backend(clean_registry: None, tmp_path: Path) -> None:
    from calibkit import Scores
    from calibkit.cli.main import main

    reg.register_backend("toy", lambda target, **kw: ToyLLM(target))
    data = tmp_path / "d.csv"
    data.write_text("text,label\nHow many legs has a spider ?,yes\nWho wrote Hamlet ?,no\n")
    out = tmp_path / "s.parquet"
    argv = ["score", "--data", str(data), "--classes", "no,yes", "--model", "toy:cli",
            "--mode", "next_token", "--no-cache", "-o", str(out)]  # fmt: skip
    assert main(argv) == 0
    s = Scores.load(out)
    assert len(s) == 2 and s.meta["model"] == "toy:cli"
