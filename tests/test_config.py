import pytest

from braindecode_speech.config import Config, ConfigError


class Inner(Config):
    hidden: int = 320
    workers: int = 4

    _exclude_from_signature = ("workers",)


class Outer(Config):
    name: str = "x"
    inner: Inner = Inner()
    ratios: list[float] = [0.2, 0.1]


def test_signature_is_stable_and_content_based():
    a, b = Outer(), Outer()
    assert a.signature() == b.signature()
    assert len(a.signature()) == 12
    assert Outer(name="y").signature() != a.signature()
    assert Outer(inner=Inner(hidden=64)).signature() != a.signature()


def test_excluded_fields_do_not_change_the_signature():
    assert Outer(inner=Inner(workers=16)).signature() == Outer().signature()


def test_unknown_key_and_wrong_type_are_clear_errors():
    with pytest.raises(ConfigError, match=r"inner\.hiden"):
        Outer.from_dict({"inner": {"hiden": 3}}, source="my.yaml")
    with pytest.raises(ConfigError, match=r"my\.yaml.*\n.*inner\.hidden"):
        Outer.from_dict({"inner": {"hidden": "big"}}, source="my.yaml")


def test_overrides_and_yaml_round_trip(tmp_path):
    cfg = Outer().with_overrides(["inner.hidden=64", "ratios=[0.3, 0.1]"])
    assert cfg.inner.hidden == 64 and cfg.ratios == [0.3, 0.1]
    with pytest.raises(ConfigError, match="Unknown config key 'inner.depth'"):
        cfg.with_overrides({"inner.depth": 3})
    with pytest.raises(ConfigError, match="not of the form"):
        cfg.with_overrides(["inner.hidden"])
    cfg.to_yaml(tmp_path / "c.yaml")
    back = Outer.from_yaml(tmp_path / "c.yaml")
    assert back == cfg and back.signature() == cfg.signature()


def test_signatures_of_the_defaults_are_stable():
    """New config sections and fields left at their defaults keep the signatures, so the caches
    and run folders of earlier versions are found again (data: only float16 storage counts)."""
    from braindecode_speech.experiments import ExperimentConfig
    from braindecode_speech.experiments.presets import demo_config, tiny_config

    assert ExperimentConfig().signature() == "7fc93e0b1b5e"
    assert tiny_config("/data").signature() == "ef81ad67930d"
    demo = demo_config("/data")
    assert demo.signature() == "29065faf6d45"
    assert demo.with_overrides({"data.prefetch": 4, "data.device": "cpu"}).signature() == \
        demo.signature() != demo.with_overrides({"data.storage": "float16"}).signature()
