import cliProgress from "cli-progress";

/** A bar of this format on stderr: redrawn in place on a terminal, a line every 5 s in a log. */
export function stderrBar(format: string): cliProgress.SingleBar {
  return new cliProgress.SingleBar({ format, stream: process.stderr, noTTYOutput: true, notTTYSchedule: 5000, hideCursor: true, etaBuffer: 50 }, cliProgress.Presets.shades_classic);
}

export interface Progress {
  update(done: number, total: number): void;
  stop(): void;
}

/**
 * A progress bar on stderr (stdout stays clean for results). On a terminal it redraws in place;
 * redirected to a file or CI log it prints a line every few seconds instead.
 */
export function startProgress(label: string): Progress {
  const bar = stderrBar(`${label} [{bar}] {percentage}% | {value}/{total} | {duration_formatted} elapsed, eta {eta_formatted}`);
  let started = false;
  return {
    update: (done, total) => {
      if (!started) bar.start(total, 0);
      started = true;
      if (bar.getTotal() !== total) bar.setTotal(total);
      bar.update(done);
    },
    stop: () => {
      // Idempotent: a later stage may stop this bar before the caller's finally does.
      if (started) bar.stop();
      started = false;
    },
  };
}
