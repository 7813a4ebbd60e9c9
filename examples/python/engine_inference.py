"""Event-by-event inference through the asynchronous engine: events are
submitted one at a time (from a thread pool and from asyncio), the engine
batches them, and each caller gets its own event's outputs.

    python examples/python/train_gravnet.py --out gravnet.h5     # makes the model
    python examples/python/engine_inference.py --model gravnet.h5 [--events 400]
"""
import argparse
import asyncio
import concurrent.futures
import time

import numpy as np

import gpuml

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="gravnet.h5")
ap.add_argument("--events", type=int, default=400)
args = ap.parse_args()

rng = np.random.default_rng(7)
events = [rng.normal(size=(int(rng.integers(20, 80)), 3)).astype(np.float32) for _ in range(args.events)]

with gpuml.Engine(args.model, max_batch_events=32, max_queue_delay_us=1000) as engine:
    # 1. many "framework threads", each submitting its event and waiting for it
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda hits: engine.submit(hits).result(), events))
    dt = time.perf_counter() - t0
    beta, coords = outs[0]
    print(f"{len(events)} events from 8 threads in {dt:.2f} s; event 0: beta {beta.shape}, coords {coords.shape}")

    # 2. the same from asyncio coroutines
    async def main():
        return await asyncio.gather(*(engine.infer(hits) for hits in events))
    outs2 = asyncio.run(main())
    same = all(a[0].tobytes() == b[0].tobytes() for a, b in zip(outs, outs2))
    print("asyncio results identical to the threaded ones:", same)

    s = engine.stats()
    print(f"batches: {s['batches']}, mean events per batch {s['mean_batch_events']:.1f}; "
          f"latency p50 {s['latency']['p50_us']:.0f} us, p99 {s['latency']['p99_us']:.0f} us")
