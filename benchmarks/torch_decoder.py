"""A plain PyTorch decoder of the same shapes as scaling/lm/model.py, as a throughput reference.

OLMo-2 recipe written the way a PyTorch user would: token embedding, blocks of causal self-attention
(`F.scaled_dot_product_attention`) with QK-norm over all heads and rotate-half RoPE, a SwiGLU MLP, RMSNorm after
each sublayer (x + norm(f(x))), a final RMSNorm and an untied output projection; no biases. The train step is
AdamW (decoupled weight decay) with global-norm gradient clipping, as scaling/core/optim.py builds it.
`make_step(..., compile=True)` wraps the model in `torch.compile`. Used only by benchmarks/train_throughput.py;
torch comes from the optional `bench` extra (`pip install -e .[bench]`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):

  def __init__(self, dim: int, eps: float):
    super().__init__()
    self.eps = eps
    self.weight = nn.Parameter(torch.ones(dim))

  def forward(self, x):
    return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def rope_tables(length: int, head_dim: int, theta: float, device) -> tuple[torch.Tensor, torch.Tensor]:
  inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
  ang = torch.arange(length, dtype=torch.float64)[:, None] * inv_freq[None, :]
  return ang.cos().float().to(device), ang.sin().float().to(device)


def apply_rope(x_BxHxLxK, cos_LxK2, sin_LxK2):
  x1, x2 = x_BxHxLxK.float().chunk(2, dim=-1)
  return torch.cat([x1 * cos_LxK2 - x2 * sin_LxK2, x2 * cos_LxK2 + x1 * sin_LxK2], dim=-1).to(x_BxHxLxK.dtype)


class Block(nn.Module):

  def __init__(self, d_model: int, n_heads: int, d_ff: int, eps: float):
    super().__init__()
    self.n_heads = n_heads
    self.wqkv = nn.Linear(d_model, 3 * d_model, bias=False)
    self.wo = nn.Linear(d_model, d_model, bias=False)
    self.q_norm, self.k_norm = RMSNorm(d_model, eps), RMSNorm(d_model, eps)
    self.w_gate = nn.Linear(d_model, d_ff, bias=False)
    self.w_up = nn.Linear(d_model, d_ff, bias=False)
    self.w_down = nn.Linear(d_ff, d_model, bias=False)
    self.attn_norm, self.mlp_norm = RMSNorm(d_model, eps), RMSNorm(d_model, eps)

  def attention(self, x_BxLxD, cos, sin):
    b, length, d = x_BxLxD.shape
    q, k, v = self.wqkv(x_BxLxD).split(d, dim=-1)
    q, k = self.q_norm(q), self.k_norm(k)  # over all heads together, as OLMo-2
    q, k, v = (t.view(b, length, self.n_heads, d // self.n_heads).transpose(1, 2) for t in (q, k, v))
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return self.wo(o.transpose(1, 2).reshape(b, length, d))

  def forward(self, x_BxLxD, cos, sin):
    h = x_BxLxD + self.attn_norm(self.attention(x_BxLxD, cos, sin))
    return h + self.mlp_norm(self.w_down(F.silu(self.w_gate(h)) * self.w_up(h)))


class Decoder(nn.Module):
  """Tokens (B, L) int64 -> logits (B, L, V) float32."""

  def __init__(self, vocab: int, d_model: int, n_layers: int, n_heads: int, d_ff: int, seq_len: int,
               eps: float = 1e-6, theta: float = 10_000.0, init_std: float = 0.02):
    super().__init__()
    self.embed = nn.Embedding(vocab, d_model)
    self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff, eps) for _ in range(n_layers))
    self.final_norm = RMSNorm(d_model, eps)
    self.unembed = nn.Linear(d_model, vocab, bias=False)
    cos, sin = rope_tables(seq_len, d_model // n_heads, theta, "cpu")
    self.register_buffer("cos", cos, persistent=False)
    self.register_buffer("sin", sin, persistent=False)
    for p in self.parameters():
      if p.ndim == 2:
        nn.init.normal_(p, std=init_std)

  def forward(self, tokens_BxL):
    x = self.embed(tokens_BxL)
    for block in self.blocks:
      x = block(x, self.cos, self.sin)
    return self.unembed(self.final_norm(x)).float()


def n_matmul_params(vocab: int, d_model: int, n_layers: int, d_ff: int) -> int:
  return n_layers * (4 * d_model * d_model + 3 * d_model * d_ff) + d_model * vocab


def make_step(shape, vocab: int, seq_len: int, *, compile: bool, device: str = "cpu", dtype: str = "float32",
              lr: float = 1e-3, weight_decay: float = 0.1, grad_clip: float = 1.0, seed: int = 0):
  """A train-step closure step(inputs, targets) -> loss tensor (not synchronised), and the model."""
  torch.manual_seed(seed)
  model = Decoder(vocab, shape.d_model, shape.n_layers, shape.n_heads, shape.d_ff, seq_len).to(device)
  decay = [p for p in model.parameters() if p.ndim == 2 and p is not model.embed.weight]
  rest = [p for p in model.parameters() if not (p.ndim == 2 and p is not model.embed.weight)]
  opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}],
                          lr=lr, betas=(0.9, 0.95), eps=1e-8)
  forward = torch.compile(model) if compile else model
  autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=dtype == "bfloat16")

  def step(inputs, targets):
    with autocast:
      logits = forward(inputs)
    loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))
    loss.backward()
    if grad_clip:
      torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.detach()

  return step, model
