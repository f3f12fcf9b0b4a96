"""A run's configuration as the command line assembles it: preset, then file, then --corpus, then --init-from,
then --set. It sits above config.py because a pretrained model's shape (model/pretrained.py) may replace
model.*."""

from memorizing.config import Config, is_pretrained, preset


def build_config(config_file: str | None = None, preset_name: str | None = None,
                 corpus: str | None = None, assignments: list[str] | None = None,
                 init_from: str | None = None) -> Config:
    """The one place a run's configuration is assembled: preset, then file, then --corpus, then --init-from (a
    pretrained model's shape replaces model.*), then --set."""
    config = preset(preset_name) if preset_name else Config()
    if config_file:
        config.update(Config.read_toml(config_file), source=config_file)
    if corpus:
        config.data.corpus = corpus
    if init_from:
        config.train.init_from = init_from
        if is_pretrained(init_from):
            from memorizing.model.pretrained import derive_config, source_config
            config = derive_config(config, source_config(init_from))
    return config.override(assignments or [])
