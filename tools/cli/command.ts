/** One `carvq <name>` subcommand. Each lives in its own module under tools/cli/. */
export interface Command {
  readonly name: string;
  /** One line for `carvq --help`. */
  readonly summary: string;
  /** The full text printed by `carvq <name> --help`: usage line, then every option. */
  readonly help: string;
  /** Runs the command; throws CarvqError for bad input. Results go to stdout, progress to stderr. */
  run(argv: string[]): Promise<void>;
}
