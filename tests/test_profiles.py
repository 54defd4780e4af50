"""Hardware and grid profiles: every embedded one validates, and bad files fail naming file and field."""

from pathlib import Path

import pytest

from aolo.hw_profiles import (ActorHardwareProfile, LLMServerProfile, ProfileError, RadioProfile,
                              embedded_profiles, load_profile, load_profile_file)
from aolo.hw_profiles.quantity import Quantity

MACRO = next(e.path for e in embedded_profiles() if e.name == "macro")


def test_every_embedded_profile_validates_and_cites_a_source():
    entries = embedded_profiles()
    types = {e.type for e in entries}
    assert {"llm_server", "radio", "actor_hardware"} <= types
    for e in entries:
        p = load_profile_file(e.path)
        for field, q in p.quantities().items():
            assert len(q.source) > 10, f"{e.name}.{field} has no real source"


def test_required_profiles_are_shipped():
    names = {e.name for e in embedded_profiles()}
    assert {"llama2-13b-a100", "llama2-7b-a100", "macro", "micro", "pico",
            "loihi1", "loihi2", "a100", "jetson-tx2", "server-cpu"} <= names


def test_units_are_converted_to_si_once_at_load():
    server = load_profile("llama2-13b-a100", LLMServerProfile)
    assert server.energy_per_output_token_j == pytest.approx(1.6387 * 3.6)  # mWh -> J
    assert server.latency_per_output_token_s == pytest.approx(0.02377)      # ms -> s
    loihi = load_profile("loihi1", ActorHardwareProfile)
    assert loihi.si("energy_per_synaptic_op") == pytest.approx(23.6e-12)    # pJ -> J
    assert load_profile("macro", RadioProfile).si("bandwidth") == 10e6      # MHz -> Hz


def test_noise_power_follows_the_link_budget():
    # -174 dBm/Hz + 9 dB + 10 log10(10 MHz) = -95 dBm
    assert load_profile("macro", RadioProfile).noise_power_w == pytest.approx(10 ** (-12.5), rel=1e-9)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


def _macro_text() -> str:
    return MACRO.read_text()


def test_unknown_key_is_rejected_naming_file_and_field(tmp_path):
    path = _write(tmp_path, 'colour = "blue"\n' + _macro_text())
    with pytest.raises(ProfileError, match=r"bad\.toml: field 'colour': unknown key"):
        load_profile_file(path)


def test_missing_field_is_rejected_naming_it(tmp_path):
    text = _macro_text()
    start = text.index("[p_0]")
    end = text.index("[delta_p]")
    path = _write(tmp_path, text[:start] + text[end:])
    with pytest.raises(ProfileError, match=r"field 'p_0': Field required"):
        load_profile_file(path)


def test_wrong_unit_is_rejected_naming_the_field(tmp_path):
    text = _macro_text().replace('[p_max]\nvalue = 20\nunit = "W"', '[p_max]\nvalue = 20\nunit = "J"')
    with pytest.raises(ProfileError, match=r"field 'p_max'.*'J' is not a power unit"):
        load_profile_file(_write(tmp_path, text))


def test_negative_value_is_rejected_naming_the_field(tmp_path):
    text = _macro_text().replace('[p_0]\nvalue = 130', '[p_0]\nvalue = -130')
    with pytest.raises(ProfileError, match=r"field 'p_0'.*negative"):
        load_profile_file(_write(tmp_path, text))


def test_decibel_fields_may_be_negative():
    assert load_profile("macro", RadioProfile).si("noise_psd") == -174


def test_quantity_without_source_is_rejected(tmp_path):
    text = _macro_text().replace('[p_0]\nvalue = 130\nunit = "W"\nsource = ', '[p_0]\nvalue = 130\nunit = "W"\nxsource = ')
    with pytest.raises(ProfileError, match=r"field 'p_0.source': Field required"):
        load_profile_file(_write(tmp_path, text))


def test_unknown_profile_type_and_bad_toml_are_reported(tmp_path):
    with pytest.raises(ProfileError, match="'type'"):
        load_profile_file(_write(tmp_path, 'type = "toaster"\n'))
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile_file(_write(tmp_path, "name = \n"))
    with pytest.raises(ProfileError, match="no profile named 'nope'"):
        load_profile("nope")
    with pytest.raises(ProfileError, match="is a radio, expected a llm_server"):
        load_profile("macro", LLMServerProfile)


def test_inconsistent_power_range_is_rejected(tmp_path):
    text = _macro_text().replace('[p_min]\nvalue = 0.2', '[p_min]\nvalue = 50')
    with pytest.raises(ProfileError, match="p_min"):
        load_profile_file(_write(tmp_path, text))


def test_quantity_kind_must_be_known():
    with pytest.raises(ValueError):
        Quantity(value=1.0, unit="W", source="somewhere", kind="guess")


def test_a_profile_that_is_not_utf8_is_one_line_naming_the_byte(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(_macro_text().replace("macro", "macr\xe9").encode("latin-1"))
    with pytest.raises(ProfileError, match=r"latin1\.toml: not UTF-8 text \(byte \d+\)") as err:
        load_profile_file(path)
    assert "\n" not in str(err.value)


def test_a_huge_value_is_refused_before_it_becomes_infinite_in_si(tmp_path):
    text = _macro_text().replace('[p_0]\nvalue = 130\nunit = "W"', '[p_0]\nvalue = 1e308\nunit = "kW"')
    with pytest.raises(ProfileError, match=r"field 'p_0'.*1e\+308 kW is beyond the largest accepted power"):
        load_profile_file(_write(tmp_path, text))


def test_a_huge_grid_intensity_in_a_series_is_refused_naming_its_index():
    from aolo.hw_profiles.quantity import QuantitySeries

    series = QuantitySeries(values=[300.0, 1e9], unit="g/kWh", source="a test", kind="estimate")
    with pytest.raises(ValueError, match=r"field 'ci\[1\]'.*beyond the largest accepted carbon_intensity"):
        series.to_si("carbon_intensity", "ci")


def test_profiles_show_prints_one_line_and_exits_2_on_a_bad_file(tmp_path):
    from typer.testing import CliRunner

    from aolo.cli import app

    path = tmp_path / "latin1.toml"
    path.write_bytes(b"name = \"caf\xe9\"\n")
    result = CliRunner().invoke(app, ["profiles", "show", str(path)])
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and "not UTF-8" in result.output
