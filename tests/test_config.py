"""Frozen dataclass configs: overrides, type checks, unknown keys, key=value parsing, YAML files."""
import dataclasses

import pytest

from d3dp_ktp.config import deep_merge, from_dict, load_yaml, override, parse_overrides, to_dict
from d3dp_ktp.diffusion import DiffusionConfig, SamplingConfig
from d3dp_ktp.models import ModelConfig


@dataclasses.dataclass(frozen=True)
class _Inner:
    a: int = 1
    b: tuple[int, ...] = (1, 2)


@dataclasses.dataclass(frozen=True)
class _Outer:
    name: str = "x"
    rate: float = 0.5
    maybe: int | None = None
    inner: _Inner = _Inner()


def test_defaults_are_the_spec_defaults():
    m = ModelConfig()
    assert (m.arch, m.num_frames, m.num_joints, m.channels, m.depth, m.num_heads, m.mlp_ratio) == (
        "ktpformer", 243, 17, 512, 7, 8, 2.0)
    d = DiffusionConfig()
    assert (d.num_train_timesteps, d.cosine_s, d.scale, d.clamp) == (1000, 0.008, 1.0, 1.1)
    s = SamplingConfig()
    assert (s.num_hypotheses, s.num_steps, s.eta, s.flip, s.dtype, s.seed) == (5, 5, 1.0, True, "fp32", 1)
    assert d.loss_scaled_gradient is True
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.channels = 3  # type: ignore[misc]


@pytest.mark.parametrize("cls", [ModelConfig, DiffusionConfig, SamplingConfig])
def test_from_dict_to_dict_round_trip(cls):
    cfg = cls()
    assert from_dict(cls, to_dict(cfg)) == cfg
    changed = {ModelConfig: {"channels": 64, "num_heads": 4, "layout": "humaneva15", "num_joints": 15},
               DiffusionConfig: {"scale": 2.0, "lambda_tc": 0.5},
               SamplingConfig: {"num_steps": 10, "flip": False}}[cls]
    cfg2 = from_dict(cls, changed)
    for k, v in changed.items():
        assert getattr(cfg2, k) == v
    assert from_dict(cls, to_dict(cfg2)) == cfg2
    assert override(cfg, changed) == cfg2
    assert cfg == cls()  # override returns a copy


def test_override_coerces_ints_to_floats_and_lists_to_tuples():
    cfg = from_dict(_Outer, {"rate": 1, "inner": {"b": [3, 4, 5]}})
    assert cfg.rate == 1.0 and isinstance(cfg.rate, float)
    assert cfg.inner == _Inner(a=1, b=(3, 4, 5))
    assert to_dict(cfg) == {"name": "x", "rate": 1.0, "maybe": None, "inner": {"a": 1, "b": [3, 4, 5]}}
    assert from_dict(_Outer, to_dict(cfg)) == cfg
    assert from_dict(_Outer, {"maybe": 3}).maybe == 3
    assert from_dict(_Outer, {"maybe": None}).maybe is None
    assert override(_Outer(), None) == _Outer()


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ValueError) as err:
        from_dict(ModelConfig, {"chanels": 64})
    msg = str(err.value)
    assert "chanels" in msg and "valid keys" in msg
    for name in ("channels", "num_frames", "depth", "num_heads"):
        assert name in msg
    with pytest.raises(ValueError, match=r"inner\.zz.*valid keys: a, b"):
        from_dict(_Outer, {"inner": {"zz": 1}})


@pytest.mark.parametrize("key,value", [("channels", "big"), ("channels", 64.5), ("channels", True),
                                       ("mlp_ratio", "2"), ("layout", 17), ("use_kpa", 1)])
def test_wrong_type_is_an_error(key, value):
    with pytest.raises(ValueError, match=key):
        from_dict(ModelConfig, {key: value})


def test_wrong_type_nested_and_optional():
    with pytest.raises(ValueError, match=r"inner\.b\[1\]"):
        from_dict(_Outer, {"inner": {"b": [1, "x"]}})
    with pytest.raises(ValueError, match="maybe"):
        from_dict(_Outer, {"maybe": "three"})
    with pytest.raises(ValueError, match="mapping"):
        override(_Outer(), [("name", "y")])


def test_parse_overrides_nests_and_parses_yaml_values():
    out = parse_overrides(["model.channels=64", "diffusion.eta=0.5", "model.layout=h36m", "diffusion.flip=false",
                           "a.b.c=[1, 2]", "train.name="])
    assert out == {"model": {"channels": 64, "layout": "h36m"}, "diffusion": {"eta": 0.5, "flip": False},
                   "a": {"b": {"c": [1, 2]}}, "train": {"name": ""}}
    assert from_dict(ModelConfig, out["model"]).channels == 64
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["model.channels"])


def test_load_yaml_and_deep_merge(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  channels: 64\ndiffusion:\n  scale: 2\n")
    data = load_yaml(f)
    assert data == {"model": {"channels": 64}, "diffusion": {"scale": 2}}
    merged = deep_merge(data, parse_overrides(["model.depth=3"]))
    assert merged == {"model": {"channels": 64, "depth": 3}, "diffusion": {"scale": 2}}
    assert data["model"] == {"channels": 64}  # inputs untouched
    with pytest.raises(FileNotFoundError):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        load_yaml(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        load_yaml(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_yaml(empty) == {}


def test_yaml_cannot_execute_code(tmp_path):
    f = tmp_path / "evil.yaml"
    f.write_text("model: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ValueError):
        load_yaml(f)


@pytest.mark.parametrize("values,match", [({"channels": 30, "num_heads": 4}, "divisible"),
                                          ({"arch": "unet"}, "arch"), ({"attention": "flash"}, "attention"),
                                          ({"layout": "h37m"}, "h37m"), ({"depth": 0}, "depth"),
                                          ({"drop_path_rate": 1.0}, "drop_path_rate")])
def test_model_config_validate(values, match):
    with pytest.raises(ValueError, match=match):
        from_dict(ModelConfig, values).validate()


@pytest.mark.parametrize("values,match", [({"scale": 0.0}, "scale"), ({"lambda_tc": -1.0}, "lambda_tc")])
def test_diffusion_config_validate(values, match):
    with pytest.raises(ValueError, match=match):
        from_dict(DiffusionConfig, values).validate()


@pytest.mark.parametrize("values,match", [({"num_steps": 0}, "num_steps"), ({"num_hypotheses": 0}, "num_hypotheses"),
                                          ({"eta": -0.1}, "eta"), ({"dtype": "fp64"}, "dtype"),
                                          ({"seed": 1.5}, "seed")])
def test_sampling_config_is_validated_when_built(values, match):
    with pytest.raises(ValueError, match=match):
        from_dict(SamplingConfig, values)
