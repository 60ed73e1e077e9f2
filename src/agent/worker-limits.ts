/**
 * Heap limits of the agent's encoder threads. Their data lives in preallocated arenas outside
 * the JS heap, so what they allocate on it is small and short-lived; V8's default young
 * generation (up to 48 MiB per thread, kept once grown) would only add resident memory that
 * scales with the number of threads, not speed.
 */
import type { ResourceLimits } from 'node:worker_threads';

export const ENCODER_LIMITS: ResourceLimits = { maxYoungGenerationSizeMb: 6 };
