import cliProgress from "cli-progress";

export interface Progress {
  update(done: number, total: number): void;
  stop(): void;
}

/**
 * A progress bar on stderr (stdout stays clean for results). On a terminal it redraws in place;
 * redirected to a file or CI log it prints a line every few seconds instead.
 */
export function startProgress(label: string): Progress {
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% | {value}/{total} | {duration_formatted} elapsed, eta {eta_formatted}`,
      stream: process.stderr,
      noTTYOutput: true,
      notTTYSchedule: 5000,
      hideCursor: true,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
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
