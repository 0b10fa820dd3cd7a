"""NCHW vs NHWC (channels_last) step times of the slice models, side by side in one process.

Why ``training.loop.MEMORY_FORMAT`` is channels_last: median seconds of a training step
(forward, backward, Adam) and of an inference batch, for each model and layout.

    python benchmarks/memory_format.py [--batch 16] [--size 128] [--repeats 6]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from vertebral_fracture.models import build_model

ARCHITECTURES = ("multitask", "smp_unet", "baseline")
LAYOUTS = {"NCHW": torch.contiguous_format, "NHWC": torch.channels_last}


def _median_seconds(step, repeats: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return round(float(np.median(times)), 4)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {}
    for architecture in ARCHITECTURES:
        try:
            build_model(architecture)
        except ImportError:  # smp_unet without the [bench] extra
            continue
        for layout, memory_format in LAYOUTS.items():
            torch.manual_seed(0)
            model = build_model(architecture).to(memory_format=memory_format)
            x = torch.randn(args.batch, 1, args.size, args.size).to(memory_format=memory_format)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

            def train_step(model=model, x=x, optimizer=optimizer) -> None:
                out = model.train()(x)
                loss = out.class_logit.mean()
                if out.seg_logit is not None:
                    loss = loss + out.seg_logit.mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

            def infer(model=model, x=x) -> None:
                with torch.inference_mode():
                    model.eval().fracture_probability(x)

            results[f"{architecture} {layout}"] = {
                "train_step_s": _median_seconds(train_step, args.repeats),
                "infer_batch_s": _median_seconds(infer, args.repeats),
            }
    print(json.dumps({"input": [args.batch, 1, args.size, args.size], **results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
