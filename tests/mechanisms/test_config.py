"""The `mechanisms` config section: defaults off, one-line errors."""

import pytest

from scaling.lm import config as configlib
from scaling.mechanisms import settings as mechanisms
from tests import helpers


def _validate(**settings):
  c = helpers.tiny_config()
  for k, v in settings.items():
    if k.startswith("data."):
      c.data.tasks.cmp.frequency = v
    else:
      c.mechanisms[k] = v
  configlib.validate(configlib.resolve(c), 1)


def test_defaults_validate_and_measure_nothing():
  _validate()
  s = mechanisms.settings(helpers.tiny_config())
  assert s["interference_every"] == 0 and s["probe_every"] == 0 and not s["interference_at_injections"]
  assert mechanisms.settings({}) == mechanisms.DEFAULTS  # configs written before the section existed
  _validate(interference_split="instance", probe_fourier_rule="relative", probe_fourier_min_variance=0.0)


@pytest.mark.parametrize("settings,needle", [
    ({"interference_every": -1}, "mechanisms.interference_every=-1 must be an integer >= 0"),
    ({"interference_top_k": 0}, "mechanisms.interference_top_k=0 must be an integer >= 1"),
    ({"interference_rank_by": "size"}, "must be 'task' or 'batch'"),
    ({"probe_fourier_threshold": 0.0}, "must be a positive number"),
    ({"interference_split": "tokens"}, "mechanisms.interference_split='tokens' must be 'label' or 'instance'"),
    ({"probe_fourier_rule": "share"}, "mechanisms.probe_fourier_rule='share' must be 'absolute' or 'relative'"),
    ({"probe_fourier_min_variance": 1.0}, "mechanisms.probe_fourier_min_variance=1.0 must be a number in [0, 1)"),
    ({"probe_fourier_alpha": 0.0}, "mechanisms.probe_fourier_alpha=0.0 must be a number in (0, 1)"),
    ({"probe_fourier_null_draws": 0}, "mechanisms.probe_fourier_null_draws=0 must be an integer >= 1"),
    ({"probe_fourier_alpha": 0.001, "probe_fourier_null_draws": 500},
     "probe_fourier_null_draws=500 is too few for probe_fourier_alpha=0.001; use at least 1000"),
    ({"interference_every": 10}, "none is active; set data.tasks.<task>.frequency > 0"),
])
def test_bad_settings_fail_with_one_line(settings, needle):
  with pytest.raises(configlib.ConfigError) as e:
    _validate(**settings)
  assert needle in str(e.value) and "\n" not in str(e.value)


def test_unknown_key_names_the_known_ones():
  c = helpers.tiny_config()
  c.mechanisms.interference_evry = 5
  with pytest.raises(configlib.ConfigError, match="mechanisms.interference_evry is not a setting; known: "):
    configlib.validate(configlib.resolve(c), 1)
  _validate(interference_every=10, **{"data.cmp": 1.0})  # with an active task it is fine
