// Finds import cycles: between source files, and between the folders of a tree taken as units
// (tools/quant, tools/blob, ...; a loose file is a unit of its own). Reads relative `import` and
// `export ... from` specifiers as text, type-only imports included: a cycle of types is still a
// cycle a reader has to untangle. Strongly connected components by Tarjan's algorithm.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

/** Every .ts/.mts file under `roots`, as paths relative to `base`. */
export function sourceFiles(base: string, roots: readonly string[]): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(join(base, dir), { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (/\.m?ts$/.test(entry.name)) out.push(path);
    }
  };
  roots.forEach(walk);
  return out.sort();
}

/** unit -> the units it imports, for the files under `roots`; `unitOf` maps a file to its unit. */
export function importGraph(base: string, roots: readonly string[], unitOf: (file: string) => string = (f) => f): Map<string, Set<string>> {
  const files = new Set(sourceFiles(base, roots));
  const graph = new Map<string, Set<string>>();
  for (const file of files) {
    const from = unitOf(file);
    if (!graph.has(from)) graph.set(from, new Set());
    for (const m of readFileSync(join(base, file), "utf8").matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s*["'](\.{1,2}\/[^"']+)["']/gms)) {
      const target = relative(base, resolve(base, dirname(file), m[1]));
      if (files.has(target) && unitOf(target) !== from) graph.get(from)!.add(unitOf(target));
    }
  }
  return graph;
}

/** The first two path parts (tools/quant): the folder a file is in, or the loose file itself. */
export function folderOf(file: string): string {
  const parts = file.split(/[\\/]/);
  return parts.slice(0, Math.min(2, parts.length)).join("/");
}

/** The cycles of a graph: each strongly connected component of more than one unit, sorted. */
export function cycles(graph: Map<string, Set<string>>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (stack.includes(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    for (let w = stack.pop()!; ; w = stack.pop()!) {
      component.push(w);
      if (w === v) break;
    }
    if (component.length > 1) found.push(component.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}
