/** Time as a dependency: the scheduler, retention and job bookkeeping take a Clock, so tests can drive months in milliseconds. */
export interface Clock { now(): Date }

export const systemClock: Clock = { now: () => new Date() };

export class ManualClock implements Clock {
  constructor(private current: Date) {}
  now(): Date { return new Date(this.current); }
  set(to: Date): void { this.current = new Date(to); }
  advance(ms: number): void { this.current = new Date(this.current.getTime() + ms); }
}
