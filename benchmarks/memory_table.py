"""Per-device memory of the paper preset across sizes and device counts (scaling/lm/memory.py; no devices used).

  python benchmarks/memory_table.py                                  # 300M/1B/4B x 8/64/256 devices, 80 GiB each
  python benchmarks/memory_table.py --sizes=1B --devices=16,32 --device_gib=96 --remat=dots --seq_len=2048

For each (size, devices): the mesh the preset resolves to (FSDP over all devices), the fixed per-device memory
(params, grads, optimizer, FSDP-gathered copies), the memory per sequence of a microbatch (activations at the
remat policy, logits), the per-device batch of the preset's global batch, the largest microbatch that fits and the
smallest train.grad_accum that makes it fit. The same numbers as `--dry_run` with memory.plan_devices=N.
"""

from __future__ import annotations

import argparse


def main() -> None:
  from configs import lm
  from scaling.lm import config as configlib
  from scaling.lm import memory
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--sizes", default="300M,1B,4B")
  p.add_argument("--devices", default="8,64,256")
  p.add_argument("--device_gib", type=float, default=80.0)
  p.add_argument("--remat", default=None, help="override the preset's model.remat")
  p.add_argument("--seq_len", type=int, default=None, help="override the preset's data.seq_len")
  p.add_argument("--vocab", type=int, default=None, help="override the preset's data.vocab_size")
  args = p.parse_args()
  g = lambda x: f"{x / memory.GIB:.2f}"  # noqa: E731
  print(f"{'size':>5} {'devices':>7} {'mesh d/f/t':>10} {'params':>7} {'grads':>6} {'adam':>6} {'gather':>6} "
        f"{'act/seq':>7} {'logit/seq':>9} {'batch/dev':>9} {'max micro':>9} {'accum':>5} {'total':>7}  (GiB)")
  for size in args.sizes.split(","):
    for n in (int(x) for x in args.devices.split(",")):
      c = lm.get_config(f"size={size},preset=paper")
      for key, value in (("remat", args.remat), ("seq_len", args.seq_len), ("vocab_size", args.vocab)):
        if value is not None:
          (c.model if key == "remat" else c.data)[key] = value
      c = configlib.resolve(c)
      plan = memory.plan(c, n, args.device_gib * memory.GIB)
      per_device = c.train.batch_size // (plan.mesh[0] * plan.mesh[1])
      accum = memory.min_grad_accum(per_device, plan.max_microbatch)
      if accum:  # re-plan at that accumulation (its gradient accumulator counts too)
        c.train.grad_accum = accum
        plan = memory.plan(c, n, args.device_gib * memory.GIB)
        accum = memory.min_grad_accum(per_device, plan.max_microbatch)
        c.train.grad_accum = accum or 1
        plan = memory.plan(c, n, args.device_gib * memory.GIB)
      total = plan.total if accum else float("nan")
      print(f"{size:>5} {n:>7} {'/'.join(map(str, plan.mesh)):>10} {g(plan.params):>7} {g(plan.grads):>6} "
            f"{g(plan.optimizer):>6} {g(plan.gathered):>6} {g(plan.per_sequence['activations']):>7} "
            f"{g(plan.per_sequence['logits']):>9} {per_device:>9} {plan.max_microbatch:>9} "
            f"{accum if accum else '-':>5} {g(total) if accum else 'no fit':>7}")
  print(f"remat={c.model.remat} seq_len={c.data.seq_len} vocab={c.data.vocab_size} batch={c.train.batch_size} "
        f"dtype={c.model.dtype}/{c.model.param_dtype}; fit = {memory.HEADROOM:.0%} of {args.device_gib:g} GiB")


if __name__ == "__main__":
  main()
