import pytest

from search.config import ConfigError, load_settings


def test_defaults_live_in_the_home(tmp_path, monkeypatch):
    monkeypatch.delenv("CLAPDEX_HOME", raising=False)
    settings = load_settings(tmp_path)
    assert settings.home == tmp_path
    assert settings.catalog_url == f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    assert settings.vectors_dir == tmp_path / "vectors"
    assert settings.model == ""  # the index's own model, or the default for a new one


def test_home_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CLAPDEX_HOME", str(tmp_path / "lib"))
    assert load_settings().home == tmp_path / "lib"


def test_file_then_environment_then_flags(tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text(
        'weights = "/from/file.pth"\nbatch_size = 4\nroots = ["/a", "/b"]\ndevice = "cpu"\n'
    )
    monkeypatch.setenv("CLAPDEX_BATCH_SIZE", "8")
    monkeypatch.setenv("CLAPDEX_DEVICE", "cuda")
    settings = load_settings(tmp_path, device="cuda:1", weights=None)
    assert settings.weights == "/from/file.pth"  # a None flag leaves the file's value
    assert settings.batch_size == 8  # environment beats the file
    assert settings.device == "cuda:1"  # flags beat the environment
    assert settings.roots == ("/a", "/b")


def test_unknown_or_invalid_settings_are_named(tmp_path, monkeypatch):
    monkeypatch.delenv("CLAPDEX_BATCH_SIZE", raising=False)
    (tmp_path / "config.toml").write_text('wieghts = "x"\n')
    with pytest.raises(ConfigError, match="wieghts"):
        load_settings(tmp_path)
    (tmp_path / "config.toml").write_text("batch_size = 'many'\n")
    with pytest.raises(ConfigError, match="batch_size"):
        load_settings(tmp_path)
    (tmp_path / "config.toml").write_text("batch_size = [\n")
    with pytest.raises(ConfigError, match="config.toml"):
        load_settings(tmp_path)


def test_compile_is_a_switch_from_any_source(tmp_path, monkeypatch):
    monkeypatch.delenv("CLAPDEX_COMPILE", raising=False)
    assert load_settings(tmp_path).compile is False
    (tmp_path / "config.toml").write_text("compile = true\n")
    assert load_settings(tmp_path).compile is True
    monkeypatch.setenv("CLAPDEX_COMPILE", "off")
    assert load_settings(tmp_path).compile is False
    assert load_settings(tmp_path, compile=True).compile is True  # the --compile flag
    monkeypatch.setenv("CLAPDEX_COMPILE", "maybe")
    with pytest.raises(ConfigError, match="compile"):
        load_settings(tmp_path)
