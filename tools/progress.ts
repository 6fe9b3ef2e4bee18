import cliProgress from "cli-progress";

/** How often a bar prints a line when stderr is not a terminal (a CI log, a file). */
const NOT_TTY_INTERVAL_MS = 5000;
/** A bar of this format on stderr: redrawn in place on a terminal, a line every NOT_TTY_INTERVAL_MS in a log. */
export function stderrBar(format: string): cliProgress.SingleBar {
  return new cliProgress.SingleBar(
    { format, stream: process.stderr, noTTYOutput: true, notTTYSchedule: NOT_TTY_INTERVAL_MS, hideCursor: true, etaBuffer: 50 },
    cliProgress.Presets.shades_classic,
  );
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
  let printed = 0;
  return {
    update: (done, total) => {
      if (!started) bar.start(total, 0);
      if (!started) printed = performance.now();
      started = true;
      if (bar.getTotal() !== total) bar.setTotal(total);
      bar.update(done);
      // Off a terminal the bar prints from a timer, which synchronous work (a loop that reports
      // as it goes) never lets run; print from here instead when the interval has passed.
      if (!process.stderr.isTTY && performance.now() - printed >= NOT_TTY_INTERVAL_MS) {
        printed = performance.now();
        bar.render();
      }
    },
    stop: () => {
      // Idempotent: a later stage may stop this bar before the caller's finally does.
      if (started) bar.stop();
      started = false;
    },
  };
}
