/**
 * Runs inside the VM (bench/run.ts boots it): each workload through the
 * library, then through the C baseline, alternating, best of several rounds
 * each, and prints the results as JSON lines.
 */
import { spawnSync } from 'node:child_process';
import { SwSyncTimeline, udmabuf } from '../lib';

interface Measurement {
  workload: string;
  ops: number;
  seconds: number;
}

const rounds = 5;
const workloads: Record<string, { iterations: number; run(iterations: number): Promise<Measurement> | Measurement }> = {
  // The library's default checks for pending fences before START, so that
  // the kernel never blocks the event loop; C does the same poll(2) here.
  'sync-checked': {
    iterations: 20000,
    run(iterations) {
      using buffer = udmabuf.create(1 << 20);
      const start = process.hrtime.bigint();
      for (let index = 0; index < iterations; index += 1) {
        buffer.beginCpuAccess('readwrite');
        buffer.endCpuAccess('readwrite');
      }
      return { workload: 'sync-checked', ops: iterations, seconds: Number(process.hrtime.bigint() - start) / 1e9 };
    },
  },
  sync: {
    iterations: 20000,
    run(iterations) {
      using buffer = udmabuf.create(1 << 20);
      const blocking = { block: true };
      const start = process.hrtime.bigint();
      for (let index = 0; index < iterations; index += 1) {
        buffer.beginCpuAccess('readwrite', blocking);
        buffer.endCpuAccess('readwrite');
      }
      return { workload: 'sync', ops: iterations, seconds: Number(process.hrtime.bigint() - start) / 1e9 };
    },
  },
  create: {
    iterations: 2000,
    run(iterations) {
      using device = udmabuf.open();
      const start = process.hrtime.bigint();
      for (let index = 0; index < iterations; index += 1) device.create(16 * 4096).close();
      return { workload: 'create', ops: iterations, seconds: Number(process.hrtime.bigint() - start) / 1e9 };
    },
  },
  memcpy: {
    iterations: 40,
    run(iterations) {
      const size = 16 << 20;
      using buffer = udmabuf.create(size);
      const source = Buffer.alloc(size, 0x5a);
      const target = buffer.map();
      target.fill(0);
      const start = process.hrtime.bigint();
      for (let index = 0; index < iterations; index += 1) {
        source[index % size] = index & 0xff;
        source.copy(target);
      }
      return { workload: 'memcpy', ops: iterations * size, seconds: Number(process.hrtime.bigint() - start) / 1e9 };
    },
  },
  fence: {
    iterations: 2000,
    async run(iterations) {
      using timeline = SwSyncTimeline.open();
      using buffer = udmabuf.create(4096);
      const start = process.hrtime.bigint();
      for (let index = 0; index < iterations; index += 1) {
        using fence = timeline.createFence(timeline.value + 1, 'bench');
        buffer.importSyncFile(fence, 'write');
        using exported = buffer.exportSyncFile('read');
        timeline.advance(1);
        await exported.wait();
      }
      return { workload: 'fence', ops: iterations, seconds: Number(process.hrtime.bigint() - start) / 1e9 };
    },
  },
};

function runC(binary: string, workload: string, iterations: number): Measurement {
  const result = spawnSync(binary, [workload, String(iterations)], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${binary} ${workload} failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as Measurement;
}

async function main(): Promise<void> {
  const binary = process.env.DMABUF_BENCH_C;
  if (!binary) throw new Error('DMABUF_BENCH_C names the C baseline binary (bench/run.ts sets it)');
  const only = process.argv.slice(2);
  for (const [name, workload] of Object.entries(workloads)) {
    if (only.length > 0 && !only.includes(name)) continue;
    let bestJs = 0;
    let bestC = 0;
    await workload.run(Math.ceil(workload.iterations / 10)); // warm-up: JIT and page cache
    runC(binary, name, Math.ceil(workload.iterations / 10));
    for (let round = 0; round < rounds; round += 1) {
      const js = await workload.run(workload.iterations);
      const c = runC(binary, name, workload.iterations);
      bestJs = Math.max(bestJs, js.ops / js.seconds);
      bestC = Math.max(bestC, c.ops / c.seconds);
    }
    process.stdout.write(`${JSON.stringify({ workload: name, js: bestJs, c: bestC })}\n`);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});
