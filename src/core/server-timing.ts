/** Server-Timing (W3C Server Timing): the time spent in each step of one request, in milliseconds. */
export class ServerTiming {
  private readonly entries: { name: string; dur: number; desc?: string }[] = [];
  /** When the request began (the clock given). */
  readonly started: number;

  constructor(private readonly now: () => number) {
    this.started = now();
  }

  /** Runs `work` and records how long it took under `name`, whether it succeeded or not. */
  async measure<T>(name: string, work: () => Promise<T>): Promise<T> {
    const start = this.now();
    try {
      return await work();
    } finally {
      this.entries.push({ name, dur: this.now() - start });
    }
  }

  toString(): string {
    return this.entries.map((e) => `${e.name};dur=${round(e.dur)}`).join(", ");
  }
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
