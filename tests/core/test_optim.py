"""Learning-rate schedules and the weight-decay mask."""

import numpy as np
from ml_collections import config_dict

from scaling.core import optim


def _t(**kw):
  base = dict(learning_rate=1.0, steps=100, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1,
              decay_fraction=0.2)
  base.update(kw)
  return config_dict.ConfigDict(base)


def test_cosine_warmup_then_decay_to_floor():
  s = optim.lr_schedule(_t())
  assert float(s(0)) == 0.0
  np.testing.assert_allclose(float(s(5)), 0.5, rtol=1e-6)  # linear warmup
  np.testing.assert_allclose(float(s(10)), 1.0, rtol=1e-6)  # peak at the end of warmup
  np.testing.assert_allclose(float(s(55)), 0.55, rtol=1e-5)  # cosine midpoint: floor + (1-floor)/2
  np.testing.assert_allclose(float(s(100)), 0.1, rtol=1e-6)
  lrs = [float(s(i)) for i in range(10, 101)]
  assert all(a >= b - 1e-7 for a, b in zip(lrs, lrs[1:]))  # monotone after warmup


def test_wsd_is_flat_then_linear():
  s = optim.lr_schedule(_t(schedule="wsd"))
  # 90 post-warmup steps, the last 18 decay linearly from 1.0 to 0.1.
  for i in (10, 50, 82):
    np.testing.assert_allclose(float(s(i)), 1.0, rtol=1e-6)
  np.testing.assert_allclose(float(s(91)), 0.55, rtol=1e-5)
  np.testing.assert_allclose(float(s(100)), 0.1, rtol=1e-6)


def test_constant_and_no_warmup():
  s = optim.lr_schedule(_t(schedule="constant", warmup_steps=0))
  assert float(s(0)) == 1.0 and float(s(99)) == 1.0


def test_decay_mask_skips_norms_and_embeddings():
  params = {"embed": 0, "unembed": 0, "final_norm": {"scale": 0},
            "blocks": {"mlp": {"w_up": 0}, "attn_norm": {"scale": 0}}}
  mask = optim.decay_mask(params, decay_embeddings=False)
  assert mask == {"embed": False, "unembed": False, "final_norm": {"scale": False},
                  "blocks": {"mlp": {"w_up": True}, "attn_norm": {"scale": False}}}
  assert optim.decay_mask(params, decay_embeddings=True)["embed"] is True
