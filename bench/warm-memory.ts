/**
 * Touches the machine's free memory once before measuring. On a virtual machine, memory the
 * guest has never used costs a fault in the host the first time it is touched: writing 1 GiB
 * into the page cache took 0.2 s into memory used before and 2.3-2.9 s into fresh memory here.
 * Whichever tool of a side-by-side step happens to get fresh pages then pays seconds the other
 * does not, whatever its code. A server that has run for a while has touched all its memory;
 * so is the machine after this step, for every tool alike.
 *
 * A child process fills buffers up to the free memory less a margin, then exits: its pages go
 * back to the kernel's free lists, touched.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const MARGIN_KIB = 3 * 1024 * 1024;

function memFreeKiB(): number {
  const m = /^MemFree:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** Returns the GiB touched (0 when there is not enough free memory to bother). */
export function warmMemory(log: (line: string) => void): number {
  const gib = Math.floor((memFreeKiB() - MARGIN_KIB) / (1024 * 1024));
  if (gib < 1) return 0;
  const t0 = Date.now();
  // Buffers, not the JavaScript heap: they are not bound by V8's heap limit.
  const script = `const keep = []; for (let i = 0; i < ${gib}; i++) keep.push(Buffer.alloc(1 << 30, 1)); process.stdout.write(String(keep.length));`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  if (r.status !== 0) {
    log(`warming memory failed (${r.stderr.trim().split('\n').pop() ?? r.status}); measuring anyway`);
    return 0;
  }
  log(`touched ${gib} GiB of free memory once in ${((Date.now() - t0) / 1000).toFixed(1)} s (see bench/warm-memory.ts)`);
  return gib;
}
